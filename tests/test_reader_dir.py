"""A reader directory (korqa.reader.directory): its ReaderConfig file, saving and loading, and
the Reader it loads (korqa.reader.reader)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from korqa.modeling.bert import BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model
from korqa.modeling.engines import TorchEngine
from korqa.paths import MODEL_ENV, default_reader_dir
from korqa.reader.config import ReaderConfig
from korqa.reader.directory import READER_CONFIG_FILE, ReaderDir
from korqa.reader.features import FeatureConfig
from korqa.reader.predict import PredictConfig
from korqa.reader.reader import Reader
from korqa.tokenization import Tokenizer

CONTEXTS = ["한라산은 제주도에 있는 산으로 높이는 1,947 m이다.",
            "백두산은 북한과 중국의 국경에 있다."]


def test_a_reader_config_is_both_windows_and_reading(tmp_path: Path) -> None:
    config = ReaderConfig(max_seq_length=256, doc_stride=96, max_query_length=32, n_best=3,
                          stop_confidence=None)
    assert isinstance(config, FeatureConfig) and isinstance(config, PredictConfig)
    assert (config.max_seq_length, config.doc_stride, config.max_query_length) == (256, 96, 32)
    assert ReaderConfig() == ReaderConfig(**{**vars(FeatureConfig()), **vars(PredictConfig())})
    ReaderDir(tmp_path).save_config(config)
    assert ReaderDir(tmp_path).config() == config
    assert ReaderDir(tmp_path).config(doc_stride=64, stop_confidence=0.5) == \
        replace(config, doc_stride=64, stop_confidence=0.5)


def test_a_windows_only_file_reads_as_before(tmp_path: Path) -> None:
    # What the shipped reader and every earlier run wrote: the windows, nothing else.
    (tmp_path / READER_CONFIG_FILE).write_text(
        '{"max_seq_length": 320, "doc_stride": 160, "max_query_length": 64}', encoding="utf-8")
    assert ReaderDir(tmp_path).config() == ReaderConfig(max_seq_length=320, doc_stride=160,
                                                        max_query_length=64)
    assert ReaderDir(tmp_path / "none").config() == ReaderConfig()  # none: BERT's defaults


def test_a_file_from_before_the_one_dont_know_threshold_reads(tmp_path: Path) -> None:
    # Runs trained before it wrote every ReaderConfig field, this one unset among them.
    saved = {**ReaderConfig(max_seq_length=320).to_dict(), "no_answer_threshold": None}
    (tmp_path / READER_CONFIG_FILE).write_text(json.dumps(saved), encoding="utf-8")
    assert ReaderDir(tmp_path).config() == ReaderConfig(max_seq_length=320)


def test_the_shipped_reader_config_is_read_unchanged() -> None:
    if not (default_reader_dir() / READER_CONFIG_FILE).is_file():
        pytest.skip(f"no shipped reader at {default_reader_dir()}")
    config = ReaderDir().config()
    saved = json.loads((default_reader_dir() / READER_CONFIG_FILE).read_text(encoding="utf-8"))
    assert {name: getattr(config, name) for name in saved} == saved
    assert replace(config, **vars(FeatureConfig())) == ReaderConfig()  # reading: the defaults


@pytest.mark.parametrize(("content", "message"), [
    ('{"max_seq_length": "long"}', "'max_seq_length' has the wrong type"),
    ('{"trim_particles": 1}', "'trim_particles' has the wrong type"),
    ('{"max_seq_length": true}', "'max_seq_length' has the wrong type"),
    ('{"windows": 320}', "unknown field 'windows'"),
    ('{"no_answer_threshold": 0.5}', "'no_answer_threshold' is no longer read"),
    ('[320, 160]', "expected a JSON object"),
    ('{"max_seq', "not a valid reader config"),
])
def test_a_bad_reader_config_names_the_file_and_the_field(tmp_path: Path, content: str,
                                                          message: str) -> None:
    (tmp_path / READER_CONFIG_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        ReaderDir(tmp_path).config()
    assert str(tmp_path / READER_CONFIG_FILE) in str(error.value)


def test_no_reader_is_a_clear_error_and_the_default_follows_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="korqa train"):
        ReaderDir(tmp_path).load(engine="torch")
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "mine"))
    assert ReaderDir().path == tmp_path / "mine"
    assert ReaderDir(None).path == ReaderDir(str(tmp_path / "mine")).path


def test_save_then_load_gives_the_same_reader(tiny_reader_dir: Path, tmp_path: Path) -> None:
    source = ReaderDir(tiny_reader_dir)
    config = ReaderConfig(max_seq_length=64, doc_stride=16, max_query_length=16,
                          trim_particles=False)
    saved = ReaderDir(tmp_path / "copy").save(source.torch_model(), source.tokenizer(), config)
    assert {p.name for p in saved.path.iterdir()} >= {"config.json", "model.safetensors",
                                                       "vocab.txt", READER_CONFIG_FILE}
    reader = saved.load(engine="torch")
    assert isinstance(reader, Reader) and reader.config == config
    assert (reader.engine.name, reader.engine.is_int8, reader.directory) == \
        ("torch", False, saved.path)
    by_hand = Reader(load_model(BertForQuestionAnswering, tiny_reader_dir),
                     Tokenizer.from_pretrained(tiny_reader_dir), config)
    assert saved.load(engine="torch").read("한라산의 높이는?", CONTEXTS) == \
        by_hand.read("한라산의 높이는?", CONTEXTS)
    assert saved.load(engine="onnx").read("한라산의 높이는?", CONTEXTS)[0][0].text == \
        by_hand.read("한라산의 높이는?", CONTEXTS)[0][0].text


def test_a_reader_reads_a_question_over_contexts(tiny_reader_dir: Path) -> None:
    model = load_model(BertForQuestionAnswering, tiny_reader_dir)
    reader = Reader(TorchEngine(model), Tokenizer.from_pretrained(tiny_reader_dir),
                    ReaderConfig(trim_particles=False))
    # Windows never longer than the model reads: 128 positions, stride and question cut too.
    assert (reader.config.max_seq_length, reader.config.doc_stride,
            reader.config.max_query_length) == (128, 64, 32)
    readings = reader.read("한라산의 높이는?", CONTEXTS, n_best=3)
    assert len(readings) == 2 and all(0 < len(spans) <= 3 for spans in readings)
    for context, spans in zip(CONTEXTS, readings, strict=True):
        for span in spans:
            assert span.text and context[span.start:span.end] == span.text
            assert 0.0 < span.score <= 1.0
    assert sum(span.score for span in readings[0]) <= 1.0
    assert reader.read("한라산의 높이는?", []) == []
