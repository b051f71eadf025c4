"""SmoothQuant for int8 reading: calibration ranges of each linear layer's input, and smoothing.

ONNX Runtime's dynamic int8 (`korqa.modeling.onnx_engine`, korqa's one int8 path) quantises a
linear layer's input on the fly with one scale per tensor. On e5 the FFN's second linear reads
GELU outputs whose largest channels are many times the median one, so one scale leaves most
channels a handful of levels. SmoothQuant's remedy (Xiao et al., 2023) moves that range into the
weights: for input channel j,

    s_j = max|X_j|^α / max|W_:,j|^(1−α),   W' = W · diag(s),   X' = X · diag(1/s)

which leaves X'W'ᵀ = XWᵀ exactly in real arithmetic but evens out the channels the activation
quantiser sees. The max|X_j| come from a calibration pass over training questions
(`record_input_absmax`, saved beside the model by `korqa calibrate`); α (`DEFAULT_ALPHA`) was
chosen on the validation fold (the model card has the figures).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from korqa.modeling.config import ABSMAX_FILE, DEFAULT_ALPHA

_EPS = 1e-5


class SmoothedLinear(nn.Module):
    """x ↦ linear(x · inv_scale): a linear layer whose weight columns were multiplied by
    1 / inv_scale, so that the product is unchanged and `linear` can be quantised."""

    def __init__(self, linear: nn.Module, inv_scale: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("inv_scale", inv_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale)


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def record_input_absmax(model: nn.Module, run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |input| each `nn.Linear` of `model` sees while `run()`
    drives the model (e.g. reads calibration questions). Keys are module names."""
    absmax: dict[str, torch.Tensor] = {}

    def observer(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
            x = inputs[0].detach().float()
            seen = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
            absmax[name] = torch.maximum(absmax[name], seen) if name in absmax else seen

        return hook

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(observer(name))
               for name in linear_names(model)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    if not absmax:
        raise ValueError("calibration ran no input through the model's linear layers")
    return absmax


def save_input_absmax(absmax: dict[str, torch.Tensor], directory: str | Path) -> Path:
    path = Path(directory) / ABSMAX_FILE
    save_file({name: t.contiguous() for name, t in absmax.items()}, str(path),
              metadata={"format": "korqa-activation-absmax", "version": "1"})
    return path


def load_input_absmax(directory: str | Path) -> dict[str, torch.Tensor] | None:
    """The calibration saved beside a model, or None when it has none."""
    path = Path(directory) / ABSMAX_FILE
    if not path.is_file():
        return None
    return load_file(str(path))


def smooth_linears(model: nn.Module, absmax: dict[str, torch.Tensor],
                   alpha: float = DEFAULT_ALPHA, names: list[str] | None = None) -> nn.Module:
    """`model` (changed in place, also returned) with each `nn.Linear` named in `names` (default:
    all) wrapped in a `SmoothedLinear` whose weight columns carry the scales s (see the module
    docstring); the model computes the same function. `absmax` must cover those layers."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smoothing alpha must be in [0, 1], got {alpha}")
    names = linear_names(model) if names is None else names
    missing = [name for name in names if name not in absmax]
    if missing:
        raise ValueError(f"the calibration does not match this model: no ranges for {missing[0]} "
                         f"and {len(missing) - 1} more layers (run `korqa calibrate` again)")
    modules = dict(model.named_modules())
    for name in names:
        linear = modules[name]
        ranges = absmax[name].float()
        if ranges.shape != (linear.in_features,):
            raise ValueError(f"the calibration does not match this model: {name} reads "
                             f"{linear.in_features} channels, the ranges {tuple(ranges.shape)}")
        scale = smoothing_scale(linear, ranges, alpha)
        with torch.no_grad():
            linear.weight.mul_(scale)
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, SmoothedLinear(linear, 1.0 / scale))
    return model


def smoothing_scale(linear: nn.Linear, input_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_j = max|X_j|^α / max|W_:,j|^(1−α) for each input channel j (module docstring)."""
    weight_max = linear.weight.detach().abs().amax(dim=0).clamp(min=_EPS)
    return (input_absmax.float().clamp(min=_EPS) ** alpha
            / weight_max ** (1.0 - alpha)).clamp(min=_EPS)


def fold_attention_output_smoothing(model: nn.Module, absmax: dict[str, torch.Tensor],
                                    alpha: float = DEFAULT_ALPHA) -> list[str]:
    """Smooth each attention output linear with no extra op: its input is softmax · V, linear
    in V's channels, so dividing the value projection's output channel j by s_j divides that
    input channel by s_j exactly. Returns the layers smoothed (changed in place). Leaving no
    Mul between the heads and the output linear is what lets ONNX Runtime fuse attention."""
    modules = dict(model.named_modules())
    done = []
    for name in linear_names(model):
        if not name.endswith("attention.output.dense") or name not in absmax:
            continue
        value = modules.get(name.replace("attention.output.dense", "attention.self.value"))
        if not isinstance(value, nn.Linear):
            continue
        output = modules[name]
        scale = smoothing_scale(output, absmax[name], alpha)
        with torch.no_grad():
            output.weight.mul_(scale)
            value.weight.div_(scale[:, None])
            if value.bias is not None:
                value.bias.div_(scale)
        done.append(name)
    return done
