"""`korqa train`'s settings, apart from the trainer so that reading them (`korqa train --help`)
imports no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from korqa.modeling.config import SaveDtype
from korqa.reader.features import FeatureConfig


@dataclass(kw_only=True)
class RunConfig:
    """What every training run (`korqa train`, `korqa pretrain`) settles before its model is
    built, and how it stops and resumes (`korqa.training.loop.start_run`). Keyword-only, so the
    runs' own required fields come first; their --help lists these last."""

    seed: int = field(default=0, metadata={"help": "random seed"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={
        "help": "auto uses CUDA when it is available"})
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field(default="auto", metadata={
        "help": "auto: bf16 (or fp16) autocast on CUDA, fp32 on the CPU"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads"})
    stop_at_step: int | None = field(default=None, metadata={
        "help": "stop at this step (after saving OUT/last); continue with --resume",
        "metavar": "STEP"})
    resume: bool = field(default=False, metadata={
        "help": "continue the run in OUT/last (same settings required)"})
    progress: bool = field(default=True, metadata={
        "help": "hide the progress bars", "flag": "--no-progress"})


@dataclass
class FinetuneConfig(RunConfig, FeatureConfig):
    """One fine-tuning run; defaults are BERT's SQuAD recipe, scaled for a small encoder. The
    windows it trains on (`FeatureConfig`'s fields) are saved with the model it writes."""

    # The "help" metadata is `korqa train --help` (korqa.cli_options).
    model: str = field(metadata={"help": "initial checkpoint dir (weights + tokenizer)"})
    data: str = field(metadata={"help": "SQuAD-format JSON to cut the split from"})
    out: str = field(metadata={
        "help": "run directory: best/, last/, log.jsonl, curves.png, split.json, summary.json"})
    split: Literal["train", "train+validation"] = field(default="train", metadata={
        "help": "train: hold out --validation-fold; train+validation: train on all 112 "
                "non-test articles"})
    validation_fold: int = field(default=0, metadata={
        "help": "group-k-fold fold of the non-test articles to validate on"})
    validation_data: str | None = field(default=None, metadata={
        "help": "SQuAD file to validate on instead of the fold"})
    extra_data: list[str] = field(default_factory=list, metadata={
        "help": "more SQuAD files for training only (test-split overlaps are dropped)",
        "metavar": "FILE"})
    epochs: int = field(default=2, metadata={"help": "passes over the training questions"})
    max_steps: int | None = field(default=None, metadata={
        "help": "train this many steps instead of --epochs (the schedule is planned for them)"})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    batch_size: int = field(default=16, metadata={"help": "windows per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    warmup: float = field(default=0.1, metadata={"help": "fraction of steps, or steps if >= 1"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "0 = no clipping"})
    eval_every: int = field(default=0, metadata={
        "help": "validate every N steps too (always at each epoch end)", "metavar": "STEPS"})
    eval_limit: int | None = field(default=None, metadata={
        "help": "validate on N questions (a fixed random subset)", "metavar": "N"})
    save_every: int = field(default=0, metadata={
        "help": "write OUT/last every N steps too (always at each validation)",
        "metavar": "STEPS"})
    freeze_layers: int = field(default=0, metadata={
        "help": "freeze the embeddings and the N lowest layers (faster on CPU)", "metavar": "N"})
    freeze_embeddings: bool = field(default=False, metadata={
        "help": "freeze the embeddings only (implied by --freeze-layers)"})
    layer_lr_decay: float = field(default=1.0, metadata={
        "help": "each layer below the head trains at this times the learning rate of the "
                "layer above; 1: one rate for all"})
    trim_particles: bool = field(default=True, metadata={
        "help": "validate without cutting particles off answers (no kiwipiepy needed)",
        "flag": "--no-trim"})

DTYPE_HELP = "how the weights are stored"
Scheme = Literal["korquad", "group-kfold", "kfold", "stratified", "shuffle"]
SplitFormat = Literal["ids", "squad"]


@dataclass
class AverageConfig:
    """`korqa average` (korqa.training.average.write_average)."""

    models: list[str] = field(metadata={"help": "reader directories to average",
                                        "metavar": "DIR"})
    out: str = field(metadata={"help": "directory to write", "metavar": "DIR"})
    dtype: SaveDtype = field(default="fp32", metadata={"help": DTYPE_HELP})


@dataclass(kw_only=True)
class PruneConfig:
    """`korqa prune` (korqa.training.prune.prune): probe which layers a reader can spare, or
    write it without some."""

    model: str | None = field(default=None, metadata={
        "help": "a reader directory (default: the shipped reader, or $KORQA_MODEL)",
        "metavar": "DIR"})
    probe: bool = field(default=False, metadata={
        "help": "score each single-layer drop", "exclusive": "action", "required": True})
    drop: list[int] | None = field(default=None, metadata={
        "help": "layers to remove", "metavar": "N", "exclusive": "action"})
    out: str | None = field(default=None, metadata={
        "help": "where --drop writes the smaller reader", "metavar": "DIR"})
    dtype: SaveDtype = field(default="fp32", metadata={"help": DTYPE_HELP})
    data: str | None = field(default=None, metadata={
        "help": "SQuAD-format JSON for --probe (KorQuAD dev)"})
    limit: int = field(default=150, metadata={
        "help": "--probe questions (random, seeded; each layer reads them all)",
        "metavar": "N"})
    seed: int = field(default=0, metadata={"help": "random seed of the --probe questions"})


@dataclass(kw_only=True)
class SplitConfig:
    """`korqa split` (korqa.training.cross_validation.write_splits)."""

    data: str = field(metadata={"help": "SQuAD-format JSON (KorQuAD dev)"})
    scheme: Scheme = field(default="korquad", metadata={
        "help": "how to cut the non-test articles, as described above"})
    folds: int = field(default=5, metadata={"help": "number of folds"})
    fold: int | None = field(default=None, metadata={
        "help": "write only this fold (default: all)"})
    seed: int = field(default=0, metadata={"help": "random seed of the folds"})
    out: str = field(metadata={"help": "directory to write", "metavar": "DIR"})
    file_format: SplitFormat = field(default="ids", metadata={
        "help": "ids: JSON lists of question ids (*.ids.json); squad: SQuAD files",
        "flag": "--format"})
