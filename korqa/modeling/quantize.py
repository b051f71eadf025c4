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

Smoothing works on numpy weights (a state dict keyed without `bert.`), so int8 reading needs no
torch; only recording the ranges runs the PyTorch model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from korqa.modeling.config import ABSMAX_FILE, DEFAULT_ALPHA

if TYPE_CHECKING:
    import torch
    from torch import nn

_EPS = np.float32(1e-5)


def linear_names(model: nn.Module) -> list[str]:
    from torch import nn

    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def record_input_absmax(model: nn.Module, run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |input| each `nn.Linear` of `model` sees while `run()`
    drives the model (e.g. reads calibration questions). Keys are module names."""
    import torch

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


def save_input_absmax(absmax: dict[str, torch.Tensor | np.ndarray], directory: str | Path,
                      ) -> Path:
    from safetensors.numpy import save_file

    path = Path(directory) / ABSMAX_FILE
    arrays = {name: np.ascontiguousarray(np.asarray(value, dtype=np.float32))
              for name, value in absmax.items()}
    save_file(arrays, str(path), metadata={"format": "korqa-activation-absmax", "version": "1"})
    return path


def load_input_absmax(directory: str | Path) -> dict[str, np.ndarray] | None:
    """The calibration saved beside a model (keys without `bert.`), or None when it has none."""
    from safetensors.numpy import load_file

    path = Path(directory) / ABSMAX_FILE
    if not path.is_file():
        return None
    return {name.removeprefix("bert."): value.astype(np.float32)
            for name, value in load_file(str(path)).items()}


def smoothing_scale(weight: np.ndarray, input_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^α / max|W_:,j|^(1−α) for each input channel j of a [out, in] weight
    (module docstring), in float32."""
    weight_max = np.maximum(np.abs(weight).max(axis=0), _EPS)
    ranges = np.maximum(input_absmax.astype(np.float32), _EPS)
    return np.maximum(ranges ** np.float32(alpha) / weight_max ** np.float32(1.0 - alpha), _EPS)


def _check_ranges(absmax: dict[str, np.ndarray], name: str, weight: np.ndarray,
                  missing: int) -> np.ndarray:
    if name not in absmax:
        raise ValueError(f"the calibration does not match this model: no ranges for {name} "
                         f"and {missing} more layers (run `korqa calibrate` again)")
    ranges = absmax[name]
    if ranges.shape != (weight.shape[1],):
        raise ValueError(f"the calibration does not match this model: {name} reads "
                         f"{weight.shape[1]} channels, the ranges {tuple(ranges.shape)}")
    return ranges


def smooth_for_int8(state: dict[str, np.ndarray], absmax: dict[str, np.ndarray],
                    layers: int, alpha: float = DEFAULT_ALPHA,
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Smoothed copies of a reader's float weights (`state`, keyed without `bert.`) and the
    vectors the smoothed layers' inputs are multiplied by (`onnx_graph.bert_graph`'s
    input_scales); the model computes the same function.

    Each attention output linear is smoothed with no extra op: its input is softmax · V,
    linear in V's channels, so dividing the value projection's output channel j by s_j
    divides that input channel by s_j exactly; leaving no Mul between the heads and the output
    linear is what lets ONNX Runtime quantise the fused attention. The FFN's two linears and
    the QA head get a Mul by 1/s on their input. The query/key/value linears read layer-norm
    outputs, which quantise well unsmoothed, and stay as they are."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smoothing alpha must be in [0, 1], got {alpha}")
    state = dict(state)
    input_scales = {}
    names = [f"encoder.layer.{i}.{part}" for i in range(layers)
             for part in ("attention.output.dense", "intermediate.dense", "output.dense")]
    names.append("qa_outputs")
    for position, name in enumerate(names):
        weight = state[f"{name}.weight"]
        scale = smoothing_scale(weight, _check_ranges(absmax, name, weight,
                                                      len(names) - position - 1), alpha)
        state[f"{name}.weight"] = weight * scale
        if name.endswith("attention.output.dense"):
            value = name.replace("attention.output.dense", "attention.self.value")
            state[f"{value}.weight"] = state[f"{value}.weight"] / scale[:, None]
            state[f"{value}.bias"] = state[f"{value}.bias"] / scale
        else:
            input_scales[name] = np.float32(1.0) / scale
    return state, input_scales
