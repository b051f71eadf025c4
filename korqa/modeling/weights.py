"""A model directory's weights file without torch: where each tensor lies in model.safetensors
(the ONNX graph reads its weights from there), and korqa's int8 blocks turned back into floats
with numpy."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# How `korqa.modeling.checkpoint.save_pretrained` may store weights (int8: every 2-D weight
# as `K.qweight` int8 + `K.qscale` fp16, one scale per block of 32 columns).
SAVE_DTYPES = ("fp32", "fp16", "int8")
QWEIGHT, QSCALE = ".qweight", ".qscale"
# safetensors' dtype codes → numpy, for the dtypes korqa writes.
NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "I64": np.int64}
# A safetensors header is JSON of at most this many bytes (the format's own limit).
MAX_HEADER = 100_000_000


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a safetensors file: its dtype code, shape, and bytes [offset, +nbytes)
    counted from the start of the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class WeightsLayout:
    """The tensors of a safetensors file by name, read from its header alone. `fingerprint`
    hashes the header, which names every tensor with its dtype, shape and byte range: a graph
    that points into the file is valid exactly as long as it is unchanged."""

    path: Path
    tensors: dict[str, StoredTensor]
    fingerprint: str

    @classmethod
    def read(cls, path: str | Path) -> WeightsLayout:
        path = Path(path)
        with open(path, "rb") as handle:
            size = path.stat().st_size
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError(f"{path}: not a safetensors file (shorter than its header)")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER, size - 8):
                raise ValueError(f"{path}: not a safetensors file (header of {length} bytes)")
            header = handle.read(length)
        try:
            entries = json.loads(header)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not a safetensors file ({error})") from None
        tensors = {}
        for name, entry in entries.items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            offset = 8 + length + begin
            if not 0 <= begin <= end or offset + (end - begin) > size:
                raise ValueError(f"{path}: tensor {name!r} lies outside the file")
            tensors[name] = StoredTensor(name, entry["dtype"], tuple(entry["shape"]), offset,
                                         end - begin)
        return cls(path, tensors, hashlib.sha256(header).hexdigest())


def dequantize_blocks(qweight: np.ndarray, qscale: np.ndarray) -> np.ndarray:
    """int8 [rows, cols] × fp16 scales [rows, cols // block] → float32 [rows, cols]; each
    product is exact in float32 (an int8 times an fp16 needs 19 bits of mantissa)."""
    if qweight.ndim != 2 or qscale.ndim != 2 or qweight.shape[0] != qscale.shape[0]:
        raise ValueError(f"qweight {tuple(qweight.shape)} and qscale {tuple(qscale.shape)} "
                         f"are not [rows, cols] and [rows, cols // block]")
    rows, cols = qweight.shape
    if qscale.shape[1] == 0 or cols % qscale.shape[1]:
        raise ValueError(f"qscale's {qscale.shape[1]} blocks do not divide qweight's {cols} "
                         "columns")
    blocks = qweight.astype(np.float32).reshape(rows, qscale.shape[1], -1)
    return (blocks * qscale.astype(np.float32)[:, :, None]).reshape(rows, cols)


def float_weights(state: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """A state dict's tensors as float32 arrays, each `K.qweight` + `K.qscale` pair
    dequantised into `K`; integer tensors stay as they are."""
    out = {}
    for key, array in state.items():
        if key.endswith(QSCALE):
            if key.removesuffix(QSCALE) + QWEIGHT not in state:
                raise ValueError(f"{source}: '{key}' has no matching '{QWEIGHT}' tensor")
        elif key.endswith(QWEIGHT):
            name = key.removesuffix(QWEIGHT)
            if name + QSCALE not in state:
                raise ValueError(f"{source}: '{key}' has no matching '{name}{QSCALE}' tensor")
            try:
                out[name] = dequantize_blocks(array, state[name + QSCALE])
            except ValueError as error:
                raise ValueError(f"{source}: '{name}': {error}") from None
        else:
            out[key] = array.astype(np.float32) if array.dtype.kind == "f" else array
    return out


def read_float_weights(path: str | Path) -> dict[str, np.ndarray]:
    """A safetensors file's tensors as float32 numpy arrays (`float_weights`)."""
    from safetensors.numpy import load_file

    return float_weights(load_file(str(path)), str(path))
