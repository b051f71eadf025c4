"""Checkpoint I/O in HF's format: key mapping, safetensors/.bin reading, int8 blocks."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file, save_file

from korqa.modeling.bert import BertConfig, BertPreTrainedModel
from korqa.modeling.config import CONFIG_FILE, SAFETENSORS_FILE
from korqa.modeling.weights import SAVE_DTYPES, dequantize_blocks, float_weights

M = TypeVar("M", bound=BertPreTrainedModel)

logger = logging.getLogger(__name__)

BIN_FILE = "pytorch_model.bin"
WEIGHT_FILES = (SAFETENSORS_FILE, BIN_FILE)  # in order of preference

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")

# Keys that live outside the `bert.` encoder in HF's head models.
HEAD_PREFIXES = ("qa_outputs.", "cls.")


@dataclass
class LoadReport:
    """Which keys a load left at their fresh init (missing) or found no place for (unexpected)."""

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- int8 block quantisation

def quantize_int8_blockwise(weight: torch.Tensor, block: int = 32,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-block int8: [rows, cols] → (qweight int8 [rows, cols], qscale fp16
    [rows, cols // block]); each element ≈ qweight * the scale of its block of `block` columns."""
    if weight.dim() != 2:
        raise ValueError(f"can only quantise 2-D weights, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    if block <= 0 or cols % block:
        raise ValueError(f"block size {block} does not divide the {cols} columns")
    blocks = weight.detach().float().view(rows, cols // block, block)  # [rows, nb, block]
    # Round the scale to fp16 first and quantise against that, so that dequantising with the
    # stored scale reproduces what was rounded: error ≤ scale / 2 per element.
    scale = (blocks.abs().amax(dim=-1) / 127).half()  # [rows, nb]
    divisor = scale.float().clamp_min(torch.finfo(torch.float16).tiny).unsqueeze(-1)
    qweight = (blocks / divisor).round().clamp(-127, 127).to(torch.int8)
    return qweight.view(rows, cols), scale


def dequantize(qweight: torch.Tensor, qscale: torch.Tensor) -> torch.Tensor:
    """int8 [rows, cols] × fp16 scales [rows, cols // block] → float32 [rows, cols]
    (`korqa.modeling.weights.dequantize_blocks`, which ONNX Runtime's graph computes too)."""
    return torch.from_numpy(dequantize_blocks(qweight.cpu().numpy(), qscale.cpu().numpy()))


def quantize_state_dict(state: dict[str, torch.Tensor], block: int = 32,
                        ) -> dict[str, torch.Tensor]:
    """Replace every 2-D float tensor whose columns split into blocks by `K.qweight`/`K.qscale`;
    the rest (biases, LayerNorms) stay as they are. The result can go to safetensors' save_file."""
    out = {}
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dim() == 2 and tensor.size(1) % block == 0:
            out[f"{key}.qweight"], out[f"{key}.qscale"] = quantize_int8_blockwise(tensor, block)
        else:
            out[key] = tensor.detach().contiguous()
    return out


# ---------------------------------------------------------------- reading weight files

def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A `.safetensors` or torch `.bin` state dict as float32 (quantised pairs dequantised)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = load_file(path)
    else:
        # weights_only refuses anything but tensors and plain containers: no code runs on load.
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(
                isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path}: expected a flat dict of tensors (a state dict)")
    # numpy has no bfloat16: such tensors become float32 first, as they would anyway.
    arrays = {key: (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
              for key, tensor in state.items()}
    return {key: torch.from_numpy(array) for key, array in
            float_weights(arrays, str(path)).items()}


# ---------------------------------------------------------------- key mapping and loading

def _model_key(file_key: str, base: str) -> str:
    """A checkpoint key in any HF spelling → this model's key (`base` is "" or "bert.")."""
    key = file_key.removeprefix("bert.")
    for old, new in (("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias")):
        if key.endswith(old):  # TF-era names
            key = key.removesuffix(old) + new
    return key if key.startswith(HEAD_PREFIXES) else base + key


def load_state(model: BertPreTrainedModel, state: dict[str, torch.Tensor],
               source: str = "checkpoint") -> LoadReport:
    """Copy `state` (HF key names, with or without `bert.`) into `model`; unmatched keys are
    reported, not fatal; a shape mismatch raises ValueError naming the key and `source`."""
    base = "bert." if hasattr(model, "bert") else ""
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected = []
    for file_key, tensor in state.items():
        key = _model_key(file_key, base)
        if key.endswith("position_ids"):  # a buffer older transformers saved; we compute it
            continue
        if key == "cls.predictions.decoder.bias":  # HF's alias of cls.predictions.bias
            if "cls.predictions.bias" in state:
                continue
            key = "cls.predictions.bias"
        if key in model.tied_keys:  # shares storage with the word embeddings
            continue
        if key not in own:
            unexpected.append(file_key)
            continue
        if tensor.shape != own[key].shape:
            raise ValueError(f"{source}: '{file_key}' has shape {tuple(tensor.shape)}, the model "
                             f"expects {tuple(own[key].shape)} for '{key}'")
        mapped[key] = tensor
    model.load_state_dict(mapped, strict=False)
    missing = [k for k in own if k not in mapped and k not in model.tied_keys]
    report = LoadReport(missing_keys=missing, unexpected_keys=sorted(unexpected))
    if missing:
        logger.warning("%s: left freshly initialised (not in checkpoint): %s", source, missing)
    if unexpected:
        logger.warning("%s: not used by %s: %s", source, type(model).__name__, unexpected)
    return report


def find_weights(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {' or '.join(WEIGHT_FILES)}")


def load_pretrained(model_cls: type[BertPreTrainedModel], name_or_dir: str | Path,
                    ) -> tuple[BertPreTrainedModel, LoadReport]:
    """Build `model_cls` from a directory's config.json and load its weights."""
    directory = resolve_model_dir(name_or_dir)
    config = BertConfig.from_json_file(directory / CONFIG_FILE)
    weights = find_weights(directory)
    model = model_cls(config)
    report = load_state(model, read_weights(weights), source=str(weights))
    return model.eval(), report


def load_model(model_cls: type[M], name_or_dir: str | Path) -> M:
    """`model_cls` with the weights of a model directory, in eval mode; keys the
    checkpoint lacks or has beyond the model are logged (`load_pretrained` returns them)."""
    model, _ = load_pretrained(model_cls, name_or_dir)
    return model  # type: ignore[return-value]


def save_pretrained(model: BertPreTrainedModel, directory: str | Path,
                    dtype: str = "fp32") -> None:
    """config.json + model.safetensors, keyed as transformers' class of the same name.

    fp32 and fp16 files load in transformers too; int8 (every 2-D weight as `K.qweight` +
    `K.qscale`, block 32) is korqa's compact shipping format and loads here only.
    """
    if dtype not in SAVE_DTYPES:
        raise ValueError(f"dtype {dtype!r}: want one of {', '.join(SAVE_DTYPES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(directory / CONFIG_FILE, architectures=[type(model).__name__])
    # safetensors refuses tensors sharing storage; HF omits the tied decoder and re-ties on load.
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
             if k not in model.tied_keys}
    if dtype == "fp16":
        state = {k: v.half() for k, v in state.items()}
    elif dtype == "int8":
        state = quantize_state_dict(state)
    save_file(state, directory / SAFETENSORS_FILE, metadata={"format": "pt"})


# ---------------------------------------------------------------- model directories

def resolve_model_dir(name_or_dir: str | Path) -> Path:
    """`name_or_dir` if it is a directory, else FileNotFoundError; a hub name ("org/model") gets
    the command that downloads it. korqa fetches nothing itself: a reader needs its tokenizer
    beside the weights, and huggingface_hub's download gets the whole directory in one step."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_dir)
    if HUB_NAME.match(text) and ".." not in text:
        raise FileNotFoundError(
            f"{text}: not a model directory; korqa reads models from directories only. For a "
            f"hub model, download it first (`pip install huggingface_hub && hf download {text} "
            f"--local-dir DIR`) and pass DIR")
    raise FileNotFoundError(f"{name_or_dir}: not a model directory")
