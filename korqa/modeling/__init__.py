"""The BERT network and its checkpoints in HF's format."""

from korqa.modeling.bert import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertModel,
)
from korqa.modeling.checkpoint import LoadReport, dequantize, quantize_int8_blockwise

__all__ = [
    "BertConfig",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertModel",
    "LoadReport",
    "dequantize",
    "quantize_int8_blockwise",
]
