"""`evaluate-chat`'s library: conversation files, rule-made chains, and the numbers it reports,
checked against the pipeline's own answers on a tiny corpus and reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import DOCS, build_tiny_index, tiny_pipeline

from korqa.corpus.formats import read_squad
from korqa.evaluation.chat import (
    ChatEvalConfig,
    evaluate_chat,
    format_chat_report,
    load_conversations,
    rule_conversations,
    run_chat_evaluation,
    summarise,
)
from korqa.korquad_metric import f1_score
from korqa.pipeline.conversation import Conversation

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = {  # id: (article, question, answer)
    "h1": ("halla", "한라산의 높이는 얼마인가?", "1947미터"),
    "h2": ("halla", "한라산은 어디에 있나?", "제주도 가운데"),
    "h3": ("halla", "한라산의 꼭대기에 있는 호수는?", "백록담"),
    "g1": ("hangul", "한글은 누가 만들었나?", "세종"),
    "g2": ("hangul", "한글은 언제 만들어졌나?", "1443년"),
    "s1": ("sun", "태양계에서 가장 큰 행성은?", "목성"),
}
CONVERSATIONS = [
    {"id": "c1", "turns": [{"id": "h1", "kind": "standalone"},
                           {"id": "h3", "kind": "ellipsis", "question": "꼭대기에 있는 호수는?"},
                           {"kind": "unanswerable", "question": "그곳의 기온은?",
                            "full": "한라산의 기온은?"}]},
    {"id": "c2", "turns": [{"id": "g1", "kind": "standalone"},
                           {"id": "s1", "kind": "shift"},
                           {"id": "g2", "kind": "pronoun", "question": "그건 언제 만들어졌어?"}]},
]


def squad_file(path: Path) -> Path:
    """The tiny corpus as a SQuAD file whose articles hold QUESTIONS (articles 0–3)."""
    data = []
    for doc_id, title, paragraphs in DOCS:
        qas = [{"id": qid, "question": question,
                "answers": [{"text": answer, "answer_start": paragraphs[0].index(answer)}]}
               for qid, (article, question, answer) in QUESTIONS.items() if article == doc_id]
        data.append({"title": title, "paragraphs": [{"context": paragraphs[0], "qas": qas}]})
    path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False),
                    encoding="utf-8")
    return path


def conversation_file(path: Path, conversations: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("chat")
    return squad_file(root / "squad.json"), conversation_file(root / "c.jsonl", CONVERSATIONS)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_index(tmp_path_factory.mktemp("chat-index") / "index")


def test_turns_take_their_full_question_and_gold_answers_from_the_id(files) -> None:
    squad, conversations = files
    loaded = load_conversations(conversations, read_squad(squad))
    first, second = loaded[0].turns[:2]
    assert (first.question, first.full, first.answers) == (
        "한라산의 높이는 얼마인가?", "한라산의 높이는 얼마인가?", ["1947미터"])
    assert (second.kind, second.question, second.full) == (
        "ellipsis", "꼭대기에 있는 호수는?", "한라산의 꼭대기에 있는 호수는?")
    unanswerable = loaded[0].turns[2]
    assert (unanswerable.full, unanswerable.answers, unanswerable.qid) == (
        "한라산의 기온은?", [], None)


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON"),
    ('{"turns": []}', 'list of "turns"'),
    ('{"turns": [{"id": "h1", "kind": "chitchat"}]}', "kind must be one of"),
    ('{"turns": [{"id": "zz", "kind": "standalone"}]}', "'zz' is not in the questions file"),
    ('{"turns": [{"id": "h1", "kind": "unanswerable", "question": "q"}]}', 'no "id"'),
    ('{"turns": [{"id": "h1", "kind": "pronoun", "question": ""}]}', "non-empty string"),
])
def test_a_bad_conversation_line_names_its_line_and_turn(files, tmp_path: Path, line: str,
                                                         message: str) -> None:
    squad, _ = files
    path = tmp_path / "bad.jsonl"
    path.write_text('{"turns": [{"id": "h1", "kind": "standalone"}]}\n' + line + "\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.jsonl:2.*{message}"):
        load_conversations(path, read_squad(squad))


def test_rule_chains_replace_the_subject_and_shift_to_the_next_article(files) -> None:
    squad, _ = files
    made = rule_conversations(read_squad(squad), "all", per_article=3)
    assert len(made) == 1  # hangul's chain, then halla's (kimchi and sun have none)
    assert [(t.kind, t.question, t.full) for t in made[0].turns] == [
        ("standalone", "한글은 누가 만들었나?", "한글은 누가 만들었나?"),
        # no "그" right after a 누구 question: it would mean the person answered
        ("ellipsis", "언제 만들어졌나?", "한글은 언제 만들어졌나?"),
        ("shift", "한라산의 높이는 얼마인가?", "한라산의 높이는 얼마인가?"),
        ("pronoun", "그는 어디에 있나?", "한라산은 어디에 있나?"),
        ("ellipsis", "꼭대기에 있는 호수는?", "한라산의 꼭대기에 있는 호수는?")]
    assert [t.answers for t in made[0].turns][1] == ["1443년"]


def test_the_report_is_the_mean_of_each_turns_scores(files, index_dir: Path,
                                                     tiny_reader_dir: Path) -> None:
    squad, conversations = files
    loaded = load_conversations(conversations, read_squad(squad))
    pipeline = tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0)()
    report = evaluate_chat(pipeline, loaded)
    # the same answers, asked here directly
    expected: dict[str, dict[str, list[float]]] = {}
    for conversation in loaded:
        chat = Conversation(pipeline)
        for turn in conversation.turns:
            answers = {"resolved": chat.ask(turn.question).answer,
                       "alone": pipeline.ask(turn.question).answer,
                       "full": pipeline.ask(turn.full).answer}
            for way, text in answers.items():
                score = max((f1_score(text, gold) for gold in turn.answers), default=0.0)
                expected.setdefault(turn.kind, {}).setdefault(way, []).append(score)
    for kind, ways in expected.items():
        for way, scores in ways.items():
            assert report.rows[kind][way]["f1"] == round(100 * sum(scores) / len(scores), 2)
    assert report.counts == {"standalone": 2, "pronoun": 1, "ellipsis": 1, "shift": 1,
                             "unanswerable": 1, "follow-ups": 2, "answerable": 5}
    # threshold 0 answers every question asked alone; with context, "그곳의 기온은?" is declined:
    # no paragraph about 한라산 speaks of 기온
    unanswerable = report.rows["unanswerable"]
    assert [unanswerable[way]["declined"] for way in ("resolved", "alone", "full")] == \
        [100.0, 0.0, 0.0]
    assert [t["resolved_question"] for t in report.turns][:2] == [
        "한라산의 높이는 얼마인가?", "한라산의 꼭대기에 있는 호수는?"]


def test_a_pipeline_that_never_answers_declines_everything(files, index_dir: Path,
                                                           tiny_reader_dir: Path) -> None:
    squad, conversations = files
    pipeline = tiny_pipeline(index_dir, tiny_reader_dir, threshold=2.0)()
    report = evaluate_chat(pipeline, load_conversations(conversations, read_squad(squad)))
    for kind, row in report.rows.items():
        for way in ("resolved", "alone", "full"):
            assert (row[way]["f1"], row[way]["declined"]) == (0.0, 100.0), (kind, way)
    assert report.summary() == {"follow_up_ratio": None, "shift_gap": 0.0,
                                "unanswerable_declined": 100.0}


def record(kind: str, context: float, alone: float, full: float,
           declined: bool = False) -> dict:
    return {"kind": kind, **{way: {"em": 0.0, "f1": f1, "declined": declined}
                             for way, f1 in (("resolved", context), ("alone", alone),
                                             ("full", full))}}


def test_summary_ratios_and_the_printed_table() -> None:
    report = summarise([record("pronoun", 0.8, 0.2, 1.0), record("ellipsis", 0.6, 0.0, 0.6),
                        record("shift", 0.5, 0.5, 0.7),
                        record("unanswerable", 0, 0, 0, declined=True),
                        record("unanswerable", 0, 0, 0)], conversations=2)
    assert report.rows["follow-ups"]["resolved"]["f1"] == 70.0
    assert report.rows["follow-ups"]["full"]["f1"] == 80.0
    assert report.summary() == {"follow_up_ratio": 0.875, "shift_gap": -20.0,
                                "unanswerable_declined": 50.0}
    text = format_chat_report(report)
    assert "2 conversations, 5 turns" in text
    assert "follow-ups with context / fully specified: 0.875" in text
    assert "unanswerable follow-ups declined: 50.0 %" in text
    assert ["pronoun", "1", "80.00", "20.00", "100.00", "0.00"] in \
        [line.split() for line in text.splitlines()]
    assert ["unanswerable", "2", "50.00", "50.00", "50.00", "50.00"] in \
        [line.split() for line in text.splitlines()]


def test_run_chat_evaluation_reads_the_files_and_writes_every_turn(
        files, index_dir: Path, tiny_reader_dir: Path, tmp_path: Path) -> None:
    squad, conversations = files
    pipeline = tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0)()
    out = tmp_path / "turns.json"
    config = ChatEvalConfig(questions=str(squad), data=[str(conversations)], limit=1,
                            json=str(out))
    report = run_chat_evaluation(config, pipeline)
    written = json.loads(out.read_text(encoding="utf-8"))
    assert report.conversations == written["conversations"] == 1
    assert [t["kind"] for t in written["turns"]] == ["standalone", "ellipsis", "unanswerable"]
    with pytest.raises(ValueError, match="no conversations"):
        run_chat_evaluation(ChatEvalConfig(questions=str(squad)), pipeline)
