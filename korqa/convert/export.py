"""Ship a trained model: trim its Unigram vocabulary to the text it must read, then quantise.

A fine-tuned e5 reader carries ~47k vocabulary rows; most of its size is the embedding matrix.
Trimming keeps every piece the given texts use (plus specials, single characters and the
lowest-scoring piece, so kept text tokenises exactly as before and other text falls back to
characters), and int8 blocks (see `checkpoint.quantize_int8_blockwise`) quarter the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer as HFTokenizer

from korqa.convert.unigram import pieces_to_keep, used_piece_ids
from korqa.reader.directory import ReaderDir
from korqa.tokenization import Tokenizer


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


def trim_unigram(tokenizer: Tokenizer, texts: Iterable[str]) -> tuple[Tokenizer, list[int]]:
    """A copy of a Unigram tokenizer keeping only what `texts` need; returns it and the old ids
    it keeps (ascending), which index the embedding rows to keep."""
    spec = json.loads(tokenizer.backend.to_str())
    model = spec["model"]
    if model.get("type") != "Unigram":
        raise ValueError(f"vocabulary trimming needs a Unigram tokenizer, not {model.get('type')}")
    pieces = [piece for piece, _ in model["vocab"]]
    scores = np.array([score for _, score in model["vocab"]], dtype=np.float64)
    special = {token["id"] for token in spec.get("added_tokens", [])}
    keep = pieces_to_keep(pieces, scores, special, used_piece_ids(tokenizer, texts))
    new_id = {old: new for new, old in enumerate(keep)}
    model["vocab"] = [model["vocab"][i] for i in keep]
    model["unk_id"] = new_id[model["unk_id"]]
    for token in spec.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    spec["post_processor"] = None  # Tokenizer() installs one with the new special-token ids
    return Tokenizer(HFTokenizer.from_str(json.dumps(spec)), tokenizer.specials), keep


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
