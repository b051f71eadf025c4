"""Stopping and resuming a run: training state on disk without pickle (tensors in safetensors,
everything else in JSON), the random generators, staged checkpoint folders, what to resume."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_NAME = "training_state"
STATE_FORMAT = 1

# JSON has no tensors, tuples or integer keys; these tags stand in for them. Integer keys matter:
# an optimizer's `state` is keyed by parameter index and silently drops entries keyed "0".
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def flatten_state(state: object) -> tuple[object, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, tensors, scalars) into JSON and named tensors."""
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: object, path: str) -> object:
        if isinstance(value, torch.Tensor):
            # A copy: safetensors refuses tensors that share storage (views of one buffer).
            tensors[path] = value.detach().to("cpu", copy=True).contiguous()
            return {_TENSOR: path}
        if isinstance(value, dict):
            if all(isinstance(key, str) and not key.startswith("__") for key in value):
                return {key: encode(item, f"{path}/{key}") for key, item in value.items()}
            return {_ITEMS: [[key, encode(item, f"{path}/{key}")] for key, item in value.items()]}
        if isinstance(value, tuple):
            return {_TUPLE: [encode(item, f"{path}/{i}") for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [encode(item, f"{path}/{i}") for i, item in enumerate(value)]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"{path}: cannot store a {type(value).__name__} in training state")

    return encode(state, ""), tensors


def unflatten_state(tree: object, tensors: dict[str, torch.Tensor]) -> object:
    """The inverse of `flatten_state`."""
    if isinstance(tree, dict):
        if _TENSOR in tree:
            return tensors[tree[_TENSOR]]
        if _TUPLE in tree:
            return tuple(unflatten_state(item, tensors) for item in tree[_TUPLE])
        if _ITEMS in tree:
            return {key: unflatten_state(item, tensors) for key, item in tree[_ITEMS]}
        return {key: unflatten_state(item, tensors) for key, item in tree.items()}
    if isinstance(tree, list):
        return [unflatten_state(item, tensors) for item in tree]
    return tree


def save_state(directory: str | Path, state: dict, name: str = STATE_NAME) -> None:
    """Write `state` as `<name>.json` plus `<name>.safetensors` (when it holds tensors)."""
    directory = Path(directory)
    tree, tensors = flatten_state(state)
    if tensors:
        save_file(tensors, str(directory / f"{name}.safetensors"))
    if not isinstance(tree, dict) or "format" in tree:
        raise ValueError("training state must be a dict of string keys without 'format'")
    document = {"format": STATE_FORMAT, **tree}
    (directory / f"{name}.json").write_text(json.dumps(document, ensure_ascii=False, indent=1))


def load_state(directory: str | Path, name: str = STATE_NAME) -> dict:
    """Read what `save_state` wrote; tensors come back on the CPU."""
    directory = Path(directory)
    json_path = directory / f"{name}.json"
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: no training state here")
    document = json.loads(json_path.read_text())
    version = document.pop("format", None)
    if version != STATE_FORMAT:
        raise ValueError(f"{json_path}: training-state format {version!r}, expected {STATE_FORMAT}")
    tensor_path = directory / f"{name}.safetensors"
    tensors = load_file(str(tensor_path)) if tensor_path.is_file() else {}
    return unflatten_state(document, tensors)


def capture_rng() -> dict:
    """Every random generator training touches: Python, NumPy, torch CPU and CUDA."""
    kind, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def staged_directory(final: str | Path) -> Iterator[Path]:
    """Yield an empty sibling directory; on success it replaces `final` in two renames.

    A run killed while saving leaves the previous checkpoint intact: either `final` or, between
    the two renames, `final.old` (which `existing_checkpoint` falls back to).
    """
    final = Path(final)
    staging = final.with_name(final.name + ".tmp")
    previous = final.with_name(final.name + ".old")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    yield staging
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)
        final.rename(previous)
    staging.rename(final)
    if previous.exists():
        shutil.rmtree(previous)


def existing_checkpoint(final: str | Path) -> Path | None:
    """`final` if a complete checkpoint is there, else the one a kill mid-save left behind."""
    final = Path(final)
    for candidate in (final, final.with_name(final.name + ".old")):
        if (candidate / f"{STATE_NAME}.json").is_file():
            return candidate
    return None


def resume_source(out: str | Path, resume: bool, finished: str) -> Path | None:
    """The checkpoint to resume `out` from (None for a fresh run); refuses to start a fresh run
    over one that `out/last` or `out/{finished}` shows already exists."""
    out = Path(out)
    last = existing_checkpoint(out / "last")
    if resume:
        if last is None:
            raise FileNotFoundError(f"{out / 'last'}: no checkpoint to resume from")
        return last
    if last is not None or (out / finished).exists():
        raise ValueError(f"{out} already holds a run: pass --resume to continue it, or another "
                         f"--out")
    return None
