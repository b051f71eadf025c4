"""`korqa ask` and `korqa chat` end to end, in process, with a tiny random reader."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from tiny import make_tiny_reader, write_corpus

from korqa.cli import main
from korqa.corpus.paragraph import document_id

JSON_KEYS = {"answer", "score", "known", "title", "paragraph_id", "context", "start", "end",
             "candidates"}
CANDIDATE_KEYS = {"answer", "score", "reader_score", "retrieval_score", "title",
                  "paragraph_id", "start", "end"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    faq = root / "faq.json"
    faq.write_text(json.dumps([{"question": "오늘 너무 힘들다", "answer": "고생 많았어요."}],
                              ensure_ascii=False), encoding="utf-8")
    return {"model": make_tiny_reader(root / "reader"),
            "corpus": write_corpus(root / "corpus.jsonl"), "faq": faq}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KORQA_MODEL", raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_json_prints_the_documented_keys(files: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["ask", "한라산의 높이는 얼마인가?", "--corpus", str(files["corpus"]),
                        "--model", str(files["model"]), "--threshold", "0", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert JSON_KEYS <= set(data)
    assert data["known"] is True and data["title"] == "한라산"
    assert data["context"][data["start"]:data["end"]] == data["answer"]
    assert data["candidates"] and all(CANDIDATE_KEYS <= set(c) for c in data["candidates"])
    assert len(data["retrieved"]) == 3 and data["retrieved"][0]["retrieval_score"] == 1.0


def test_ask_prints_the_answer_marked_in_its_paragraph(files: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["ask", "김장이란 무엇인가?", "--corpus", str(files["corpus"]),
                        "--model", str(files["model"]), "--threshold", "0"], capsys)
    assert code == 0
    first, scores, paragraph = out.splitlines()[:3]
    assert "김치" in scores and "confidence" in scores
    assert f"【{first}】" in paragraph  # brackets, not ANSI, when stdout is not a terminal


def test_ask_says_when_it_does_not_know(files: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["ask", "김장이란 무엇인가?", "--corpus", str(files["corpus"]),
                        "--model", str(files["model"]), "--threshold", "1.01"], capsys)
    assert code == 0 and out.startswith("모르겠어요.") and "closest paragraph · 김치" in out


def test_ask_without_a_model_says_how_to_get_one(files: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["ask", "한라산의 높이는?", "--corpus", str(files["corpus"]),
                          "--model", str(files["corpus"].parent / "nothing")], capsys)
    assert code == 2 and out == ""
    assert "no reader model found" in err and "--model DIR" in err and "Traceback" not in err


def test_ask_answers_from_the_faq_without_any_model(files: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["ask", "오늘 정말 너무 힘들다", "--faq", str(files["faq"]), "--json"],
                       capsys)
    data = json.loads(out)
    assert code == 0 and data["answer"] == "고생 많았어요." and data["known"] is True
    assert JSON_KEYS <= set(data)


def test_ask_rejects_bad_input_with_one_line(files: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["ask", "질문", "--corpus", str(files["corpus"].parent / "none.jsonl")],
                       capsys)
    assert code == 2 and err.count("\n") == 1 and "corpus path not found" in err
    code, _, err = run(["ask", "  ", "--faq", str(files["faq"])], capsys)
    assert code == 2 and "empty" in err


def test_chat_answers_piped_questions_and_handles_commands(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [":help", "한라산의 높이는 얼마인가?", ":sources", ":history", ":nope",
             "오늘 너무 힘들다", ":quit", "never read"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    code, out, _ = run(["chat", "--corpus", str(files["corpus"]), "--model",
                        str(files["model"]), "--faq", str(files["faq"]), "--threshold", "0"],
                       capsys)
    assert code == 0
    assert ":sources" in out and ":quit" in out  # the help text
    halla = f"kowiki:{document_id(files['corpus'], 'halla')}:0"
    assert "paragraphs read" in out and f"한라산 [{halla}]" in out  # the sources
    assert "1. 한라산의 높이는 얼마인가? → " in out  # the history
    assert "unknown command ':nope'" in out
    assert "고생 많았어요." in out
    assert "never read" not in out


def test_chat_ends_cleanly_at_end_of_input(files: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Piped input that just ends is what Ctrl-D is at a terminal.
    monkeypatch.setattr("sys.stdin", io.StringIO("오늘 너무 힘들다\n:history"))
    code, out, err = run(["chat", "--faq", str(files["faq"])], capsys)
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "고생 많았어요."
    assert "1. 오늘 너무 힘들다 → 고생 많았어요." in out


def test_ask_reads_a_cp949_folder_with_headings(files: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tiny import DOCS

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, title, (text,) in DOCS:
        (folder / f"{name}_cp949.txt").write_bytes(f"# {title}\n\n{text}\n".encode("cp949"))
    (folder / "scan.txt").write_bytes(b"\x00\x01\x02\x03" * 16)
    argv = ["ask", "한라산의 높이는 얼마인가?", "--corpus", str(folder),
            "--model", str(files["model"]), "--threshold", "0", "--json"]
    code, _, err = run(argv, capsys)
    assert code == 2 and "scan.txt: cannot be read as text" in err and "--skip-bad" in err
    code, out, _ = run([*argv, "--skip-bad"], capsys)
    assert code == 0
    data = json.loads(out)
    # The heading is the title (not the file stem, not a paragraph); the text decoded intact.
    assert data["title"] == "한라산" and data["context"] == DOCS[1][2][0]
    assert data["paragraph_id"] == f"file:{document_id(folder / 'halla_cp949.txt')}:1"
