"""`korqa pretrain`'s settings, apart from the trainer so that reading them (`korqa pretrain
--help`) imports no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from korqa.training.config import RunConfig

if TYPE_CHECKING:
    from korqa.pretraining.data import PairConfig


@dataclass
class PretrainConfig(RunConfig):
    """One pre-training run; defaults follow BERT's recipe at sequence length 128."""

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
    max_seq_length: int = field(default=128, metadata={"help": "tokens per sequence pair"})
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
    doc_buffer: int = field(default=1000, metadata={"help": "documents shuffled together"})
    instance_buffer: int = field(default=2000, metadata={
        "help": "instances shuffled together"})
    max_docs_per_file: int | None = field(default=None, metadata={
        "help": "read only the first N documents of each file", "metavar": "N"})
    save_every: int = field(default=1000, metadata={
        "help": "write OUT/last every N steps, and at the end", "metavar": "STEPS"})

    def pair_config(self) -> PairConfig:
        from korqa.pretraining.data import PairConfig

        return PairConfig(max_seq_length=self.max_seq_length, short_seq_prob=self.short_seq_prob,
                          mask_prob=self.mask_prob, max_predictions=self.max_predictions,
                          whole_word_mask=self.whole_word_mask, sop=self.sop,
                          doc_buffer=self.doc_buffer, instance_buffer=self.instance_buffer)
