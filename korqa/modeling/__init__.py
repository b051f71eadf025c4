"""The BERT network and its checkpoints in HF's format."""

from korqa.modeling.bert import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertModel,
)
from korqa.modeling.checkpoint import LoadReport, dequantize, quantize_int8_blockwise
from korqa.modeling.quantize import load_reader_model, quantize_linears

__all__ = [
    "BertConfig",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertModel",
    "LoadReport",
    "dequantize",
    "load_reader_model",
    "quantize_linears",
    "quantize_int8_blockwise",
]
