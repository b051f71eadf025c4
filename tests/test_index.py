"""`korqa index` on folders as users keep them: Korean encodings, binary files, files deleted
and edited between runs, documents removed by id, failed runs, headings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from korqa.cli import main
from korqa.corpus import ParagraphStore
from korqa.corpus.paragraph import document_id
from korqa.retrieval.index import STORE_FILE, Index, build_index, list_documents
from korqa.server.engine import rebuild_retriever

DOCS = {
    "seoul.txt": "서울은 대한민국의 수도이다. 한강이 도시를 가로질러 흐른다.",
    "busan.txt": "부산은 대한민국 제2의 도시이자 가장 큰 항구 도시이다. 해운대 해수욕장이 있다.",
    "jeju.txt": "제주도는 화산섬이다. 한라산이 섬 한가운데에 솟아 있다.",
}
GYEONGJU = "경주는 신라의 천년 수도였다. 불국사와 석굴암이 있다.\n"


def write_folder(folder: Path, docs: dict[str, str] = DOCS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, object, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else None, captured.err


def index_cli(corpus: list[Path], out: Path, *extra: str) -> list[str]:
    return ["index", "--corpus", *map(str, corpus), "--out", str(out), "--no-morphemes",
            "--no-progress", *extra]


def top_title(out: Path, query: str) -> str:
    with Index(out) as index:
        return index.search(query, k=1)[0][0].title


def stored(out: Path) -> dict[str, str]:
    with ParagraphStore(out / STORE_FILE, readonly=True) as store:
        return {p.id: p.text for p in store}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if "building" in p.name or p.name == "idx")


# ---- encodings ----------------------------------------------------------------------------


def test_cp949_file_is_indexed_and_retrieved(tmp_path, capsys, caplog):
    docs = write_folder(tmp_path / "docs2")
    (docs / "sub").mkdir()
    (docs / "sub" / "gyeongju_cp949.txt").write_bytes(GYEONGJU.encode("cp949"))
    code, result, _ = run(index_cli([docs], tmp_path / "idx"), capsys)
    assert code == 0 and result["paragraphs"] == 4
    assert f"{docs / 'sub' / 'gyeongju_cp949.txt'}: not UTF-8; read as CP949" in caplog.messages
    assert top_title(tmp_path / "idx", "불국사와 석굴암이 있는 신라의 수도는?") == "gyeongju_cp949"
    gyeongju = document_id(docs / "sub" / "gyeongju_cp949.txt")
    assert stored(tmp_path / "idx")[f"file:{gyeongju}:0"] == GYEONGJU.strip()


def test_binary_file_fails_naming_file_and_fix_and_leaves_nothing(tmp_path, capsys):
    docs = write_folder(tmp_path / "docs")
    (docs / "scan.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    code, _, err = run(index_cli([docs], tmp_path / "idx"), capsys)
    assert code == 2
    assert f"{docs / 'scan.txt'}: cannot be read as text" in err
    assert "--encoding NAME" in err and "--skip-bad" in err and "Traceback" not in err
    assert leftovers(tmp_path) == []  # no idx/, no empty paragraphs.sqlite, no staging dir


def test_skip_bad_indexes_the_other_files(tmp_path, capsys, caplog):
    docs = write_folder(tmp_path / "docs")
    (docs / "scan.txt").write_bytes(b"\x00\x01\x02" * 100)
    code, result, _ = run(index_cli([docs], tmp_path / "idx", "--skip-bad"), capsys)
    assert code == 0 and result["paragraphs"] == 3
    assert any(m.startswith(f"{docs / 'scan.txt'}: skipped") for m in caplog.messages)


# ---- an index that follows its folder -----------------------------------------------------


def test_reindexing_a_folder_makes_the_index_match_it(tmp_path, capsys):
    docs = write_folder(tmp_path / "docs")
    other = write_folder(tmp_path / "other", {"daegu.txt": "대구는 사과로 유명하다."})
    out = tmp_path / "idx"
    assert run(index_cli([docs, other], out), capsys)[0] == 0
    (docs / "jeju.txt").write_text("제주도는 화산섬이다.\n\n감귤이 많이 난다.", encoding="utf-8")
    assert run(index_cli([docs], out), capsys)[0] == 0  # only the docs folder
    assert top_title(out, "해운대 해수욕장이 있는 항구 도시") == "busan"

    # busan.txt deleted; jeju.txt edited from two paragraphs down to one, about something else.
    (docs / "busan.txt").unlink()
    (docs / "jeju.txt").write_text("제주도에는 돌하르방이 많다.", encoding="utf-8")
    code, result, _ = run(index_cli([docs], out), capsys)
    assert code == 0
    assert (result["removed_documents"], result["removed"], result["updated"]) == (1, 2, 1)
    texts = stored(out)
    ids = {name: f"file:{document_id(folder / name)}:0"
           for folder, name in ((other, "daegu.txt"), (docs, "jeju.txt"), (docs, "seoul.txt"))}
    assert sorted(texts) == sorted(ids.values())
    assert texts[ids["jeju.txt"]] == "제주도에는 돌하르방이 많다."
    assert "감귤" not in " ".join(texts.values())  # the old second paragraph is gone
    with Index(out) as index:
        assert all(p.doc_id != document_id(docs / "busan.txt")
                   for p, _ in index.search("해운대 항구 도시", k=5))
    # The other folder's document stays: it was not re-indexed, not deleted.
    assert top_title(out, "사과로 유명한 도시") == "daegu"


def test_documents_lists_ids_and_remove_drops_a_document(tmp_path, capsys):
    out = tmp_path / "idx"
    assert run(index_cli([write_folder(tmp_path / "docs")], out), capsys)[0] == 0
    code, listed, _ = run(["documents", "--index", str(out), "--json"], capsys)
    assert code == 0
    docs = tmp_path / "docs"
    assert [(d["id"], d["paragraphs"]) for d in listed] == [
        (document_id(docs / name), 1) for name in ("busan.txt", "jeju.txt", "seoul.txt")]
    assert listed[0]["source"] == str(docs.resolve())

    # A unique end of an id names its document: here the file's name inside its folder.
    code, result, _ = run(["remove", "--index", str(out), "busan.txt", "--no-progress"], capsys)
    assert code == 0 and (result["removed"], result["paragraphs"]) == (1, 2)
    assert [d.doc_id for d in list_documents(out)] == [document_id(docs / "jeju.txt"),
                                                       document_id(docs / "seoul.txt")]
    assert top_title(out, "해운대 해수욕장이 있는 항구 도시") != "busan"

    # An unknown id changes nothing and says how to list the ids.
    code, _, err = run(["remove", "--index", str(out), "seoul.txt", "nope.txt"], capsys)
    assert code == 2 and "'nope.txt'" in err and "korqa documents --index" in err
    assert len(stored(out)) == 2


def test_a_failed_reindex_leaves_the_index_as_it_was(tmp_path, capsys):
    docs = write_folder(tmp_path / "docs")
    other = write_folder(tmp_path / "other", {"daegu.txt": "대구는 사과로 유명하다."})
    out = tmp_path / "idx"
    assert run(index_cli([docs, other], out), capsys)[0] == 0
    before = stored(out)
    # The first path reads fine (busan.txt deleted, one file added), the second fails.
    (docs / "busan.txt").unlink()
    (docs / "new.txt").write_text("새 문서이다.", encoding="utf-8")
    (other / "scan.txt").write_bytes(b"\x00" * 64)
    assert run(index_cli([docs, other], out), capsys)[0] == 2
    assert stored(out) == before  # the first path's changes were not committed either
    with Index(out) as index:
        assert len(index.retriever) == len(before)
    assert not (out / "retriever.new").exists()


def test_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "idx").write_text("not an index", encoding="utf-8")
    docs = write_folder(tmp_path / "docs")
    code, _, err = run(index_cli([docs], tmp_path / "idx"), capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path / 'idx'}: exists and is not a directory" in err
    code, _, err = run(index_cli([docs], tmp_path / "idx" / "sub"), capsys)
    assert code == 2 and f"{tmp_path / 'idx'} is a file, not a folder" in err


def test_a_failed_first_build_removes_the_folders_it_made(tmp_path):
    out = tmp_path / "deep" / "er" / "idx"
    with pytest.raises(ValueError, match="no paragraphs to index"):
        build_index(out, [], "bm25", progress=False)
    assert list(tmp_path.iterdir()) == []
    # An existing empty folder is filled in place.
    out = tmp_path / "empty"
    out.mkdir()
    build_index(out, [write_folder(tmp_path / "docs")], "tfidf", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["paragraphs.sqlite", "retriever",
                                                     "write.lock"]


# ---- headings -----------------------------------------------------------------------------


def test_a_heading_only_line_becomes_the_title_not_a_paragraph(tmp_path, capsys):
    docs = write_folder(tmp_path / "docs", {
        "mountain.md": "# 한라산\n\n한라산은 제주도에 있는 산이다.\n\n"
                       "## 등산로\n\n성판악 코스가 가장 길다.",
        "notes.txt": "백록담\n\n산꼭대기에 호수가 있다.",
    })
    out = tmp_path / "idx"
    assert run(index_cli([docs], out), capsys)[0] == 0
    with ParagraphStore(out / STORE_FILE, readonly=True) as store:
        rows = [(p.id, p.title, p.text) for p in store]
    mountain, notes = document_id(docs / "mountain.md"), document_id(docs / "notes.txt")
    assert rows == [
        (f"file:{mountain}:1", "한라산", "한라산은 제주도에 있는 산이다."),
        (f"file:{mountain}:3", "한라산 › 등산로", "성판악 코스가 가장 길다."),
        (f"file:{notes}:1", "백록담", "산꼭대기에 호수가 있다."),
    ]
    with Index(out) as index:
        paragraph, _ = index.search("등산로 코스", k=1)[0]
    assert paragraph.title == "한라산 › 등산로"


@pytest.fixture(autouse=True)
def _warnings_recorded(caplog):
    caplog.set_level(logging.WARNING, logger="korqa.corpus")


# ---- document ids that cannot collide (issue 27 item 2) -------------------------------------

NOTES_A = "가람 마을의 공지: 목요일에 우물 청소를 한다."
NOTES_B = "나루 마을의 공지: 금요일에 다리 보수를 한다."


def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    return (write_folder(tmp_path / "A", {"notes.txt": NOTES_A}),
            write_folder(tmp_path / "B", {"notes.txt": NOTES_B}))


@pytest.mark.parametrize("together", [False, True], ids=["one-after-the-other", "in-one-run"])
def test_two_folders_holding_the_same_file_name_keep_both(tmp_path, capsys, together):
    a, b = two_folders(tmp_path)
    out = tmp_path / "idx"
    if together:
        assert run(index_cli([a, b], out), capsys)[0] == 0
    else:
        assert run(index_cli([a], out), capsys)[0] == 0
        assert run(index_cli([b], out), capsys)[0] == 0
    assert sorted(stored(out).values()) == sorted([NOTES_A, NOTES_B])
    assert sorted(d.doc_id for d in list_documents(out)) == \
        sorted([document_id(a / "notes.txt"), document_id(b / "notes.txt")])
    assert top_title(out, "목요일 우물 청소") == top_title(out, "금요일 다리 보수") == "notes"
    # Re-indexing one folder gives its file the same id and leaves the other folder's alone.
    before = stored(out)
    assert run(index_cli([a], out), capsys)[0] == 0
    assert stored(out) == before
    # The short name is ambiguous now: `korqa remove` asks for the whole id.
    code, _, err = run(["remove", "--index", str(out), "notes.txt"], capsys)
    assert code == 2 and "names several documents" in err and "Traceback" not in err


def test_an_index_of_older_ids_moves_to_the_new_ones_when_its_path_is_indexed_again(
        tmp_path, capsys):
    import sqlite3

    a, _ = two_folders(tmp_path)
    out = tmp_path / "idx"
    assert run(index_cli([a], out), capsys)[0] == 0
    # What korqa wrote before: the file's path inside its folder as the document id (and no
    # content digest).
    new_id = document_id(a / "notes.txt")
    with sqlite3.connect(out / STORE_FILE) as connection:
        connection.execute("UPDATE paragraphs SET id = replace(id, ?, 'notes.txt'), "
                           "doc_id = 'notes.txt'", (new_id,))
        connection.execute("UPDATE documents SET doc_id = 'notes.txt'")
        connection.execute("DELETE FROM meta WHERE key = 'digest'")
    rebuild_retriever(out)
    assert run(["verify", "--index", str(out), "--repair"], capsys)[0] == 0
    assert [d.doc_id for d in list_documents(out)] == ["notes.txt"]
    assert run(index_cli([a], out), capsys)[0] == 0
    assert [d.doc_id for d in list_documents(out)] == [new_id]
    assert list(stored(out).values()) == [NOTES_A]
    assert run(["verify", "--index", str(out)], capsys)[0] == 0
