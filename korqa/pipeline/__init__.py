"""The retriever–reader pipeline: the only place that knows both, plus conversations and the
chat loop on top."""

from korqa.pipeline.answers import Answer, AnswerCandidate, RetrievedParagraph
from korqa.pipeline.conversation import Conversation, HistoryError, Turn
from korqa.pipeline.qa import (
    DEFAULT_FUSION_WEIGHT,
    PipelineConfig,
    QAPipeline,
    fuse,
    load_reader,
    normalise_retrieval,
)
from korqa.pipeline.sources import PipelineSources, cached_index, open_index, open_pipeline

__all__ = [
    "DEFAULT_FUSION_WEIGHT",
    "Answer",
    "AnswerCandidate",
    "Conversation",
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
]
