"""Dense retrieval with an e5 encoder (korqa's BertModel): cosine of mean-pooled embeddings.

The encoder runs in ONNX Runtime (`korqa.modeling.engines.load_encoder`), so dense retrieval
needs no torch; by default it is the shipped compact e5, models/korqa-retriever
(`korqa.paths.default_encoder_dir`). korqa.modeling is imported only when the encoder is first
needed, so importing this module (or any other retriever) stays light.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from tqdm import tqdm

from korqa.corpus.paragraph import Paragraph
from korqa.paths import default_encoder_dir
from korqa.retrieval.base import Hit, Retriever, index_text
from korqa.retrieval.sparse import top_k

if TYPE_CHECKING:
    from korqa.modeling.engines import EncoderEngine
    from korqa.tokenization import Tokenizer

EMBEDDINGS_FILE = "embeddings.npy"
ENCODER_FILE = "encoder.json"
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "


class DenseRetriever(Retriever):
    """e5-style bi-encoder: "query: "/"passage: " prefixes, mean pooling over non-pad tokens,
    L2-normalised float32 embeddings (one .npy row per paragraph), dot product = cosine.

    Encoding is the cost: meant for corpora small enough to encode on the machine at hand.
    """

    kind = "dense"

    def __init__(
        self,
        encoder: str | Path | None = None,
        max_length: int = 512,
        query_max_length: int = 64,
        batch_size: int = 16,
        with_title: bool = False,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        # None: the shipped encoder, wherever this checkout is (the manifest keeps None).
        self.encoder = None if encoder is None else str(encoder)
        self.encoder_dir = Path(encoder) if encoder is not None else default_encoder_dir()
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.batch_size = batch_size
        self.with_title = with_title
        self.device = device
        self.embeddings = np.zeros((0, 0), dtype=np.float32)
        self._engine: EncoderEngine | None = None
        self._tokenizer: Tokenizer | None = None

    @classmethod
    def from_preset(cls, preset: Mapping[str, Any], encoder: str | Path | None = None,
                    morphemes: bool = True, **options: Any) -> Self:
        return cls(encoder, **{**preset, **options})  # None: the shipped encoder

    def params(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "max_length": self.max_length,
                "query_max_length": self.query_max_length, "batch_size": self.batch_size,
                "with_title": self.with_title}

    # ---- encoding -----------------------------------------------------------------------

    def _load_encoder(self) -> tuple[EncoderEngine, Tokenizer]:
        if self._engine is None or self._tokenizer is None:
            if not (self.encoder_dir / "config.json").exists():
                raise FileNotFoundError(f"{self.encoder_dir}: no encoder here (config.json is "
                                        "missing); pass the e5 model directory")
            from korqa.modeling.engines import load_encoder
            from korqa.tokenization import Tokenizer

            self._engine = load_encoder(self.encoder_dir, self.device)
            self._tokenizer = Tokenizer.from_pretrained(self.encoder_dir)
        return self._engine, self._tokenizer

    def encode(self, texts: Sequence[str], max_length: int, progress: bool = False,
               desc: str = "encoding") -> np.ndarray:
        """L2-normalised mean-pooled embeddings of `texts` (prefixes already applied)."""
        engine, tokenizer = self._load_encoder()
        ids = [e.ids[:max_length - 2] for e in tokenizer.encode_batch(list(texts))]
        # Batches of similar lengths waste little padding: encode in length order.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: np.ndarray | None = None
        bar = tqdm(total=len(ids), desc=desc, unit="text", disable=not progress, mininterval=1.0)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            rows = [tokenizer.build_single(ids[i]) for i in batch]
            length = max(len(r) for r in rows)
            input_ids = np.full((len(rows), length), tokenizer.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), length), dtype=np.int64)
            for j, row in enumerate(rows):
                input_ids[j, :len(row)] = row
                mask[j, :len(row)] = 1
            vectors = engine.embed({"input_ids": input_ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(input_ids)})
            if out is None:
                out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
            bar.update(len(batch))
        bar.close()
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    # ---- Retriever ----------------------------------------------------------------------

    def index(
        self, paragraphs: Iterable[Paragraph], total: int | None = None, progress: bool = True
    ) -> None:
        ids: list[str] = []
        texts: list[str] = []
        for paragraph in paragraphs:
            ids.append(paragraph.id)
            texts.append(PASSAGE_PREFIX + index_text(paragraph, self.with_title))
        if not ids:
            raise ValueError("dense: the corpus has no paragraphs")
        self.embeddings = self.encode(texts, self.max_length, progress, desc="dense passages")
        self.paragraph_ids = ids

    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        if not queries:
            return []
        vectors = self.encode([QUERY_PREFIX + q for q in queries], self.query_max_length)
        hits = []
        for vector in vectors:
            best, scores = top_k(self.embeddings @ vector, k)
            hits.append(self._hits(best, scores))
        return hits

    # ---- persistence --------------------------------------------------------------------

    def _save_files(self, directory: Path) -> list[str]:
        np.save(directory / EMBEDDINGS_FILE, self.embeddings, allow_pickle=False)
        return [EMBEDDINGS_FILE, *self._save_encoder(directory)]

    def _save_encoder(self, directory: Path) -> list[str]:
        # Which encoder made these vectors: queries must be encoded by the same one.
        config = (self.encoder_dir / "config.json").read_text(encoding="utf-8")
        (directory / ENCODER_FILE).write_text(
            json.dumps({"encoder": str(self.encoder_dir), "config": json.loads(config)},
                       ensure_ascii=False, indent=2), encoding="utf-8")
        return [ENCODER_FILE]

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        retriever = cls(**manifest["params"])
        retriever.embeddings = np.load(directory / EMBEDDINGS_FILE, allow_pickle=False)
        retriever._check_encoder(directory)
        if retriever.embeddings.ndim != 2:
            raise ValueError(f"{directory / EMBEDDINGS_FILE}: expected a 2-D array, got shape "
                             f"{retriever.embeddings.shape}")
        return retriever

    def _check_encoder(self, directory: Path) -> None:
        saved = json.loads((directory / ENCODER_FILE).read_text(encoding="utf-8"))["config"]
        config_path = self.encoder_dir / "config.json"
        if not config_path.exists():
            raise FileNotFoundError(f"{config_path}: the encoder this index was built with "
                                    f"(params.encoder in {directory}/manifest.json) is missing")
        if json.loads(config_path.read_text(encoding="utf-8")) != saved:
            raise ValueError(f"{config_path}: differs from the encoder config saved in "
                             f"{directory / ENCODER_FILE}: the index was built by another model")

    def _row_count(self) -> int:
        return self.embeddings.shape[0]
