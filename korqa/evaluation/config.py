"""What the evaluation commands are asked for, apart from the code that runs them, so that
reading them (`korqa evaluate --help`) imports neither torch nor the reader. Each "help" is the
command line's (korqa.cli_options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from korqa.modeling.engines import EngineChoice
from korqa.splits import EVALUATION_SPLITS

PROGRESS_HELP = "hide the progress bars"


@dataclass(kw_only=True)
class EvaluateConfig:
    """`korqa evaluate`: a saved reader on one split of a SQuAD-format file
    (`korqa.evaluation.evaluate.evaluate`)."""

    model: str | None = field(default=None, metadata={
        "help": "a reader directory (default: the shipped reader, or $KORQA_MODEL)",
        "metavar": "DIR"})
    data: str = field(metadata={"help": "SQuAD-format JSON (KorQuAD dev)"})
    split: str = field(default="test", metadata={
        "help": "questions to score, as described above", "choices": EVALUATION_SPLITS})
    limit: int | None = field(default=None, metadata={
        "help": "score N questions of the split drawn at random with --seed (default: all)",
        "metavar": "N"})
    seed: int = field(default=0, metadata={"help": "random seed of the --limit sample"})
    report: str | None = field(default=None, metadata={
        "help": "write predictions and the error analysis", "metavar": "DIR"})
    progress: bool = field(default=True, metadata={"help": PROGRESS_HELP,
                                                   "flag": "--no-progress"})
    engine: EngineChoice = field(default_factory=EngineChoice)
    # `ReaderConfig` fields given on the command line, laid over the reader's own.
    reader_overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "overrides": "korqa.reader.config:ReaderConfig",
        "title": "reading (each replaces the reader's reader_config.json)"})


@dataclass
class ScoreConfig:
    """`korqa score`: a predictions file against the gold answers
    (`korqa.evaluation.evaluate.score_file`)."""

    data: str = field(metadata={"help": "SQuAD-format JSON with the gold answers"})
    predictions: str = field(metadata={"help": 'JSON object {"question id": "answer"}'})
    metric: Literal["korquad", "squad"] = field(default="korquad", metadata={
        "help": "korquad: F1 over characters; squad: F1 over tokens"})


@dataclass(kw_only=True)
class OpenSets:
    """Which questions make the answerable / unanswerable / off-topic sets
    (`korqa.evaluation.open_domain.build_open_sets`)."""

    data: str = field(metadata={"help": "KorQuAD 1.0 dev JSON (questions, paragraphs)"})
    chitchat: str = field(metadata={
        "help": "small-talk questions: ChatbotData.csv[.gz] (Q,A columns)", "metavar": "FILE"})
    answerable: int | None = field(default=None, metadata={
        "help": "KorQuAD questions drawn (seeded; default all of the split); the unanswerable "
                "set asks the same ones", "metavar": "N"})
    offtopic: int | None = field(default=None, metadata={
        "help": "small-talk questions drawn (default half as many as --answerable)",
        "metavar": "N"})
    seed: int = field(default=0, metadata={"help": "random seed of the drawn questions"})


@dataclass(kw_only=True)
class OpenReads:
    """How the sets are read through the pipeline, and where the reads are cached."""

    model: str | None = field(default=None, metadata={
        "help": "a reader directory (default: the shipped reader, or $KORQA_MODEL)",
        "metavar": "DIR"})
    cache: str | None = field(default=None, metadata={
        "help": "JSON lines of the pipeline's reads, reused across runs (default: under "
                "~/.cache/korqa/open-domain, per reader and split)", "metavar": "FILE"})
    threads: int | None = field(default=None, metadata={
        "help": "CPU threads for the reader", "metavar": "N"})
    progress: bool = field(default=True, metadata={"help": PROGRESS_HELP,
                                                   "flag": "--no-progress"})


@dataclass(kw_only=True)
class OpenSetsConfig:
    """`korqa open-sets`: the three sets written as JSON lines."""

    sets: OpenSets
    split: Literal["test", "validation"] = field(default="test", metadata={
        "help": "test: the test articles and chitchat rows; validation: the reader's held-out "
                "fold, for fitting"})
    out: str = field(metadata={"help": "JSON lines to write", "metavar": "FILE"})


@dataclass(kw_only=True)
class CalibrateConfidenceConfig:
    """`korqa calibrate-confidence`: fit the confidence on the validation sets."""

    sets: OpenSets
    reads: OpenReads = field(default_factory=OpenReads)
    precision: float = field(default=0.5, metadata={
        "help": "share of answered validation questions (all three sets) that must be exactly "
                "right (default 0.5: the shipped confidence.json)"})
    out: str | None = field(default=None, metadata={
        "help": "default: MODEL/confidence.json", "metavar": "FILE"})


@dataclass(kw_only=True)
class OpenEvaluationConfig:
    """`korqa evaluate-open`: the three sets through the whole pipeline."""

    sets: OpenSets
    reads: OpenReads = field(default_factory=OpenReads)
    split: Literal["test", "validation"] = field(default="test", metadata={
        "help": "which sets of `korqa open-sets` to run"})
    confidence: str | None = field(default=None, metadata={
        "help": "default: MODEL/confidence.json", "metavar": "FILE"})
    report: str | None = field(default=None, metadata={
        "help": "write reliability.png, coverage_accuracy.png and summary.json here (default: "
                "none)", "metavar": "DIR"})
