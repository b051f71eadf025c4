"""FAQ mode: loading question/answer pairs and matching reworded questions by TF-IDF cosine."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from korqa.faq import DEFAULT_FAQ_THRESHOLD, FAQEntry, FAQIndex, load_faq

PAIRS = [("오늘 너무 힘들다", "고생 많았어요."),
         ("배고파", "맛있는 것 드세요."),
         ("여자친구랑 헤어졌어", "힘들었겠어요."),
         ("1지망 학교 떨어졌어", "위로해 드립니다."),
         ("주말에 뭐 하지", "영화 보는 건 어때요?")]
CHITCHAT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chitchat" / \
    "ChatbotData.csv.gz"


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "Q,A,label") -> Path:
    text = header + "\n" + "".join(f"{q},{a},0\n" for q, a in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def faq() -> FAQIndex:
    return FAQIndex([FAQEntry(i, q, a) for i, (q, a) in enumerate(PAIRS)])


def test_a_reworded_question_gets_the_stored_answer(faq: FAQIndex) -> None:
    for question, answer in [("오늘 정말 너무 힘들어", "고생 많았어요."),
                             ("여자친구와 헤어졌어요", "힘들었겠어요."),
                             ("1지망 학교에 떨어졌어요", "위로해 드립니다.")]:
        match = faq.match(question)
        assert match is not None, question
        assert match.entry.answer == answer
        assert DEFAULT_FAQ_THRESHOLD <= match.score <= 1.0


def test_an_unrelated_question_gets_no_stored_answer(faq: FAQIndex) -> None:
    for question in ["한라산의 높이는 얼마인가?", "세종은 언제 한글을 만들었나?", "xyz"]:
        assert faq.match(question) is None, question
    assert faq.search("   ") == []


def test_the_exact_stored_question_scores_one(faq: FAQIndex) -> None:
    best = faq.search("배고파", k=2)
    assert best[0].entry.answer == "맛있는 것 드세요."
    assert best[0].score == pytest.approx(1.0)


def test_csv_gzip_and_json_files_load_the_same_pairs(tmp_path: Path) -> None:
    plain = load_faq(write_csv(tmp_path / "faq.csv", PAIRS))
    zipped = load_faq(write_csv(tmp_path / "faq.csv.gz", PAIRS))
    listed = tmp_path / "faq.json"
    listed.write_text(json.dumps([{"question": q, "answer": a} for q, a in PAIRS],
                                 ensure_ascii=False), encoding="utf-8")
    assert plain == zipped == load_faq(listed)
    assert [(e.question, e.answer) for e in plain] == PAIRS
    assert load_faq(write_csv(tmp_path / "named.csv", PAIRS, "question,answer,x"))[0].answer \
        == "고생 많았어요."


@pytest.mark.parametrize(("name", "content", "message"), [
    ("no_answer_column.csv", "Q,label\n안녕,0\n", "no answer column"),
    ("empty_answer.csv", "Q,A\n안녕,\n", "has no answer"),
    ("broken.json", "[{\"question\": ", "invalid JSON"),
    ("not_a_list.json", "{\"question\": \"a\"}", "JSON list"),
    ("wrong_type.json", "[{\"question\": 1, \"answer\": \"a\"}]", "must be strings"),
    ("empty.csv", "Q,A\n", "no question/answer pairs"),
    ("faq.txt", "Q,A\n", "unknown FAQ format"),
])
def test_bad_faq_files_fail_with_a_clear_message(tmp_path: Path, name: str, content: str,
                                                 message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_faq(path)


def test_a_missing_faq_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_faq(tmp_path / "missing.csv")


def test_chitchat_data_answers_small_talk_and_not_encyclopedia_questions() -> None:
    if not CHITCHAT.exists():
        pytest.skip(f"shared data not found at {CHITCHAT}")
    chitchat = FAQIndex.from_file(CHITCHAT)
    assert len(chitchat) == 11_823
    match = chitchat.match("요즘 너무 힘들어요")
    assert match is not None and "힘들" in match.entry.question
    for question in ["한라산의 높이는?", "광합성이란 무엇인가?", "세종대왕은 언제 한글을 만들었나"]:
        assert chitchat.match(question) is None, question
