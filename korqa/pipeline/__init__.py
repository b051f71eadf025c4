"""The retriever–reader pipeline: the only place that knows both, plus conversations and the
chat loop on top."""

from korqa.pipeline.conversation import Conversation, HistoryError, Turn
from korqa.pipeline.qa import (
    DEFAULT_FUSION_WEIGHT,
    DEFAULT_THRESHOLD,
    Answer,
    AnswerCandidate,
    FusionTuning,
    PipelineConfig,
    QAPipeline,
    RetrievedParagraph,
    fuse,
    load_reader,
    normalise_retrieval,
    tune_fusion,
)
from korqa.pipeline.sources import PipelineSources, cached_index, open_index, open_pipeline

__all__ = [
    "DEFAULT_FUSION_WEIGHT",
    "DEFAULT_THRESHOLD",
    "Answer",
    "AnswerCandidate",
    "Conversation",
    "FusionTuning",
    "HistoryError",
    "PipelineConfig",
    "PipelineSources",
    "QAPipeline",
    "RetrievedParagraph",
    "Turn",
    "cached_index",
    "fuse",
    "load_reader",
    "normalise_retrieval",
    "open_index",
    "open_pipeline",
    "tune_fusion",
]
