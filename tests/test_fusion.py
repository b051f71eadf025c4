"""Fitting the fusion weight and read gate (korqa.evaluation.fusion) over the tiny corpus."""

from __future__ import annotations

from pathlib import Path

from tiny import DOCS, build_tiny_index, tiny_pipeline

from korqa.corpus.formats import GoldAnswer, SquadExample
from korqa.evaluation.fusion import tune_fusion


def test_tune_fusion_reads_once_and_scores_every_weight_and_gate(tmp_path: Path,
                                                                 tiny_reader_dir: Path) -> None:
    context = DOCS[1][2][0]
    start = context.index("1947미터")
    examples = [SquadExample("q1", "한라산의 높이는 얼마인가?", context, "한라산", 0,
                             [GoldAnswer("1947미터", start)])]
    pipeline = tiny_pipeline(build_tiny_index(tmp_path / "index"), tiny_reader_dir)()
    reads = []
    read = pipeline.read
    pipeline.read = lambda *args, **kwargs: reads.append(args) or read(*args, **kwargs)
    tuning = tune_fusion(pipeline, examples, weights=[0.0, 0.5, 1.0], gates=[0.0, 1.0])
    assert len(reads) == 1  # read once, every pair decided on that read
    assert [row[:2] for row in tuning.table] == [(w, g) for g in (0.0, 1.0)
                                                  for w in (0.0, 0.5, 1.0)]
    assert tuning.best_weight in (0.0, 0.5, 1.0) and tuning.questions == 1
    assert all(0.0 <= em <= f1 <= 100.0 for _, _, em, f1, _ in tuning.table)
    # Gate 0 reads all three retrieved paragraphs, gate 1 only those tied with the top one.
    paragraphs = {gate: count for _, gate, _, _, count in tuning.table}
    assert paragraphs[0.0] == 3 and 1 <= paragraphs[1.0] < 3
