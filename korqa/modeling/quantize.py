"""Fast CPU inference: smoothed dynamic int8 linear layers.

`torch.ao.quantization.quantize_dynamic` turns every `nn.Linear` into an int8 matmul that
quantises its input on the fly with one scale per tensor. On e5 that alone costs a reader
~17 F1 (validation, 100 questions): the FFN's second linear reads GELU outputs whose largest
channels reach ~33 while the median channel stays under 1.5, so one scale per tensor leaves
most channels a handful of levels. SmoothQuant's remedy (Xiao et al., 2023) moves that range
into the weights: for input channel j,

    s_j = max|X_j|^α / max|W_:,j|^(1−α),   W' = W · diag(s),   X' = X · diag(1/s)

which leaves X'W'ᵀ = XWᵀ exactly in real arithmetic but evens out the channels the activation
quantiser sees. The max|X_j| come from a calibration pass over training questions
(`record_input_absmax`, saved beside the model by `korqa calibrate`); α = 0.85 was chosen on
the validation fold (α 0.5 / 0.75 / 0.85 / 0.95 → F1 25.5 / 52.4 / 53.6 / 51.9 against
53.7 for fp32, 100 questions). Weights are quantised per output channel.

Smoothing is not enough for the FFN's output linear: on 875 validation questions the fully
int8 reader lost 1.5 F1 (58.59 against 60.13). Keeping those 12 linears in float
(`FLOAT_LAYERS`, what `load_reader_model` does) halves that loss to 1.1 (59.05) at the same
speed as all-int8 in an interleaved timing on this CPU; int8 reading stays opt-in for it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from korqa.modeling.config import ABSMAX_FILE, DEFAULT_ALPHA

_EPS = 1e-5
# The FFN's second linear, encoder.layer.N.output.dense (not attention.output.dense).
FLOAT_LAYERS = re.compile(r"(^|\.)layer\.\d+\.output\.dense$")


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


def quantize_linears(model: nn.Module, absmax: dict[str, torch.Tensor] | None = None,
                     alpha: float = DEFAULT_ALPHA,
                     keep_float: re.Pattern[str] | None = None) -> nn.Module:
    """`model` (changed in place, also returned) with its `nn.Linear`s dynamic int8 linears
    (weights per output channel), smoothed first when `absmax` is given; layers whose names
    match `keep_float` stay as they are. For CPU inference only: the result cannot be trained,
    moved to a GPU or saved as a checkpoint."""
    names = [name for name in linear_names(model)
             if keep_float is None or not keep_float.search(name)]
    if absmax is not None:
        smooth_linears(model, absmax, alpha, names)
        targets = [f"{name}.linear" for name in names]  # inside their SmoothedLinear wrappers
    else:
        targets = names
    model.eval()
    with warnings.catch_warnings():  # torch.ao's deprecation notices are not the user's concern
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantize_dynamic(model, dict.fromkeys(targets, per_channel_dynamic_qconfig),
                         dtype=torch.qint8, inplace=True)
    return model


def load_torch_reader(directory: str | Path, int8: bool = False) -> nn.Module:
    """korqa's PyTorch BERT reader from `directory`, in eval mode; with int8 its linears (but
    `FLOAT_LAYERS`) smoothed and quantised by the calibration saved beside it."""
    from korqa.modeling.bert import BertForQuestionAnswering

    model = BertForQuestionAnswering.from_pretrained(directory).eval()
    if not int8:
        return model
    absmax = load_input_absmax(directory)
    if absmax is None:
        raise ValueError(f"{directory}: no {ABSMAX_FILE}; run `korqa calibrate --model "
                         f"{directory} --data TRAIN.json` to read it with int8")
    return quantize_linears(model, absmax, keep_float=FLOAT_LAYERS)
