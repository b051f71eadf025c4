"""Where korqa finds its default reader model, its sample corpus and its cache directory."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# A source checkout keeps the shipped reader beside the package: <repo>/models/korqa-reader.
REPO_DIR = PACKAGE_DIR.parent
SAMPLE_CORPUS = PACKAGE_DIR / "data" / "sample_corpus.jsonl"

MODEL_ENV = "KORQA_MODEL"
ENCODER_ENV = "KORQA_ENCODER"
CACHE_ENV = "KORQA_CACHE"

HOW_TO_GET_A_READER = (
    "no reader model found at {path}. Pass --model DIR (a directory with config.json, "
    "model.safetensors and vocab.txt or tokenizer.json) or set KORQA_MODEL=DIR; to make one, "
    "fine-tune a BERT with `korqa train --model BASE --data KORQUAD.json --out RUN` "
    "and use RUN/best (or copy it to models/korqa-reader/ in the source checkout)."
)


def default_reader_dir() -> Path:
    """The reader used when no --model is given: $KORQA_MODEL, else <repo>/models/korqa-reader."""
    override = os.environ.get(MODEL_ENV)
    if override:
        return Path(override).expanduser()
    return REPO_DIR / "models" / "korqa-reader"


def default_encoder_dir() -> Path:
    """The retriever encoder dense retrieval uses when no --encoder is given: $KORQA_ENCODER,
    else <repo>/models/korqa-retriever (the shipped compact e5)."""
    override = os.environ.get(ENCODER_ENV)
    if override:
        return Path(override).expanduser()
    return REPO_DIR / "models" / "korqa-retriever"


def resolve_reader_dir(model: str | Path | None = None) -> Path:
    """The reader directory to load: `model` if given, else the default; clear error if missing."""
    path = Path(model).expanduser() if model else default_reader_dir()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(HOW_TO_GET_A_READER.format(path=path))
    return path


def cache_dir() -> Path:
    """$KORQA_CACHE, else ~/.cache/korqa."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/korqa").expanduser()


def sample_corpus_path() -> Path:
    """The small Korean sample corpus shipped inside the package (JSON lines, one document each)."""
    return SAMPLE_CORPUS
