"""A hybrid retriever: fuses the rankings of several retrievers over the same paragraphs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval.base import Hit, Retriever
from korqa.retrieval.manifest import MANIFEST_FILE
from korqa.retrieval.registry import make_retriever, retriever_class

FUSIONS = ("rrf", "weighted")


class HybridRetriever(Retriever):
    """Fuses the top-`depth` lists of its component retrievers.

    rrf:      reciprocal-rank fusion, score = Σ wᵢ / (rrf_k + rankᵢ); uses ranks only, so
              retrievers with incomparable score scales mix without calibration.
    weighted: Σ wᵢ · (sᵢ − minᵢ) / (maxᵢ − minᵢ), each component's scores min-max normalised
              over its own top-`depth` list; a paragraph missing from a list gets 0 there.
    """

    kind = "hybrid"

    def __init__(
        self,
        components: Sequence[Retriever],
        fusion: str = "weighted",
        weights: Sequence[float] | None = None,
        depth: int = 100,
        rrf_k: float = 60.0,
    ) -> None:
        super().__init__()
        if not components:
            raise ValueError("hybrid: needs at least one component retriever")
        if fusion not in FUSIONS:
            raise ValueError(f"hybrid: unknown fusion {fusion!r} (expected rrf or weighted)")
        weights = [1.0] * len(components) if weights is None else [float(w) for w in weights]
        if len(weights) != len(components):
            raise ValueError(f"hybrid: {len(weights)} weights for {len(components)} components")
        self.components = list(components)
        self.fusion = fusion
        self.weights = weights
        self.depth = depth
        self.rrf_k = rrf_k
        if all(c.paragraph_ids for c in self.components):
            self.paragraph_ids = self._shared_ids()

    @classmethod
    def from_preset(cls, preset: Mapping[str, Any], encoder: str | Path | None = None,
                    morphemes: bool = True, **options: Any) -> Self:
        """BM25 fused with the dense retriever (`encoder`, default the shipped one), each with
        its own tuned preset."""
        return cls([make_retriever("bm25", morphemes=morphemes),
                    make_retriever("dense", encoder)], **{**preset, **options})

    def params(self) -> dict[str, Any]:
        return {"fusion": self.fusion, "weights": self.weights, "depth": self.depth,
                "rrf_k": self.rrf_k, "components": [c.kind for c in self.components]}

    def index(
        self, paragraphs: Iterable[Paragraph], total: int | None = None, progress: bool = True
    ) -> None:
        # Each component streams the corpus once; a one-shot iterator is kept as a list.
        # (A ParagraphStore can be passed as is: iterating it again re-reads the database.)
        if iter(paragraphs) is paragraphs:
            paragraphs = list(paragraphs)
        for component in self.components:
            component.index(paragraphs, total=total, progress=progress)
        self.paragraph_ids = self._shared_ids()

    def _shared_ids(self) -> list[str]:
        first = self.components[0].paragraph_ids
        for component in self.components[1:]:
            if component.paragraph_ids != first:
                raise ValueError(f"hybrid: the {component.kind} component indexes other "
                                 f"paragraphs than the {self.components[0].kind} component")
        return list(first)

    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        lists = [c.retrieve_many(queries, max(k, self.depth)) for c in self.components]
        return [self.fuse([lists[c][q] for c in range(len(lists))], k)
                for q in range(len(queries))]

    def fuse(self, ranked: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
        """Fuse one query's component hit lists into the top `k`."""
        fused: dict[str, float] = {}
        for weight, hits in zip(self.weights, ranked, strict=True):
            if self.fusion == "rrf":
                for rank, (pid, _) in enumerate(hits, start=1):
                    fused[pid] = fused.get(pid, 0.0) + weight / (self.rrf_k + rank)
                continue
            if not hits:
                continue
            scores = [s for _, s in hits]
            low, span = min(scores), max(scores) - min(scores)
            for pid, score in hits:
                # A list whose scores are all equal carries only "retrieved": count it fully.
                normed = (score - low) / span if span > 0 else 1.0
                fused[pid] = fused.get(pid, 0.0) + weight * normed
        order = sorted(fused.items(), key=lambda item: -item[1])
        return order[:k]

    # ---- persistence --------------------------------------------------------------------

    def _save_files(self, directory: Path) -> list[str]:
        files = []
        for i, component in enumerate(self.components):
            name = f"{i}-{component.kind}"
            component.save(directory / name)
            # The component's manifest hashes its files; hashing the manifest covers them all.
            files.append(f"{name}/{MANIFEST_FILE}")
        return files

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        params = dict(manifest["params"])
        kinds = params.pop("components")
        components = [retriever_class(kind).load(directory / f"{i}-{kind}", verify=verify)
                      for i, kind in enumerate(kinds)]
        return cls(components, **params)

    def _row_count(self) -> int:
        return len(self.components[0].paragraph_ids)
