"""`korqa pretrain`'s settings, apart from the trainer so that reading them (`korqa pretrain
--help`) imports no torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from korqa.training.config import RunConfig


@dataclass(kw_only=True)
class PairConfig:
    """How instances are cut and masked; defaults are BERT's create_pretraining_data flags.
    Keyword-only, as `RunConfig`, so that `PretrainConfig` holds these among its own fields."""

    # The "help" metadata is `korqa pretrain --help` (korqa.cli_options).
    max_seq_length: int = field(default=128, metadata={"help": "tokens per sequence pair"})
    # Sometimes aim shorter, so the model also sees short inputs.
    short_seq_prob: float = field(default=0.1, metadata={
        "help": "share of pairs cut shorter than --max-seq-length, as BERT does"})
    mask_prob: float = field(default=0.15, metadata={"help": "share of tokens masked"})
    max_predictions: int | None = field(default=None, metadata={
        "help": "masked tokens per sequence at most (default ceil(length * mask-prob))",
        "metavar": "N"})
    whole_word_mask: bool = field(default=False, metadata={
        "help": "mask every piece of a word together"})
    sop: bool = field(default=False, metadata={
        "help": "sentence-order prediction (ALBERT: swap A/B) instead of a random B"})
    # Random B segments are drawn from the documents in the buffer.
    doc_buffer: int = field(default=1000, metadata={"help": "documents shuffled together"})
    # So that one document's instances do not cluster.
    instance_buffer: int = field(default=2000, metadata={
        "help": "instances shuffled together"})

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be at least 8, got {self.max_seq_length}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.doc_buffer < 1 or self.instance_buffer < 1:
            raise ValueError("doc_buffer and instance_buffer must be at least 1")

    @property
    def predictions_per_sequence(self) -> int:
        if self.max_predictions is not None:
            return self.max_predictions
        return math.ceil(self.max_seq_length * self.mask_prob)


@dataclass
class PretrainConfig(RunConfig, PairConfig):
    """One pre-training run; defaults follow BERT's recipe. The pairs it trains on are cut
    and masked as its `PairConfig` fields say: a PretrainConfig is one."""

    # The "help" metadata is `korqa pretrain --help` (korqa.cli_options).
    corpus: list[str] = field(metadata={
        "help": "kowiki .jsonl[.xz], SQuAD .json[.gz], .txt/.md files (one document "
                "each), or folders", "metavar": "PATH"})
    tokenizer: str = field(metadata={
        "help": "a directory with vocab.txt / tokenizer.json, from `korqa vocab`",
        "metavar": "DIR"})
    out: str = field(metadata={
        "help": "run directory: last/, final/, log.jsonl, curves.png, summary.json",
        "metavar": "DIR"})
    config: str = field(default="small", metadata={
        "help": "tiny, small, base, or a config.json (vocab_size: the tokenizer's)"})
    max_steps: int = field(default=10_000, metadata={
        "help": "optimizer steps; the learning-rate schedule is planned for them"})
    batch_size: int = field(default=32, metadata={"help": "sequence pairs per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    warmup: float = field(default=0.01, metadata={
        "help": "fraction of steps, or steps if >= 1"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "0 = no clipping"})
    max_docs_per_file: int | None = field(default=None, metadata={
        "help": "read only the first N documents of each file", "metavar": "N"})
    save_every: int = field(default=1000, metadata={
        "help": "write OUT/last every N steps, and at the end", "metavar": "STEPS"})
