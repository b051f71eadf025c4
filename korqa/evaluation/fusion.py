"""Fitting the pipeline's fusion weight and read gate on validation questions (the defaults in
korqa.pipeline.qa were fitted so; each refit is in the model card)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from korqa.corpus.formats import SquadExample
from korqa.korquad_metric import score_example
from korqa.pipeline.qa import QAPipeline, passes_gate


@dataclass
class FusionTuning:
    """The result of `tune_fusion`: the best (w, gate) and a row for every pair tried."""

    best_weight: float
    best_gate: float
    # (w, gate, EM, F1, paragraphs read per question), EM and F1 in percent
    table: list[tuple[float, float, float, float, float]]
    questions: int


def tune_fusion(pipeline: QAPipeline, examples: Sequence[SquadExample],
                weights: Sequence[float] | None = None, gates: Sequence[float] | None = None,
                top_k: int | None = None, f1_tolerance: float = 0.25) -> FusionTuning:
    """The fusion weight and read gate for `examples`: of the pairs within `f1_tolerance`
    points of the best end-to-end F1, the one reading the fewest paragraphs (then the best F1,
    then EM), since reading is what answering costs and such F1 gaps are noise.

    `examples` are `SquadExample`s with gold answers; give validation questions, never test
    ones (for KorQuAD, `korqa.splits` decides which are which). Each question is retrieved
    and read once with no gate; only the cheap gating and fusion are redone for every pair.
    """
    if not examples:
        raise ValueError("tuning the fusion needs at least one validation question")
    weights = [i / 20 for i in range(21)] if weights is None else list(weights)
    gates = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] if gates is None else list(gates)
    for name, values in (("fusion weights", weights), ("read gates", gates)):
        if not values or any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"{name} must be in [0, 1], got {values}")
    read = [(example, *pipeline.read(example.question, top_k, gate=0.0))
            for example in examples]
    table = []
    for gate in gates:
        paragraphs = sum(sum(passes_gate(item, i, gate) for i, item in enumerate(retrieved))
                         for _, retrieved, _ in read) / len(read)
        for weight in weights:
            em = f1 = 0.0
            for example, retrieved, readings in read:
                answer = pipeline.decide(example.question, retrieved, readings, weight, gate)
                # A "don't know" is scored by the best guess: the threshold is not tuned here.
                text = answer.candidates[0].answer if answer.candidates else ""
                exact, overlap = score_example(text, example)
                em, f1 = em + exact, f1 + overlap
            table.append((weight, gate, 100.0 * em / len(read), 100.0 * f1 / len(read),
                          paragraphs))
    top_f1 = max(row[3] for row in table)
    close = [row for row in table if row[3] >= top_f1 - f1_tolerance]
    # min keeps the first of equal rows, so ties go to the smaller weight.
    best = min(close, key=lambda row: (row[4], -row[3], -row[2]))
    return FusionTuning(best[0], best[1], table, len(read))
