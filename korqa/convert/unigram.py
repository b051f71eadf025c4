"""A SentencePiece-Unigram vocabulary (e5's) as a `tokenizers` pipeline, and trimming a Unigram
vocabulary to the pieces a corpus uses."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.models import Unigram
from tokenizers.normalizers import Normalizer

from korqa.convert.config import DEFAULT_TRIM_MAX_DOCS
from korqa.corpus.formats import (
    corpus_files,
    document_texts,
    file_documents,
    kind_of,
    load_json,
    squad_texts,
)
from korqa.tokenization import METASPACE, XLMR_SPECIALS, Tokenizer

# ---- the tokenizer -----------------------------------------------------------------------------

# Stand-ins that carry characters NFKC would change, but the e5 map keeps, through the NFKC
# step (Supplementary Private Use Area-A: never in the map, untouched by NFKC).
_PLACEHOLDER_BASE = 0xF0000


def _nfkc_changes() -> dict[int, str]:
    """Every scalar value that `tokenizers`' NFKC step changes, alone, and what it becomes."""
    codes = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    # NUL separates the characters: it never composes with a neighbour nor comes out of NFKC.
    normal = normalizers.NFKC().normalize_str("\x00".join(map(chr, codes))).split("\x00")
    return {code: out for code, out in zip(codes, normal, strict=True) if out != chr(code)}


def _char_class(codes: Iterable[int]) -> str:
    """An Oniguruma character class matching exactly `codes`, runs written as ranges."""
    codes = sorted(codes)
    parts, start = [], 0
    while start < len(codes):
        end = start
        while end + 1 < len(codes) and codes[end + 1] == codes[end] + 1:
            end += 1
        first, last = codes[start], codes[end]
        parts.append(f"\\x{{{first:X}}}" + (f"-\\x{{{last:X}}}" if last > first else ""))
        start = end + 1
    return "[" + "".join(parts) + "]"


def build_normalizer(norm_map: dict[int, tuple[int, ...]]) -> Normalizer:
    """A `tokenizers` normalizer equal, code point by code point, to the engine's map.

    NFKC does most of the work; the map's exceptions (controls removed, odd spaces → " ") are
    Replace steps in front of it, and the few characters NFKC would change but the map keeps
    (e.g. U+FF5E FULLWIDTH TILDE) are swapped for placeholders around it. Then runs of spaces
    collapse to one, as in the engine. Unlike the engine, NFKC also composes sequences
    (decomposed Hangul jamo → syllables), which only helps.
    """
    changes = _nfkc_changes()
    by_output: dict[str, list[int]] = {}
    for code, replacement in norm_map.items():
        wanted = "".join(map(chr, replacement))
        if changes.get(code, chr(code)) != wanted:
            by_output.setdefault(wanted, []).append(code)
    # Characters NFKC would change but the map leaves alone.
    protected = sorted(code for code in changes if code not in norm_map)
    for wanted in by_output:
        if any(ord(char) in changes for char in wanted):
            raise ValueError(f"normalisation map output {wanted!r} is not stable under NFKC")
    placeholders = [chr(_PLACEHOLDER_BASE + i) for i in range(len(protected))]
    if any(ord(p) in norm_map or ord(p) in changes for p in placeholders):
        raise ValueError("the NFKC placeholders collide with the normalisation map")

    steps = [
        normalizers.Replace(Regex(_char_class(codes)), wanted)
        for wanted, codes in sorted(by_output.items())
    ]
    steps += [normalizers.Replace(chr(c), p) for c, p in zip(protected, placeholders, strict=True)]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(p, chr(c)) for c, p in zip(protected, placeholders, strict=True)]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(
    pieces: list[str], scores: Iterable[float], normalizer: Normalizer, unk: int
) -> Tokenizer:
    """The engine's Unigram tokenizer as a `tokenizers` pipeline (XLM-R special tokens).

    `normalizer` is `build_normalizer(norm_map)`; it is passed in because it takes seconds to
    build and the trimmed and the full tokenizer share it.
    """
    inner = next((p for p in pieces if METASPACE in p[1:]), None)
    if inner is not None:  # splitting at "▁" would make such a piece unreachable
        raise ValueError(f"piece {inner!r} has an inner {METASPACE!r}: not a per-word vocabulary")
    vocab = [(piece, float(score)) for piece, score in zip(pieces, scores, strict=True)]
    backend = HFTokenizer(Unigram(vocab, unk_id=unk, byte_fallback=False))
    backend.normalizer = normalizer
    # Metaspace alone (no WhitespaceSplit): the engine turns every space into "▁" and no piece
    # has an inner "▁", so splitting at "▁" gives its segmentation, trailing "▁" included.
    backend.pre_tokenizer = pre_tokenizers.Metaspace(METASPACE, prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(METASPACE, prepend_scheme="always", split=True)
    specials = [XLMR_SPECIALS.cls, XLMR_SPECIALS.pad, XLMR_SPECIALS.sep, XLMR_SPECIALS.unk,
                XLMR_SPECIALS.mask]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return Tokenizer(backend, XLMR_SPECIALS)


# ---- trimming the vocabulary --------------------------------------------------------------


def trim_texts(paths: Iterable[str | Path], max_docs: int = DEFAULT_TRIM_MAX_DOCS) -> Iterator[str]:
    """The texts a trimmed vocabulary must keep, from corpus paths (`korqa.corpus.formats`):
    every title and paragraph, and a SQuAD file's questions and answers too; from each
    kowiki file its first `max_docs` documents."""
    for path in corpus_files(paths):
        if kind_of(path) == "squad":
            yield from squad_texts(load_json(path), source=str(path))
            continue
        for document in itertools.islice(file_documents(path), max_docs):
            yield from document_texts(document)


def used_piece_ids(tokenizer: Tokenizer, texts: Iterable[str], batch: int = 2048) -> set[int]:
    """Every piece id the tokenizer produces on `texts` (streamed in batches)."""
    used: set[int] = set()
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == batch:
            used.update(i for e in tokenizer.encode_batch(chunk) for i in e.ids)
            chunk = []
    if chunk:
        used.update(i for e in tokenizer.encode_batch(chunk) for i in e.ids)
    return used


def pieces_to_keep(
    pieces: list[str], scores: np.ndarray, special: set[int], used: set[int]
) -> list[int]:
    """The old ids a trimmed Unigram vocabulary keeps, ascending (so specials keep low ids).

    Dropping pieces never changes how a text made only of kept pieces' winning segmentations is
    cut: its best path survives and no new path appears. Two more things keep that true: the
    lowest-scoring piece stays (the unknown-character penalty is computed from the minimum
    score), and so do all single-character pieces, so other text falls back to characters, not
    <unk>.
    """
    chars = {i for i, piece in enumerate(pieces) if len(piece) == 1}
    lowest = int(np.argmin(scores))
    return sorted(used | special | chars | {lowest})


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
