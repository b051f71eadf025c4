"""The retriever–reader pipeline on a tiny corpus with a tiny random BERT reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny import DOCS, QUESTIONS, write_corpus

from korqa.corpus.paragraph import Paragraph
from korqa.faq import FAQEntry, FAQIndex
from korqa.modeling import BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model
from korqa.pipeline import (
    PipelineConfig,
    QAPipeline,
    RetrievedParagraph,
    cached_index,
    fuse,
    normalise_retrieval,
    open_index,
    open_pipeline,
)
from korqa.pipeline.confidence import SPAN_SCORE_THRESHOLD, UNCALIBRATED
from korqa.reader.config import ReaderConfig
from korqa.reader.reader import Reader
from korqa.retrieval.index import Index, build_index
from korqa.tokenization import Tokenizer


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    root = tmp_path_factory.mktemp("index")
    build_index(root / "idx", [write_corpus(root / "corpus.jsonl")], progress=False)
    return Index(root / "idx")


@pytest.fixture(scope="module")
def reader(tiny_reader_dir: Path) -> Reader:
    # Particle trimming loads Kiwi (seconds); the CLI tests cover it, these tests need speed.
    model = load_model(BertForQuestionAnswering, tiny_reader_dir)
    return Reader(model, Tokenizer.from_pretrained(tiny_reader_dir),
                  ReaderConfig(trim_particles=False))


def pipeline_with(index: Index, reader: Reader, **config: object) -> QAPipeline:
    return QAPipeline(index, reader, config=PipelineConfig(**config))


def test_span_offsets_index_the_shown_paragraph_exactly(index: Index, reader: Reader) -> None:
    pipeline = pipeline_with(index, reader, threshold=0.0, n_best=10)
    for question in QUESTIONS[:4]:
        answer = pipeline.ask(question)
        assert answer.known
        assert answer.context[answer.start:answer.end] == answer.answer != ""
        stored = index.store.get([answer.paragraph_id])[0]
        assert (answer.context, answer.title) == (stored.text, stored.title)
        for c in answer.candidates:
            assert c.context[c.start:c.end] == c.answer
            assert c.context == index.store.get([c.paragraph_id])[0].text
        assert len({c.answer for c in answer.candidates}) == len(answer.candidates)


def test_top_retrieved_paragraph_wins_when_the_reader_is_indifferent(tiny_reader_dir: Path,
                                                                      index: Index) -> None:
    # All-zero QA weights give every span the same logit, so only retrieval can separate them.
    model = load_model(BertForQuestionAnswering, tiny_reader_dir)
    torch.nn.init.zeros_(model.qa_outputs.weight)
    torch.nn.init.zeros_(model.qa_outputs.bias)
    flat = Reader(model, Tokenizer.from_pretrained(tiny_reader_dir),
                  ReaderConfig(trim_particles=False))
    pipeline = pipeline_with(index, flat, threshold=0.0)
    for question, title in [("한라산의 높이는 얼마인가?", "한라산"), ("김장이란 무엇인가?", "김치"),
                            ("가장 큰 행성은?", "태양계")]:
        hits = index.search(question, 3)
        assert hits[0][0].title == title  # the retriever ranks the right paragraph first
        answer = pipeline.ask(question)
        assert (answer.title, answer.paragraph_id) == (title, hits[0][0].id)
        assert answer.candidates[0].retrieval_score == 1.0


def test_the_read_gate_skips_paragraphs_far_behind_the_top_one(index: Index,
                                                                reader: Reader) -> None:
    question = "한라산의 높이는 얼마인가?"
    all_read = pipeline_with(index, reader, threshold=0.0, read_gate=0.0)
    retrieved, readings = all_read.read(question)
    scores = [r.retrieval_score for r in retrieved]
    assert scores[0] == 1.0 and len(scores) == 3 and scores[2] < 0.5
    assert all(readings)  # gate 0: every paragraph read

    gated = pipeline_with(index, reader, threshold=0.0, read_gate=0.5)
    retrieved_gated, readings_gated = gated.read(question)
    assert [r.paragraph.id for r in retrieved_gated] == [r.paragraph.id for r in retrieved]
    read = [bool(candidates) for candidates in readings_gated]
    assert read == [i == 0 or score >= 0.5 for i, score in enumerate(scores)]
    # Reading all and gating in `decide` gives the gated pipeline's answer.
    answer = gated.ask(question)
    assert all_read.decide(question, retrieved, readings, gate=0.5).to_json() == answer.to_json()
    assert {c.paragraph_id for c in answer.candidates} <= \
        {r.paragraph.id for r, was_read in zip(retrieved, read, strict=True) if was_read}
    with pytest.raises(ValueError, match="read gate"):
        PipelineConfig(read_gate=1.5)
    # Unset command-line flags (None) keep the defaults.
    assert PipelineConfig.with_overrides(read_gate=None, top_k=5, fusion_weight=0.5) == \
        PipelineConfig(top_k=5, fusion_weight=0.5)


def test_weight_one_follows_retrieval_order_and_zero_the_reader(index: Index,
                                                                reader: Reader) -> None:
    question = "한라산의 높이는 얼마인가?"
    top = index.search(question, 3)[0][0]
    by_retrieval = pipeline_with(index, reader, fusion_weight=1.0, threshold=0.0, read_gate=0.0)
    assert by_retrieval.ask(question).paragraph_id == top.id
    retrieved, readings = by_retrieval.read(question)
    pool = fuse(retrieved, readings, weight=1.0)
    scores = [c.retrieval_score for c in pool]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(retrieved) > 1
    by_reader = fuse(retrieved, readings, weight=0.0)
    reader_scores = [c.reader_score for c in by_reader]
    assert reader_scores == sorted(reader_scores, reverse=True)
    assert [c.score for c in by_reader] == reader_scores
    assert pipeline_with(index, reader, fusion_weight=0.0, threshold=0.0,
                         read_gate=0.0).ask(question).answer == by_reader[0].answer


def test_fuse_mixes_scores_with_the_weight_and_keeps_one_answer_per_text() -> None:
    first, second = Paragraph("a", "A", "가나다 라마", "a"), Paragraph("b", "B", "라마 바사", "b")
    retrieved = [RetrievedParagraph(first, 8.0, 1.0), RetrievedParagraph(second, 2.0, 0.25)]
    span = SimpleNamespace
    readings = [[span(text="가나다", start=0, end=3, score=0.2),
                 span(text="라마", start=4, end=6, score=0.1)],
                [span(text="라마", start=0, end=2, score=0.9)]]
    ranked = fuse(retrieved, readings, weight=0.35)
    assert [(c.answer, c.paragraph_id) for c in ranked] == [("라마", "b"), ("가나다", "a")]
    assert ranked[0].score == pytest.approx(0.65 * 0.9 + 0.35 * 0.25)
    assert ranked[1].score == pytest.approx(0.65 * 0.2 + 0.35 * 1.0)
    assert (ranked[0].reader_score, ranked[0].retrieval_score, ranked[0].retrieval_raw) == \
        (0.9, 0.25, 2.0)
    by_retrieval = fuse(retrieved, readings, weight=1.0)
    assert [(c.answer, c.paragraph_id) for c in by_retrieval] == [("가나다", "a"), ("라마", "a")]


def test_normalise_retrieval_divides_by_the_top_score() -> None:
    assert normalise_retrieval([4.0, 2.0, 0.0]) == [1.0, 0.5, 0.0]
    assert normalise_retrieval([0.0, 0.0]) == [0.0, 0.0]
    assert normalise_retrieval([]) == []


def test_below_the_threshold_it_says_it_does_not_know_and_shows_the_closest_paragraph(
        index: Index, reader: Reader) -> None:
    question = "김장이란 무엇인가?"
    closest = index.search(question, 1)[0][0]
    answer = pipeline_with(index, reader, threshold=1.01).ask(question)
    assert not answer.known and answer.source == "none"
    assert (answer.answer, answer.start, answer.end) == ("", None, None)
    assert (answer.title, answer.paragraph_id, answer.context) == \
        (closest.title, closest.id, closest.text)
    assert answer.candidates  # the guesses are still listed
    assert answer.to_json()["known"] is False


def test_a_question_matching_nothing_is_unknown_without_a_paragraph(index: Index,
                                                                    reader: Reader) -> None:
    answer = pipeline_with(index, reader, threshold=0.0).ask("xyzzy qwerty")
    assert not answer.known and answer.context == "" and answer.candidates == []


def test_empty_question_and_bad_settings_are_clear_errors(index: Index, reader: Reader) -> None:
    with pytest.raises(ValueError, match="empty"):
        pipeline_with(index, reader).ask("   ")
    with pytest.raises(ValueError, match="top_k"):
        pipeline_with(index, reader).ask("한라산", top_k=0)
    with pytest.raises(ValueError, match="fusion weight"):
        PipelineConfig(fusion_weight=1.5)


def test_paragraph_encodings_are_cached_across_questions(index: Index, reader: Reader) -> None:
    pipeline = pipeline_with(index, reader, threshold=0.0)
    pipeline.ask("한라산의 높이는 얼마인가?")
    text = index.search("한라산의 높이는 얼마인가?", 1)[0][0].text
    encoding = reader.tokenizer.encode_batch([text])[0]
    pipeline.ask("한라산 꼭대기의 호수는?")
    assert reader.tokenizer.encode_batch([text])[0] is encoding


def test_faq_answers_first_when_it_matches_closely(index: Index, reader: Reader) -> None:
    faq = FAQIndex([FAQEntry(0, "오늘 너무 힘들다", "고생 많았어요."),
                    FAQEntry(1, "배고파", "맛있는 것 드세요.")])
    pipeline = QAPipeline(index, reader, faq, PipelineConfig(threshold=0.0))
    answer = pipeline.ask("정말 너무 힘들어요 오늘")
    assert (answer.source, answer.answer, answer.faq_question) == \
        ("faq", "고생 많았어요.", "오늘 너무 힘들다")
    assert answer.context[answer.start:answer.end] == answer.answer
    assert pipeline.ask("한라산의 높이는 얼마인가?").source == "reader"


def test_without_a_confidence_file_the_span_score_is_the_confidence(index: Index,
                                                                   reader: Reader) -> None:
    pipeline = pipeline_with(index, reader)
    assert pipeline.confidence is UNCALIBRATED  # the tiny reader was made in memory
    retrieved, readings = pipeline.read("한라산의 높이는 얼마인가?")
    answer = pipeline.decide("한라산의 높이는 얼마인가?", retrieved, readings)
    # One scale: every shown score is the reader's span score, decided on against 0.1 ...
    assert [c.score for c in answer.candidates] == [c.reader_score for c in answer.candidates]
    assert answer.score == answer.candidates[0].score
    assert answer.known == (answer.score >= SPAN_SCORE_THRESHOLD)
    # ... and --threshold moves the line on that same scale.
    above = pipeline_with(index, reader, threshold=answer.score)
    assert above.decide("한라산의 높이는 얼마인가?", retrieved, readings).known
    below = pipeline_with(index, reader, threshold=answer.score + 1e-9)
    unknown = below.decide("한라산의 높이는 얼마인가?", retrieved, readings)
    assert not unknown.known and unknown.score == answer.score


def test_a_reader_directory_brings_its_calibration_and_a_given_one_wins(
        index: Index, tiny_reader_dir: Path, tmp_path: Path) -> None:
    from korqa.pipeline import load_reader
    from korqa.pipeline.confidence import CONFIDENCE_FILE, Confidence, SpanScore

    config = PipelineConfig(engine="torch")
    assert QAPipeline(index, load_reader(tiny_reader_dir, config)).confidence is UNCALIBRATED
    calibrated = shutil.copytree(tiny_reader_dir, tmp_path / "calibrated")
    fitted = Confidence(("log_span",), np.zeros(1), np.ones(1), np.ones(1), 0.0,
                        np.array([0.0, 1.0]), np.array([0.0, 1.0]), 0.3, 0.7)
    fitted.save(calibrated / CONFIDENCE_FILE)
    pipeline = QAPipeline(index, lambda: load_reader(calibrated, config))
    assert isinstance(pipeline.confidence, Confidence) and pipeline.confidence.threshold == 0.3
    strict = SpanScore(threshold=0.999)
    given = QAPipeline(index, lambda: load_reader(calibrated, config), confidence=strict)
    assert given.confidence is strict
    (calibrated / CONFIDENCE_FILE).write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="calibrate-confidence"):
        QAPipeline(index, load_reader(calibrated, config)).reader  # noqa: B018


def test_cached_index_is_built_once_and_rebuilt_when_the_corpus_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "c.jsonl", DOCS[:2])
    first = cached_index([corpus])
    assert cached_index([corpus]) == first
    assert len(list((tmp_path / "cache" / "indexes").iterdir())) == 1
    write_corpus(corpus, DOCS)
    assert cached_index([corpus]) != first
    with pytest.raises(FileNotFoundError, match="not found"):
        cached_index([tmp_path / "missing.jsonl"])


def test_the_sample_corpus_is_indexed_on_first_use_and_answers_lookups(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path))
    with open_index() as sample:
        assert len(sample.store) >= 15
        assert sample.search("한라산의 높이는?", 1)[0][0].title == "제주도"
        assert sample.search("한글은 언제 만들어졌나?", 1)[0][0].title == "한글"


def test_faq_works_without_a_reader_and_documents_ask_for_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path))
    faq = tmp_path / "faq.json"
    faq.write_text(json.dumps([{"question": "오늘 너무 힘들다", "answer": "고생 많았어요."}],
                              ensure_ascii=False), encoding="utf-8")
    pipeline = open_pipeline(faq=faq, model=tmp_path / "no-model")
    assert pipeline.ask("오늘 너무 힘들다").answer == "고생 많았어요."
    assert not pipeline.ask("xyzzy").known  # nothing retrieved: nothing to load a reader for
    with pytest.raises(FileNotFoundError, match="--model"):
        pipeline.ask("한라산의 높이는?")


def test_the_pipeline_reads_with_the_reader_settings_it_is_given(tiny_reader_dir: Path) -> None:
    from korqa.pipeline import load_reader
    from korqa.reader.predict import DEFAULT_STOP_CONFIDENCE

    given = PipelineConfig(engine="torch", reader_overrides={
        "stop_confidence": None, "max_answer_length": 7, "trim_particles": False})
    config = load_reader(tiny_reader_dir, given).config
    assert (config.stop_confidence, config.max_answer_length, config.trim_particles) == \
        (None, 7, False)
    assert config.batch_size == 1  # one window per forward pass, whatever the directory says
    plain = load_reader(tiny_reader_dir, PipelineConfig(engine="torch")).config
    assert (plain.stop_confidence, plain.max_answer_length) == (DEFAULT_STOP_CONFIDENCE, 30)
    with pytest.raises(ValueError, match="unknown field 'stop_confidense'"):
        load_reader(tiny_reader_dir, PipelineConfig(reader_overrides={"stop_confidense": None}))
