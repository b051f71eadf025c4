"""SmoothQuant smoothing (korqa.modeling.quantize) and `korqa calibrate`, which int8 reading
(ONNX Runtime's, tested in test_onnx_engine.py) needs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from korqa.cli import main
from korqa.modeling.config import ABSMAX_FILE
from korqa.modeling.quantize import load_input_absmax, record_input_absmax, smooth_linears
from korqa.reader.directory import ReaderDir


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


def dynamic_int8(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`model(x)` as dynamic int8 computes it: each linear's input rounded to 255 levels with one
    scale per tensor, its weights with one scale per output channel."""

    def rounded(t: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
        scale = absmax.clamp(min=1e-8) / 127
        return (t / scale).round().clamp(-127, 127) * scale

    def hook(module: nn.Linear, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        return (rounded(inputs[0], inputs[0].abs().max()),)

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for linear in linears:
        linear.weight.copy_(rounded(linear.weight, linear.weight.abs().amax(1, keepdim=True)))
    handles = [linear.register_forward_pre_hook(hook) for linear in linears]
    try:
        return model(x)
    finally:
        for handle in handles:
            handle.remove()


def test_smoothing_shrinks_int8_error_on_outlier_channels():
    x = outlier_inputs()
    reference = TwoLayer()
    with torch.no_grad():
        expected = reference(x)
        plain = dynamic_int8(TwoLayer(), x)
        smoothed = TwoLayer()
        smooth_linears(smoothed, record_input_absmax(smoothed, lambda: smoothed(x)))
        smoothed = dynamic_int8(smoothed, x)
        plain_error = (plain - expected).norm() / expected.norm()
        smoothed_error = (smoothed - expected).norm() / expected.norm()
    assert smoothed_error < 0.02
    assert smoothed_error < 0.5 * plain_error


def test_calibration_must_match_the_model():
    model = TwoLayer()
    with pytest.raises(ValueError, match="no ranges for down"):
        smooth_linears(model, {"up": torch.ones(64)})
    with pytest.raises(ValueError, match="reads 256 channels"):
        smooth_linears(TwoLayer(), {"up": torch.ones(64), "down": torch.ones(8)})
    with pytest.raises(ValueError, match="alpha"):
        smooth_linears(TwoLayer(), {"up": torch.ones(64), "down": torch.ones(256)}, alpha=2.0)


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
