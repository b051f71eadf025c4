"""The ONNX Runtime engine (korqa.modeling.onnx_engine) computes what the PyTorch model does."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from tiny import ANSWER, CONTEXT, QUESTION

from korqa.cli import main
from korqa.modeling import BertConfig, BertForQuestionAnswering, load_engine, onnx_engine
from korqa.modeling.checkpoint import load_model, save_pretrained
from korqa.modeling.engines import ReaderEngine, resolve_engine
from korqa.modeling.onnx_engine import OnnxEngine, build_onnx_engine
from korqa.modeling.quantize import fold_attention_output_smoothing
from korqa.reader.directory import ReaderDir
from korqa.reader.features import InputFeatures
from korqa.reader.predict import compute_logits


@pytest.fixture()
def random_reader(tmp_path):
    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64))
    save_pretrained(model, tmp_path / "model")
    return model.eval(), tmp_path / "model"


def windows(lengths: list[int]) -> list[InputFeatures]:
    generator = torch.Generator().manual_seed(1)
    out = []
    for n in lengths:
        ids = torch.randint(5, 50, (n,), generator=generator).tolist()
        types = [0] * (n // 3) + [1] * (n - n // 3)
        out.append(InputFeatures(example_index=0, window_index=0, input_ids=ids,
                                 token_type_ids=types, token_offsets=[None] * n,
                                 token_is_max_context=[False] * n, context_start=0))
    return out


@pytest.mark.parametrize("batch_size", [1, 3], ids=["one window a pass", "padded batches"])
def test_onnx_logits_match_torch(random_reader, tmp_path, batch_size):
    model, model_dir = random_reader
    engine = build_onnx_engine(model_dir, cache=tmp_path / "cache")
    assert isinstance(engine, ReaderEngine) and (engine.name, engine.is_int8) == ("onnx", False)
    assert engine.max_batch is None and engine.max_length == 64
    features = windows([7, 19, 12, 30, 5])  # different lengths: batches pad
    expected = compute_logits(model, features, pad_id=0, batch_size=batch_size)
    got = compute_logits(engine, features, pad_id=0, batch_size=batch_size)
    for want, have in zip(expected, got, strict=True):
        assert have.start.shape == want.start.shape  # padding cut off again
        assert abs(have.start - want.start).max() < 1e-4
        assert abs(have.end - want.end).max() < 1e-4


def test_the_traced_graph_is_cached_by_the_model_files(random_reader, tmp_path, monkeypatch):
    model, model_dir = random_reader
    cache = tmp_path / "cache"
    first = build_onnx_engine(model_dir, cache=cache)
    monkeypatch.setattr(onnx_engine, "export_onnx", lambda *a: pytest.fail("traced again"))
    assert build_onnx_engine(model_dir, cache=cache).path == first.path
    assert [p.name for p in cache.iterdir()] == [first.path.name]  # no scratch left behind

    (model_dir / "activation_absmax.safetensors").write_bytes(b"x")  # a float graph ignores it
    assert build_onnx_engine(model_dir, cache=cache).path == first.path
    with torch.no_grad():  # new weights in the same directory: a new graph
        model.qa_outputs.bias.add_(1.0)
    save_pretrained(model, model_dir)
    monkeypatch.undo()
    assert build_onnx_engine(model_dir, cache=cache).path != first.path


def test_an_int8_weights_file_keeps_its_word_embeddings_int8_in_the_graph(random_reader,
                                                                         tmp_path):
    model, fp32_dir = random_reader
    int8_dir = tmp_path / "int8"
    save_pretrained(model, int8_dir, dtype="int8")
    engines = {name: build_onnx_engine(directory, cache=tmp_path / name)
               for name, directory in (("fp32", fp32_dir), ("int8", int8_dir))}

    def embedding_tables(engine: OnnxEngine) -> dict[str, int]:
        return {t.name: t.data_type for t in onnx.load(str(engine.path)).graph.initializer
                if tuple(t.dims)[:1] == (50,)}

    assert embedding_tables(engines["fp32"]) == {
        "model.bert.embeddings.word_embeddings.weight": onnx.TensorProto.FLOAT}
    assert embedding_tables(engines["int8"]) == {
        "model.bert.embeddings.word_embeddings.weight.qweight": onnx.TensorProto.INT8,
        "model.bert.embeddings.word_embeddings.weight.qscale": onnx.TensorProto.FLOAT16}
    # The same function as the int8 file read back into torch (its dequantised weights).
    features = windows([7, 19, 12])
    expected = compute_logits(load_model(BertForQuestionAnswering, int8_dir).eval(), features,
                              pad_id=0, batch_size=3)
    got = compute_logits(engines["int8"], features, pad_id=0, batch_size=3)
    for want, have in zip(expected, got, strict=True):
        assert abs(have.start - want.start).max() < 1e-4
        assert abs(have.end - want.end).max() < 1e-4


def test_folding_attention_output_smoothing_keeps_the_function(random_reader):
    model, _ = random_reader
    ids = torch.randint(5, 50, (2, 9))
    with torch.no_grad():
        expected = model(ids)[0]
        ranges = {f"bert.encoder.layer.{i}.attention.output.dense": torch.rand(32) * 10
                  for i in range(2)}
        assert fold_attention_output_smoothing(model, ranges) == sorted(ranges)
        assert (model(ids)[0] - expected).abs().max() < 1e-4


def test_int8_onnx_reader_answers_like_float(trained_reader, monkeypatch, tmp_path):
    model_dir, data = trained_reader
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path / "cache"))
    directory = ReaderDir(model_dir)
    with pytest.raises(ValueError, match="korqa calibrate"):
        directory.load(engine="onnx", int8=True)
    assert main(["calibrate", "--model", str(model_dir), "--data", str(data)]) == 0

    int8 = directory.load(engine="onnx", int8=True)
    fp32 = directory.load(engine="onnx")
    torch_fp32 = directory.load(engine="torch")
    assert [(r.engine.name, r.engine.is_int8, r.engine.max_batch)
            for r in (int8, fp32, torch_fp32)] == [("onnx", True, 1), ("onnx", False, None),
                                                    ("torch", False, None)]
    ops = {node.op_type for node in onnx.load(str(int8.engine.path)).graph.node}
    assert {"MatMulInteger", "QAttention"} <= ops  # attention fused, then quantised
    answers = [reader.read(QUESTION, [CONTEXT])[0][0] for reader in (int8, fp32, torch_fp32)]
    assert [a.text for a in answers] == [ANSWER] * 3
    assert abs(answers[1].score - answers[2].score) < 1e-4
    assert abs(answers[0].score - answers[1].score) < 0.05
    with pytest.raises(ValueError, match="CPU only"):
        directory.load(engine="onnx", device="cuda")


def test_engine_choice():
    assert resolve_engine("auto") == "onnx"  # onnxruntime is installed with korqa
    assert resolve_engine("auto", "cuda") == "torch"
    assert resolve_engine("torch") == "torch"
    assert resolve_engine("auto", int8=True) == "onnx"
    with pytest.raises(ValueError, match="--engine onnx"):
        resolve_engine("torch", int8=True)
    with pytest.raises(ValueError, match="CPU only"):
        resolve_engine("onnx", "cuda")
    with pytest.raises(ValueError, match="unknown engine"):
        resolve_engine("tensorrt")


def test_evaluate_says_which_engine_ran(trained_reader, monkeypatch, tmp_path, capsys):
    model_dir, data = trained_reader
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path / "cache"))
    runs = {}
    for engine in ("torch", "onnx"):
        assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--split",
                     "test", "--json", "--no-progress", "--engine", engine]) == 0
        runs[engine] = json.loads(capsys.readouterr().out)
    assert runs["onnx"]["engine"] == "onnx" and runs["torch"]["engine"] == "torch"
    assert runs["onnx"]["f1"] == runs["torch"]["f1"] == 100.0
    assert isinstance(load_engine(model_dir, engine="auto"), OnnxEngine)
