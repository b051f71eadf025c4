"""FAQ mode: loading question/answer pairs and matching reworded questions by TF-IDF cosine."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from korqa.faq import (
    DEFAULT_FAQ_THRESHOLD,
    SMALL_TALK,
    FAQEntry,
    FAQIndex,
    load_faq,
    question_key,
    small_talk_entries,
)

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


# ---- the shipped small talk ---------------------------------------------------------------------


def test_small_talk_answers_greetings_out_of_the_box(tmp_path: Path) -> None:
    from tiny import write_corpus

    from korqa.pipeline import open_pipeline

    # No FAQ file and no reader: small talk needs neither.
    with open_pipeline(corpus=[write_corpus(tmp_path / "c.jsonl")],
                       model=tmp_path / "no-model") as pipeline:
        replies = {q: pipeline.ask(q) for q in ("안녕", "고마워", "넌 누구야?", "안녕하세요!",
                                                "너는 누구니?", "Hello")}
    for question, answer in replies.items():
        assert answer.known and answer.source == "faq", question
        assert "모르겠" not in answer.answer
    assert "korqa" in replies["안녕"].answer and "문서" in replies["안녕"].answer  # what it does
    assert "korqa" in replies["넌 누구야?"].answer
    assert replies["고마워"].answer.startswith("천만에요")


def test_small_talk_is_matched_word_for_word_never_for_looking_alike() -> None:
    small_talk = FAQIndex(small_talk_entries())
    # Each shares most of its syllables with a small-talk question, and is about a document.
    for question in ("세종대왕은 누구야?", "이순신은 누구야?", "고마운 사람은 누구야?",
                     "안녕하세요 한라산 높이가 궁금해요", "축하 공연은 언제 열렸나?",
                     "감사원장은 누구인가?", "사용법이 바뀐 해는?", "한라산의 높이는 얼마인가?"):
        assert small_talk.search(question) == [], question
    assert question_key(" 넌  누구야 ?! ") == question_key("넌 누구야?") == "넌누구야"
    assert question_key("HELLO") == "hello"


def test_small_talk_follows_the_faq_files_pairs_which_win(tmp_path: Path) -> None:
    from tiny import write_corpus

    from korqa.pipeline import open_pipeline

    faq = tmp_path / "faq.json"
    faq.write_text(json.dumps([{"question": "안녕", "answer": "어서 오세요, 민원실입니다."}],
                              ensure_ascii=False), encoding="utf-8")
    corpus = [write_corpus(tmp_path / "c.jsonl")]
    with open_pipeline(corpus=corpus, faq=faq, model=tmp_path / "no-model") as pipeline:
        assert pipeline.ask("안녕").answer == "어서 오세요, 민원실입니다."
        assert pipeline.ask("고마워").answer.startswith("천만에요")
        ids = [entry.id for entry in pipeline.faq.entries]
        assert ids == list(range(len(ids))) and not pipeline.faq.entries[0].exact
    with open_pipeline(corpus=corpus, model=tmp_path / "no-model", small_talk=False) as pipeline:
        assert pipeline.faq is None


def test_korqa_ask_no_small_talk_turns_it_off(tmp_path: Path, capsys) -> None:
    from tiny import write_corpus

    from korqa.cli import main

    argv = ["ask", "고마워", "--corpus", str(write_corpus(tmp_path / "c.jsonl")), "--model",
            str(tmp_path / "no-model"), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "faq"
    assert main([*argv, "--no-small-talk"]) == 2  # now the reader is needed, and missing
    assert "no-model" in capsys.readouterr().err


@pytest.mark.skipif(not CHITCHAT.is_file(), reason="needs ../shared/data/chitchat")
def test_the_shipped_small_talk_is_what_the_rule_picks() -> None:
    from bench.small_talk import CHATBOT_SOURCE, KORQA_PAIRS, chatbot_pairs

    shipped = json.loads(SMALL_TALK.read_text(encoding="utf-8"))
    ours = [{"question": q, "answer": a, "source": "korqa"} for qs, a in KORQA_PAIRS for q in qs]
    assert shipped == ours + chatbot_pairs(CHITCHAT)
    picked = [pair for pair in shipped if pair["source"] == CHATBOT_SOURCE]
    assert 10 <= len(picked) <= 40  # a few dozen pairs, not a copy of the set
    assert not any("봇" in pair["answer"] for pair in shipped)  # never ChatbotData's persona
