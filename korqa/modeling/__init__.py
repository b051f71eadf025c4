"""The BERT network and its checkpoints in HF's format.

Names are imported on first use (`korqa.lazy`): `korqa.modeling.onnx_engine` and
`korqa.modeling.config` must be importable without torch, and importing any submodule runs this
file first.
"""

from korqa.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": ("BertConfig",),
    "bert": ("BertForPreTraining", "BertForQuestionAnswering", "BertModel"),
    "checkpoint": ("LoadReport", "dequantize", "quantize_int8_blockwise"),
    "engines": ("load_engine",),
})
