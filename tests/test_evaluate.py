"""`korqa evaluate` end to end on a tiny model, and the error analysis (evaluation.report)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import char_vocab

from korqa.cli import main
from korqa.corpus.formats import GoldAnswer, SquadExample
from korqa.evaluation.evaluate import evaluate_model
from korqa.evaluation.report import answer_kind, build_report, classify, render_markdown
from korqa.modeling import BertConfig, BertForQuestionAnswering
from korqa.modeling.checkpoint import save_pretrained
from korqa.reader.directory import ReaderDir
from korqa.reader.features import FeatureConfig, convert_examples_to_features
from korqa.reader.predict import Candidate
from korqa.tokenization import Tokenizer

CONTEXTS = [
    "1989년 2월 15일 여의도 농민 폭력 시위를 주도한 혐의로 임종석이 지명수배되었다.",
    "같은 해 6월 30일 평양축전에 임수경을 대표로 파견하여 국가보안법위반 혐의가 추가되었다.",
    "경찰은 12월 18일 서울 경희대학교에서 임종석이 성명 발표를 추진한다는 첩보를 입수했다.",
    "임종석은 청량리경찰서에서 약 1시간 동안 조사를 받은 뒤 공안분실로 인계되었다.",
    "숭례문 화재는 2008년 2월 10일 발생하였으며 소방차 32대가 출동하였다.",
]
QUESTIONS = [("지명수배된 사람은?", "임종석"), ("평양축전에 파견된 사람은?", "임수경"),
             ("첩보를 입수한 곳은?", "경찰"), ("조사를 받은 시간은?", "약 1시간"),
             ("숭례문 화재가 난 날은?", "2008년 2월 10일")]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    data = {"version": "tiny", "data": [
        {"title": f"article {i}", "paragraphs": [{"context": context, "qas": [
            {"id": f"q{i}", "question": question,
             "answers": [{"text": answer, "answer_start": context.index(answer)}]},
        ]}]}
        for i, (context, (question, answer)) in enumerate(zip(CONTEXTS, QUESTIONS, strict=True))
    ]}
    path = tmp_path_factory.mktemp("data") / "tiny.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    tokenizer = char_vocab(CONTEXTS + [q for q, _ in QUESTIONS], directory)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=128))
    save_pretrained(model, directory)
    tokenizer.save(directory)
    return directory


def test_evaluate_writes_scores_predictions_and_report(tiny_model, tiny_dataset, tmp_path):
    report_dir = tmp_path / "report"
    reader = ReaderDir(tiny_model).load(engine="torch", max_seq_length=64)
    result = evaluate_model(reader, tiny_dataset, "test", report_dir=report_dir)
    assert (result["engine"], result["int8"], result["model"]) == ("torch", False, str(tiny_model))
    assert result["total"] == 1 and result["articles"] == 1  # only article 4 is test
    assert set(result["with_trimming"]) == {"exact_match", "f1"}
    assert set(result["without_trimming"]) == {"exact_match", "f1"}
    assert result["exact_match"] == result["with_trimming"]["exact_match"]
    assert 0 <= result["f1"] <= 100
    names = sorted(path.name for path in report_dir.iterdir())
    assert names == ["error_analysis.json", "error_analysis.md", "nbest.json", "predictions.json"]
    predictions = json.loads((report_dir / "predictions.json").read_text(encoding="utf-8"))
    nbest = json.loads((report_dir / "nbest.json").read_text(encoding="utf-8"))
    assert list(predictions) == ["q4"] and predictions["q4"] == nbest["q4"][0]["text"]
    assert CONTEXTS[4][nbest["q4"][0]["start"]:nbest["q4"][0]["end"]] == predictions["q4"]
    analysis = json.loads((report_dir / "error_analysis.json").read_text(encoding="utf-8"))
    assert sum(b["count"] for b in analysis["buckets"].values()) == 1
    assert "# Reader error analysis" in (report_dir / "error_analysis.md").read_text()


def test_evaluate_command_json_and_no_trim(tiny_model, tiny_dataset, capsys, monkeypatch):
    def no_kiwi(*args, **kwargs):
        raise AssertionError("--no-trim must not need Kiwi (kiwipiepy)")

    monkeypatch.setattr("korqa.reader.predict.particle_cut", no_kiwi)
    args = ["evaluate", "--model", str(tiny_model), "--data", str(tiny_dataset), "--split",
            "all", "--json", "--no-trim", "--max-seq-length", "48", "--batch-size", "2",
            "--no-progress", "--all-windows"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"] == 5 and result["trim_particles"] is False
    assert result["exact_match"] == result["without_trimming"]["exact_match"]
    assert result["with_trimming"] is None
    assert result["feature_config"]["max_seq_length"] == 48
    assert result["predict_config"]["stop_confidence"] is None
    assert result["windows_read"] == result["windows"]


def test_evaluate_command_reads_the_default_reader_without_model(
        tiny_model, tiny_dataset, capsys, monkeypatch):
    monkeypatch.setenv("KORQA_MODEL", str(tiny_model))  # what stands for the shipped reader
    args = ["evaluate", "--data", str(tiny_dataset), "--split", "all", "--json",
            "--max-seq-length", "48", "--no-progress"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == str(tiny_model) and result["total"] == 5


def test_evaluate_command_bad_input_is_one_line(tiny_model, tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"korqa evaluate: error: {missing}: file not found"


def _example(context: str, answer: str, question: str = "누구?") -> SquadExample:
    return SquadExample("q", question, context, "t", 0, [GoldAnswer(answer, context.index(answer))])


def _candidate(context: str, text: str, occurrence: int = 0) -> Candidate:
    start = context.index(text)
    for _ in range(occurrence):
        start = context.index(text, start + 1)
    return Candidate(text, start, start + len(text), 0.5, 1.0, 1.0)


def test_error_buckets():
    context = "1989년 2월 15일 임종석이 지명수배되었다. 1990년 3월 1일 임수경이 귀국했다."
    date = _example(context, "1989년 2월 15일", "언제?")
    person = _example(context, "임종석", "누구?")
    assert classify(date, _candidate(context, "1989년 2월 15일"), True) == "correct"
    assert classify(person, _candidate(context, "임종석이"), True) == "particle_attached"
    assert classify(person, _candidate(context, "임종석이 지명수배되었다"), True) == "boundary"
    assert classify(date, _candidate(context, "2월 15일"), True) == "boundary"
    assert classify(date, _candidate(context, "1990년 3월 1일"), True) == "wrong_entity"
    assert classify(date, _candidate(context, "지명수배되었다"), True) == "completely_wrong"
    assert classify(date, _candidate(context, "지명수배되었다"), False) == "outside_windows"
    assert classify(date, Candidate("", 0, 0, 0.9, 0.0, 0.0), True) == "no_answer"
    assert answer_kind("1989년 2월 15일") == "date" and answer_kind("32대") == "number"
    assert answer_kind("임종석") == "name" and answer_kind("지명수배") == "other"


def test_outside_windows_and_breakdowns(tmp_path):
    context = "가나다라마바사아자차카타파하 임종석"
    example = _example(context, "임종석")
    chars = sorted({c for c in context + "누구?" if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = Tokenizer.from_vocab(tmp_path / "vocab.txt")
    # Room for 2 context tokens per window, stride 2: no window holds all of 임종석.
    features = convert_examples_to_features(
        [example], tokenizer, FeatureConfig(max_seq_length=3 + 3 + 2, doc_stride=2), False)
    report = build_report([example], {"q": [_candidate(context, "가나")]}, features)
    assert report["buckets"]["outside_windows"]["count"] == 1
    assert report["by_question_type"] == {"누구": {"exact_match": 0.0, "f1": 0.0, "total": 1}}
    assert list(report["by_answer_length"]) == ["1-3"]
    worst = report["worst"][0]
    assert worst["gold"] == ["임종석"] and worst["prediction"] == "가나"
    assert "{{가나}}" in worst["context_snippet"] and "[[임종석]]" in worst["context_snippet"]
    assert "outside_windows | 1 | 100.00" in render_markdown(report)


def test_evaluate_shows_every_stage_and_is_silent_without_progress(tiny_model, tiny_dataset,
                                                                   capsys, tmp_path):
    # Short windows: each paragraph spans several, read in rounds.
    args = ["evaluate", "--model", str(tiny_model), "--data", str(tiny_dataset), "--split",
            "all", "--json", "--max-seq-length", "24", "--doc-stride", "4", "--engine", "torch",
            "--report", str(tmp_path / "report")]
    assert main([*args, "--no-progress"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    assert main(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["windows"] > result["total"]
    err = captured.err.replace("\r", "\n")
    stages = ["korqa: 5 questions of the all split; the reader",
              "korqa: cutting the questions' paragraphs into windows",
              "predict: 100%", "answers, particles trimmed: 100%", "answers: 100%",
              "korqa: writing predictions and the error analysis to"]
    at = [err.find(stage) for stage in stages]
    assert -1 not in at and at == sorted(at), err
    # One bar over every round, counting questions, not the windows read or skipped.
    bar = [line for line in err.splitlines() if line.startswith("predict: 100%")][-1]
    assert f"{result['total']}/{result['total']}" in bar and "question" in bar


def test_evaluate_limit_scores_a_sample_that_the_seed_names(tiny_model, tiny_dataset, capsys,
                                                             tmp_path):
    from korqa.corpus.formats import read_squad
    from korqa.splits import sample_split, select_split

    def scored(*flags: str) -> tuple[dict, set[str]]:
        report = tmp_path / "_".join(flags)
        assert main(["evaluate", "--model", str(tiny_model), "--data", str(tiny_dataset),
                     "--split", "all", "--json", "--no-progress", "--engine", "torch",
                     "--report", str(report), *flags]) == 0
        predictions = json.loads((report / "predictions.json").read_text(encoding="utf-8"))
        return json.loads(capsys.readouterr().out), set(predictions)

    every = select_split(read_squad(tiny_dataset), "all")
    drawn = {seed: {e.qid for e in sample_split(every, 3, seed)} for seed in range(4)}
    assert len(set(map(frozenset, drawn.values()))) > 1  # the seed matters
    for seed in range(4):
        result, questions = scored("--limit", "3", "--seed", str(seed))
        assert questions == drawn[seed] and result["total"] == 3
        assert (result["limit"], result["seed"]) == (3, seed)
    assert scored("--limit", "3")[1] == drawn[0]  # the default seed is 0, every time
    result, questions = scored()
    assert len(questions) == 5 and "seed" not in result  # no --limit: every question
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(tiny_dataset), "--split",
                 "all", "--no-progress", "--engine", "torch", "--limit", "2", "--seed", "7"]) == 0
    assert "2 questions (drawn at random, seed 7)" in capsys.readouterr().out
