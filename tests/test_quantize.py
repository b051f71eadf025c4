"""SmoothQuant smoothing (korqa.modeling.quantize) and `korqa calibrate`, which int8 reading
(ONNX Runtime's, tested in test_onnx_engine.py) needs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from korqa.cli import main
from korqa.modeling.config import ABSMAX_FILE, DEFAULT_ALPHA
from korqa.modeling.quantize import load_input_absmax, smooth_for_int8, smoothing_scale
from korqa.reader.directory import ReaderDir


def linear_layer() -> tuple[np.ndarray, np.ndarray]:
    """A [out, in] weight and its bias."""
    generator = np.random.default_rng(0)
    return (generator.normal(0, 0.1, (256, 64)).astype(np.float32),
            generator.normal(0, 0.1, 256).astype(np.float32))


def outlier_inputs() -> np.ndarray:
    x = np.random.default_rng(1).normal(size=(32, 64)).astype(np.float32)
    x[:, 3] *= 40.0  # one channel far larger than the rest, like e5's GELU outputs
    return x


def rounded(t: np.ndarray, absmax: np.ndarray) -> np.ndarray:
    """`t` on 255 levels of a scale per `absmax` (dynamic int8's rounding)."""
    scale = np.maximum(absmax, 1e-8) / 127
    return np.clip(np.round(t / scale), -127, 127) * scale


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, int8: bool = False,
           ) -> np.ndarray:
    """In float, or as dynamic int8 computes it: the input on one scale per tensor, the
    weights on one scale per output channel."""
    if int8:
        x = rounded(x, np.abs(x).max())
        weight = rounded(weight, np.abs(weight).max(axis=1, keepdims=True))
    return x @ weight.T + bias


def test_smoothing_keeps_the_function_and_shrinks_int8_error_on_outlier_channels():
    (weight, bias), x = linear_layer(), outlier_inputs()
    expected = linear(x, weight, bias)
    scale = smoothing_scale(weight, np.abs(x).max(axis=0), DEFAULT_ALPHA)
    smoothed = weight * scale
    assert abs(linear(x / scale, smoothed, bias) - expected).max() < 1e-4 * abs(expected).max()
    plain_error = np.linalg.norm(linear(x, weight, bias, int8=True) - expected)
    smoothed_error = np.linalg.norm(linear(x / scale, smoothed, bias, int8=True) - expected)
    assert smoothed_error < 0.5 * plain_error
    assert smoothed_error / np.linalg.norm(expected) < 0.02


def test_calibration_must_match_the_model():
    config_layers = 1
    state = {f"encoder.layer.0.{name}.{part}": np.ones(shape, np.float32)
             for name, shapes in (("attention.self.value", ((8, 8), (8,))),
                                  ("attention.output.dense", ((8, 8), (8,))),
                                  ("intermediate.dense", ((16, 8), (16,))),
                                  ("output.dense", ((8, 16), (8,))))
             for part, shape in zip(("weight", "bias"), shapes, strict=True)}
    state.update({"qa_outputs.weight": np.ones((2, 8), np.float32),
                  "qa_outputs.bias": np.ones(2, np.float32)})
    ranges = {"encoder.layer.0.attention.output.dense": np.ones(8, np.float32),
              "encoder.layer.0.intermediate.dense": np.ones(8, np.float32),
              "encoder.layer.0.output.dense": np.ones(16, np.float32),
              "qa_outputs": np.ones(8, np.float32)}
    smooth_for_int8(state, ranges, config_layers)
    with pytest.raises(ValueError, match="no ranges for qa_outputs"):
        smooth_for_int8(state, {k: v for k, v in ranges.items() if k != "qa_outputs"},
                        config_layers)
    with pytest.raises(ValueError, match="reads 16 channels"):
        smooth_for_int8(state, {**ranges, "encoder.layer.0.output.dense": np.ones(8)},
                        config_layers)
    with pytest.raises(ValueError, match="alpha"):
        smooth_for_int8(state, ranges, config_layers, alpha=2.0)


def test_calibrate_writes_the_ranges_int8_needs_and_torch_int8_is_refused(trained_reader,
                                                                          capsys):
    model_dir, data = trained_reader
    with pytest.raises(ValueError, match="korqa calibrate"):  # no calibration yet
        ReaderDir(model_dir).load(engine="onnx", int8=True)
    assert main(["calibrate", "--model", str(model_dir), "--data", str(data)]) == 0
    assert ABSMAX_FILE in capsys.readouterr().out
    absmax = load_input_absmax(model_dir)
    assert absmax is not None and set(absmax) >= {"qa_outputs"}
    # One int8 path: ONNX Runtime's. Asking torch for it says which engine to use.
    with pytest.raises(ValueError, match="--engine onnx"):
        ReaderDir(model_dir).load(engine="torch", int8=True)
    with pytest.raises(ValueError, match="--engine onnx"):
        ReaderDir(model_dir).load(engine="auto", int8=True, device="cuda")
    assert ReaderDir(model_dir).load(engine="auto", int8=True).engine.is_int8


def test_calibrate_reads_the_split_it_is_given(trained_reader, monkeypatch):
    import korqa.reader.calibrate as calibrate
    from korqa.corpus.formats import read_squad
    from korqa.splits import select_split

    model_dir, data = trained_reader
    asked = []
    monkeypatch.setattr(calibrate, "calibrate_reader",
                        lambda model, examples: asked.append({e.qid for e in examples}) or model)
    for flags in ([], ["--split", "validation"]):
        assert main(["calibrate", "--model", str(model_dir), "--data", str(data), *flags]) == 0
    train, validation = ({e.qid for e in select_split(read_squad(data), split)}
                         for split in ("train", "validation"))
    assert asked == [train, validation] and train.isdisjoint(validation)


def test_evaluate_reports_which_weights_it_read_with(trained_reader, capsys):
    model_dir, data = trained_reader
    assert main(["calibrate", "--model", str(model_dir), "--data", str(data)]) == 0
    capsys.readouterr()
    runs = {}
    for flags in ([], ["--int8"]):
        assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--split",
                     "test", "--json", "--no-progress", *flags]) == 0
        runs[bool(flags)] = json.loads(capsys.readouterr().out)
    assert runs[True]["int8"] is True and runs[False]["int8"] is False
    assert runs[False]["f1"] == runs[True]["f1"] == 100.0
