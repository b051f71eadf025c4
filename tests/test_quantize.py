"""Smoothed dynamic int8 linears (korqa.modeling.quantize) and `korqa calibrate`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from korqa.cli import main
from korqa.modeling import BertConfig, BertForQuestionAnswering, load_reader_model
from korqa.modeling.checkpoint import save_pretrained
from korqa.modeling.config import ABSMAX_FILE
from korqa.modeling.engines import is_quantized
from korqa.modeling.quantize import (
    SmoothedLinear,
    load_input_absmax,
    quantize_linears,
    record_input_absmax,
    smooth_linears,
)
from korqa.pipeline import Reader
from korqa.tokenization import Tokenizer

CONTEXT = "숭례문 화재는 2008년 2월 10일 발생하였으며 소방차 32대가 출동하였다."
QUESTION, ANSWER = "숭례문 화재가 난 날은?", "2008년 2월 10일"


class TwoLayer(nn.Module):
    """A GELU between two linears, as in BERT's FFN: the second reads an outlier channel."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(64, 256)
        self.down = nn.Linear(256, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.up(x)))


def outlier_inputs() -> torch.Tensor:
    torch.manual_seed(1)
    x = torch.randn(32, 64)
    x[:, 3] *= 40.0  # one channel far larger than the rest, like e5's
    return x


def test_smoothing_alone_keeps_the_function():
    model, x = TwoLayer(), outlier_inputs()
    with torch.no_grad():
        expected = model(x)
        absmax = record_input_absmax(model, lambda: model(x))
        smooth_linears(model, absmax)
        assert (model(x) - expected).abs().max() < 1e-4 * expected.abs().max()


def test_smoothing_shrinks_int8_error_on_outlier_channels():
    x = outlier_inputs()
    reference = TwoLayer()
    with torch.no_grad():
        expected = reference(x)
        plain = quantize_linears(TwoLayer())
        smoothed = TwoLayer()
        smoothed = quantize_linears(smoothed, record_input_absmax(smoothed, lambda: smoothed(x)))
        plain_error = (plain(x) - expected).norm() / expected.norm()
        smoothed_error = (smoothed(x) - expected).norm() / expected.norm()
    assert is_quantized(plain) and is_quantized(smoothed)
    assert smoothed_error < 0.02
    assert smoothed_error < 0.5 * plain_error


def test_calibration_must_match_the_model():
    model = TwoLayer()
    with pytest.raises(ValueError, match="no ranges for down"):
        quantize_linears(model, {"up": torch.ones(64)})
    with pytest.raises(ValueError, match="reads 256 channels"):
        quantize_linears(TwoLayer(), {"up": torch.ones(64), "down": torch.ones(8)})
    with pytest.raises(ValueError, match="alpha"):
        quantize_linears(TwoLayer(), {"up": torch.ones(64), "down": torch.ones(256)}, alpha=2.0)


@pytest.fixture()
def tiny_reader(tmp_path):
    """A tiny reader trained a little on one question, so its best answer is stable."""
    texts = [CONTEXT, QUESTION]
    chars = sorted({c for text in texts for c in text if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = Tokenizer.from_vocab(tmp_path / "vocab.txt")
    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    question = tokenizer.encode(QUESTION)
    context = tokenizer.encode(CONTEXT)
    ids, types, offset = tokenizer.build_pair(question.ids, context.ids)
    start_char = CONTEXT.index(ANSWER)
    start = offset + next(i for i, (s, _) in enumerate(context.offsets) if s == start_char)
    end = offset + next(i for i, (_, e) in enumerate(context.offsets)
                        if e == start_char + len(ANSWER))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = {"input_ids": torch.tensor([ids]), "token_type_ids": torch.tensor([types]),
             "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    model.train()
    for _ in range(60):
        loss = model(**batch, start_positions=torch.tensor([start]),
                     end_positions=torch.tensor([end]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_pretrained(model, tmp_path)
    tokenizer.save(tmp_path)
    articles = [{"title": f"a{i}", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": f"q{i}", "question": QUESTION,
         "answers": [{"text": ANSWER, "answer_start": start_char}]}]}]} for i in range(10)]
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"version": "1.1", "data": articles}, ensure_ascii=False),
                    encoding="utf-8")
    return tmp_path, data


def test_calibrate_then_readers_use_int8_and_answer_alike(tiny_reader, capsys):
    model_dir, data = tiny_reader
    with pytest.raises(ValueError, match="korqa calibrate"):  # no calibration yet
        load_reader_model(model_dir, int8=True)
    # (The ONNX Runtime engine's int8 is tested in test_onnx_engine.py.)

    assert main(["calibrate", "--model", str(model_dir), "--data", str(data)]) == 0
    assert ABSMAX_FILE in capsys.readouterr().out
    absmax = load_input_absmax(model_dir)
    assert absmax is not None and set(absmax) >= {"qa_outputs"}

    int8 = Reader.load(model_dir, int8=True, engine="torch")
    fp32 = Reader.load(model_dir, engine="torch")  # float weights unless int8 is asked for
    assert int8.quantized and not fp32.quantized
    # The FFN's output linears stay in float (their GELU inputs defeat int8); the rest is int8.
    modules = dict(int8.model.named_modules())
    assert type(modules["bert.encoder.layer.0.output.dense"]) is nn.Linear
    assert isinstance(modules["bert.encoder.layer.0.intermediate.dense"], SmoothedLinear)
    assert isinstance(modules["bert.encoder.layer.0.intermediate.dense.linear"],
                      DynamicInt8Linear)
    best_int8 = int8.read(QUESTION, [CONTEXT])[0][0]
    best_fp32 = fp32.read(QUESTION, [CONTEXT])[0][0]
    assert best_fp32.text == ANSWER
    assert (best_int8.text, best_int8.start) == (best_fp32.text, best_fp32.start)
    assert CONTEXT[best_int8.start:best_int8.end] == best_int8.text
    assert abs(best_int8.score - best_fp32.score) < 0.05
    with pytest.raises(ValueError, match="CPU only"):
        int8.read(QUESTION, [CONTEXT], device="cuda")


def test_calibrate_reads_the_split_it_is_given(tiny_reader, monkeypatch):
    import korqa.reader.calibrate as calibrate
    from korqa.corpus.formats import read_squad
    from korqa.splits import select_split

    model_dir, data = tiny_reader
    asked = []
    monkeypatch.setattr(calibrate, "calibrate_reader",
                        lambda model, examples: asked.append({e.qid for e in examples}) or model)
    for flags in ([], ["--split", "validation"]):
        assert main(["calibrate", "--model", str(model_dir), "--data", str(data), *flags]) == 0
    train, validation = ({e.qid for e in select_split(read_squad(data), split)}
                         for split in ("train", "validation"))
    assert asked == [train, validation] and train.isdisjoint(validation)


def test_evaluate_reports_which_weights_it_read_with(tiny_reader, capsys):
    model_dir, data = tiny_reader
    assert main(["calibrate", "--model", str(model_dir), "--data", str(data)]) == 0
    capsys.readouterr()
    runs = {}
    for flags in ([], ["--int8"]):
        assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--split",
                     "test", "--json", "--no-progress", "--engine", "torch", *flags]) == 0
        runs[bool(flags)] = json.loads(capsys.readouterr().out)
    assert runs[True]["int8"] is True and runs[False]["int8"] is False
    assert runs[False]["f1"] == runs[True]["f1"] == 100.0
