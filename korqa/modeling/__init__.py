"""The BERT network and its checkpoints in HF's format.

Names are imported on first use (PEP 562): `korqa.modeling.onnx_engine` and
`korqa.modeling.config` must be importable without torch, and importing any submodule runs this
file first.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BertConfig": "korqa.modeling.config",
    "BertForPreTraining": "korqa.modeling.bert",
    "BertForQuestionAnswering": "korqa.modeling.bert",
    "BertModel": "korqa.modeling.bert",
    "LoadReport": "korqa.modeling.checkpoint",
    "dequantize": "korqa.modeling.checkpoint",
    "quantize_int8_blockwise": "korqa.modeling.checkpoint",
    "load_engine": "korqa.modeling.engines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'korqa.modeling' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
