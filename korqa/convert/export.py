"""Ship a trained model: trim its Unigram vocabulary to the text it must read, then quantise.

A fine-tuned e5 reader carries ~47k vocabulary rows; most of its size is the embedding matrix.
Trimming keeps every piece the given texts use (plus specials, single characters and the
lowest-scoring piece, so kept text tokenises exactly as before and other text falls back to
characters), and int8 blocks (see `checkpoint.quantize_int8_blockwise`) quarter the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from korqa.convert.config import ExportConfig
from korqa.convert.unigram import trim_unigram
from korqa.reader.directory import ReaderDir


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    dtype: str
    vocab_before: int
    vocab_after: int
    size_mb: float

    def __str__(self) -> str:
        return (f"{self.out}: {self.dtype}, vocabulary {self.vocab_before:,} → "
                f"{self.vocab_after:,} pieces, model.safetensors {self.size_mb:.1f} MB")


def export_reader(model_dir: str | Path, out: str | Path, dtype: str = "int8",
                  trim_texts: Iterable[str] | None = None) -> ExportSummary:
    """Load a reader from `model_dir`, optionally trim its vocabulary, and write it to `out`
    with its `ReaderConfig` (not its int8 calibration: the weights changed, so run
    `korqa calibrate` on the export)."""
    source = ReaderDir(model_dir)
    tokenizer = source.tokenizer()
    model = source.torch_model()
    before = model.config.vocab_size
    if trim_texts is not None:
        tokenizer, keep = trim_unigram(tokenizer, trim_texts)
        embeddings = model.bert.embeddings.word_embeddings
        rows = embeddings.weight.detach()[torch.tensor(keep)]  # [kept, H]
        embeddings.weight = torch.nn.Parameter(rows)
        embeddings.num_embeddings = len(keep)
        model.config.vocab_size = len(keep)
    ReaderDir(out).save(model, tokenizer, source.config(), dtype)
    size_mb = (Path(out) / "model.safetensors").stat().st_size / 1e6
    return ExportSummary(Path(out), dtype, before, model.config.vocab_size, size_mb)


def export(config: ExportConfig) -> ExportSummary:
    """`korqa export`: `export_reader`, trimmed to the vocabulary of `config.trim_corpus`."""
    from korqa.convert.unigram import trim_texts

    texts = trim_texts(config.trim_corpus, config.trim_max_docs) if config.trim_corpus else None
    return export_reader(config.model, config.out, config.dtype, texts)
