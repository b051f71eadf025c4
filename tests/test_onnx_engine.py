"""The ONNX Runtime engine (korqa.modeling.onnx_engine, its graph korqa.modeling.onnx_graph)
computes what the PyTorch model does."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny import ANSWER, CONTEXT, QUESTION

from korqa.cli import main
from korqa.modeling import BertConfig, BertForQuestionAnswering, load_engine
from korqa.modeling.checkpoint import load_model, save_pretrained
from korqa.modeling.config import ONNX_FILE
from korqa.modeling.engines import ReaderEngine, resolve_engine
from korqa.modeling.onnx_engine import OnnxEngine, build_onnx_engine
from korqa.modeling.onnx_graph import (
    META_WEIGHTS,
    ArrayWeights,
    bert_graph,
    expected_metadata,
    write_graph,
)
from korqa.modeling.quantize import smooth_for_int8
from korqa.modeling.weights import WeightsLayout
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


def test_a_directory_reads_with_its_own_model_onnx_and_a_stale_one_is_not_used(
        random_reader, tmp_path):
    model, model_dir = random_reader
    write_graph(model_dir)
    engine = build_onnx_engine(model_dir)
    assert engine.path == model_dir / ONNX_FILE
    assert engine.session.get_modelmeta().custom_metadata_map == expected_metadata(model_dir)
    # New weights of another layout (int8 blocks now) beside the old graph: the graph no
    # longer fits the file, so the engine builds the right one instead of reading garbage.
    save_pretrained(model, model_dir, dtype="int8")
    stale = onnx.load(str(model_dir / ONNX_FILE), load_external_data=False)
    assert {p.key: p.value for p in stale.metadata_props}[META_WEIGHTS] != expected_metadata(
        model_dir)[META_WEIGHTS]
    features = windows([7, 19])
    expected = compute_logits(load_model(BertForQuestionAnswering, model_dir), features,
                              pad_id=0, batch_size=2)
    got = compute_logits(build_onnx_engine(model_dir), features, pad_id=0, batch_size=2)
    for want, have in zip(expected, got, strict=True):
        assert abs(have.start - want.start).max() < 1e-4


def test_an_int8_graph_points_into_the_weights_file_and_keeps_int8_in_it(random_reader,
                                                                        tmp_path):
    model, _ = random_reader
    int8_dir = tmp_path / "int8"
    save_pretrained(model, int8_dir, dtype="int8")
    path = write_graph(int8_dir)
    graph = onnx.load(str(path), load_external_data=False).graph
    stored = {t.name: t for t in graph.initializer}
    layout = WeightsLayout.read(int8_dir / "model.safetensors")
    # Every tensor of the weights file is read from it, in its own dtype: no float copy.
    for name, tensor in layout.tensors.items():
        proto = stored[name]
        where = {entry.key: entry.value for entry in proto.external_data}
        assert where == {"location": "model.safetensors", "offset": str(tensor.offset),
                         "length": str(tensor.nbytes)}
        assert proto.data_type == {"I8": onnx.TensorProto.INT8, "F16": onnx.TensorProto.FLOAT16,
                                   "F32": onnx.TensorProto.FLOAT}[tensor.dtype]
    inline = [t.name for t in graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    assert all(np.prod(stored[name].dims) <= 64 for name in inline)  # only small constants
    assert path.stat().st_size < 50_000
    ops = {node.op_type for node in graph.node}
    assert {"DequantizeLinear", "Attention", "SkipLayerNormalization", "BiasGelu"} <= ops
    # The same function as the int8 file read back into torch (its dequantised weights).
    features = windows([7, 19, 12])
    expected = compute_logits(load_model(BertForQuestionAnswering, int8_dir).eval(), features,
                              pad_id=0, batch_size=3)
    got = compute_logits(build_onnx_engine(int8_dir), features, pad_id=0, batch_size=3)
    for want, have in zip(expected, got, strict=True):
        assert abs(have.start - want.start).max() < 1e-4
        assert abs(have.end - want.end).max() < 1e-4


def test_smoothing_for_int8_keeps_the_function(random_reader):
    model, model_dir = random_reader
    state = {k.removeprefix("bert."): v.numpy() for k, v in model.state_dict().items()}
    generator = np.random.default_rng(0)
    absmax = {f"encoder.layer.{i}.{part}": generator.random(width, dtype=np.float32) * 10
              for i in range(2) for part, width in (("attention.output.dense", 32),
                                                    ("intermediate.dense", 32),
                                                    ("output.dense", 64))}
    absmax["qa_outputs"] = generator.random(32, dtype=np.float32)
    smoothed, scales = smooth_for_int8(state, absmax, layers=2)
    assert sorted(scales) == sorted(name for name in absmax if "attention" not in name)
    assert not np.allclose(smoothed["encoder.layer.0.output.dense.weight"],
                           state["encoder.layer.0.output.dense.weight"])
    config = BertConfig.from_json_file(model_dir / "config.json")
    ids = generator.integers(5, 50, (2, 9))
    feed = {"input_ids": ids, "token_type_ids": np.zeros_like(ids),
            "attention_mask": np.ones_like(ids)}
    logits = [ort.InferenceSession(bert_graph(config, ArrayWeights(weights), "qa", inputs)
                                   .SerializeToString()).run(None, feed)[0]
              for weights, inputs in ((state, None), (smoothed, scales))]
    assert abs(logits[0] - logits[1]).max() < 1e-4
    with pytest.raises(ValueError, match="no ranges for qa_outputs"):
        smooth_for_int8(state, {k: v for k, v in absmax.items() if k != "qa_outputs"}, 2)


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
