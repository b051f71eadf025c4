"""Which engine runs a reader, and loading it: torch only when the torch engine is chosen.

`korqa ask` on the CPU reads with ONNX Runtime; importing torch for that would cost more time
than the whole answer, so this module and the ONNX engine import torch only where a torch
model is built (the torch engine, or tracing the ONNX graph on a cache miss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENGINES = ("auto", "torch", "onnx")


def resolve_engine(engine: str, device: str = "cpu") -> str:
    """"torch" or "onnx": auto picks ONNX Runtime on the CPU when it is installed."""
    from korqa.modeling.onnx_engine import onnxruntime_available

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    on_cpu = device == "cpu"
    if engine == "onnx" and not on_cpu:
        raise ValueError(f"the onnx engine reads on the CPU only, not on {device}; "
                         "use --engine torch")
    if engine == "auto":
        return "onnx" if on_cpu and onnxruntime_available() else "torch"
    return engine


def load_reader_model(directory: str | Path, int8: bool = False,
                      engine: str = "torch", device: str = "cpu") -> Any:
    """A reader from `directory`, in eval mode, called like `BertForQuestionAnswering`.

    engine "torch": korqa's PyTorch BERT; with int8 its linears (but `FLOAT_LAYERS`) smoothed
    and quantised by the calibration saved beside it. "onnx": the same model traced and run by
    ONNX Runtime (`korqa.modeling.onnx_engine`; CPU only). "auto": onnx on the CPU when
    onnxruntime is installed, else torch."""
    if resolve_engine(engine, device) == "onnx":
        from korqa.modeling.onnx_engine import build_onnx_reader

        return build_onnx_reader(directory, int8)
    from korqa.modeling.quantize import load_torch_reader

    return load_torch_reader(directory, int8)


def is_onnx(model: object) -> bool:
    """Whether ONNX Runtime runs `model` (it then takes and returns numpy arrays)."""
    from korqa.modeling.onnx_engine import OnnxReaderModel

    return isinstance(model, OnnxReaderModel)


def is_quantized(model: Any) -> bool:
    """Whether `model` reads with int8 linears (`quantize_linears`, or an int8 ONNX engine)."""
    if is_onnx(model):
        return bool(model.int8)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    if getattr(model, "int8", False):
        return True
    return any(isinstance(module, DynamicInt8Linear) for module in model.modules())
