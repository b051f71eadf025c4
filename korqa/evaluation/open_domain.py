"""Does korqa know when it doesn't know? Three question sets (korqa.open_sets) through the whole
pipeline:

- answerable: KorQuAD questions over an index of KorQuAD dev paragraphs, their own included;
- unanswerable: the same questions over that index without their article;
- offtopic: small talk (ChatbotData) over the same index.

"Without their article" is done at search time, not by building one index per article:
`WithoutArticle` asks the index for k + (the largest article's paragraph count) paragraphs and
drops those titled like the question's article, which leaves the k best of the others in the
same order. That is the index built without the article up to BM25's corpus statistics: the
article's rare words grow rarer without it, so the others' scores shift a little and close
ranks can swap. What is measured does not move with it: `bench/without_article.py` compares
the pipeline's "don't know" over both ways, question by question.

Reads are cached as JSON lines (`collect`), so the verifier is refitted and re-evaluated
without running the reader again; `replay` turns a cached read back into the pipeline's
`Answer` through `QAPipeline.decide`, the same code `korqa ask` runs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from korqa.corpus.formats import read_jsonl
from korqa.corpus.paragraph import Paragraph
from korqa.korquad_metric import exact_match_score, f1_score
from korqa.open_sets import SET_KINDS, OpenQuestion, build_open_sets, write_sets
from korqa.pipeline.answers import Answer, RetrievedParagraph
from korqa.pipeline.confidence import UNCALIBRATED, Calibration, Confidence, candidate_features
from korqa.pipeline.qa import QAPipeline, fuse, passes_gate
from korqa.reader.predict import Candidate

if TYPE_CHECKING:
    from korqa.evaluation.config import (
        CalibrateConfidenceConfig,
        OpenEvaluationConfig,
        OpenReads,
        OpenSets,
        OpenSetsConfig,
    )


class WithoutArticle:
    """An index whose search leaves out the paragraphs of one article (see the module doc)."""

    def __init__(self, index: Any, article_paragraphs: int) -> None:
        self.index = index
        self.extra = article_paragraphs
        self.exclude_title: str | None = None

    def search(self, query: str, k: int = 10) -> list[tuple[Paragraph, float]]:
        if self.exclude_title is None:
            return self.index.search(query, k)
        hits = self.index.search(query, k + self.extra)
        return [hit for hit in hits if hit[0].title != self.exclude_title][:k]

    def close(self) -> None:
        self.index.close()


def largest_article(index: Any) -> int:
    """Paragraphs of the index's largest article (by title): how many one search may drop."""
    counts = Counter(p.title for p in index.store.iterate())
    return max(counts.values(), default=0)


def collect(pipeline: QAPipeline, search: WithoutArticle, questions: Sequence[OpenQuestion],
            cache: str | Path, progress: bool = False) -> list[dict[str, Any]]:
    """Every question read once through the pipeline's retriever and reader (default top-k and
    read gate), appended to the JSON-lines `cache`; questions already there are not read again.
    Returns the cached records of `questions`, in their order."""
    cache = Path(cache)
    done = {record["key"]: record for record in read_cache(cache)}
    todo = [q for q in questions if q.key not in done]
    if progress and todo:
        from tqdm import tqdm

        todo = tqdm(todo, desc="read", unit="question")
    with cache.open("a", encoding="utf-8") as out:
        for question in todo:
            search.exclude_title = question.exclude_title
            retrieved, readings = pipeline.read(question.question)
            record = {"key": question.key, **asdict(question),
                      "retrieved": [{"id": r.paragraph.id, "title": r.paragraph.title,
                                     "text": r.paragraph.text, "doc_id": r.paragraph.doc_id,
                                     "raw": r.retrieval_raw, "norm": r.retrieval_score}
                                    for r in retrieved],
                      "readings": [[{"text": c.text, "start": c.start, "end": c.end,
                                     "score": c.score, "null": c.null_score} for c in cands]
                                   for cands in readings]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            done[question.key] = record
    search.exclude_title = None
    # The read is the cache's; what the question is (answers, group) is today's set definition.
    return [{**done[q.key], **asdict(q)} for q in questions]


def read_cache(path: str | Path) -> list[dict[str, Any]]:
    # A run killed mid-write leaves a torn last line, which read_jsonl skips: the question is
    # read again.
    if not Path(path).is_file():
        return []
    return read_jsonl(path, hint="delete the cache to reread")


def unpack(record: dict[str, Any]) -> tuple[list[RetrievedParagraph], list[list[Candidate]]]:
    """A cached read as `QAPipeline.read` returned it."""
    retrieved = [RetrievedParagraph(Paragraph(r["id"], r["title"], r["text"], r["doc_id"]),
                                    r["raw"], r["norm"]) for r in record["retrieved"]]
    readings = [[Candidate(c["text"], c["start"], c["end"], c["score"], 0.0, 0.0, c["null"])
                 for c in cands] for cands in record["readings"]]
    return retrieved, readings


def is_right(text: str, answers: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) of `text` against the gold answers (KorQuAD 1.0); 0 for no gold answer."""
    if not answers or not text:
        return 0.0, 0.0
    return (max(exact_match_score(text, a) for a in answers),
            max(f1_score(text, a) for a in answers))


def fitting_rows(records: Iterable[dict[str, Any]], pipeline: QAPipeline,
                 ) -> tuple[list[dict[str, float]], list[bool], list[str], list[str]]:
    """(features of each question's best guess, whether it is exactly right, its group, its
    set), for every question with something read. An unanswerable question's guess is right
    when it matches the gold answer anyway (read from another article)."""
    rows, right, groups, kinds = [], [], [], []
    for record in records:
        retrieved, readings = unpack(record)
        readings = [c if passes_gate(item, i, pipeline.config.read_gate) else []
                    for i, (item, c) in enumerate(zip(retrieved, readings, strict=True))]
        ranked = fuse(retrieved, readings, pipeline.config.fusion_weight, pipeline.config.n_best)
        if not ranked:  # nothing read: "don't know" whatever the verifier says
            continue
        rows.append(candidate_features(record["question"], ranked[:1], retrieved, readings,
                                       pipeline.reader.tokenizer)[0])
        right.append(is_right(ranked[0].answer, record["answers"])[0] == 1.0)
        groups.append(record["group"])
        kinds.append(record["kind"])
    return rows, right, groups, kinds


def replay(records: Iterable[dict[str, Any]], pipeline: QAPipeline) -> list[dict[str, Any]]:
    """Each cached read decided by the pipeline as configured: one outcome row per question."""
    rows = []
    for record in records:
        retrieved, readings = unpack(record)
        answer: Answer = pipeline.decide(record["question"], retrieved, readings)
        guess = answer.candidates[0].answer if answer.candidates else ""
        em, f1 = is_right(answer.answer if answer.known else "", record["answers"])
        guess_em, guess_f1 = is_right(guess, record["answers"])
        # Whether a gold answer's text is in a retrieved paragraph all the same (unanswerable
        # set: another article repeats it), so its "don't know" may not be the right reply.
        elsewhere = any(a in r.paragraph.text for r in retrieved for a in record["answers"])
        rows.append({"kind": record["kind"], "known": answer.known, "score": answer.score,
                     "gold_retrieved": elsewhere,
                     "em": em, "f1": f1, "guess_em": guess_em, "guess_f1": guess_f1,
                     "guess_score": answer.candidates[0].score if answer.candidates else 0.0})
    return rows


# ---- metrics -----------------------------------------------------------------------------------


def summarise(rows: Sequence[dict[str, Any]], bins: int = 10) -> dict[str, Any]:
    """EM/F1 on the answerable set (a "don't know" scores 0), abstention rates on each set (for
    the unanswerable one also where no retrieved paragraph holds a gold answer's text: strict),
    and
    AUROC and ECE of the shown confidence of the best guess against its being exactly right
    (every set pooled; an unanswerable question's guess is always wrong)."""
    out: dict[str, Any] = {}
    for kind in SET_KINDS:
        part = [r for r in rows if r["kind"] == kind]
        if not part:
            continue
        entry: dict[str, Any] = {"questions": len(part),
                                 "abstention": _pct(sum(not r["known"] for r in part), len(part))}
        if kind == "unanswerable":
            strict = [r for r in part if not r.get("gold_retrieved")]
            entry.update(answered_right=_pct(sum(r["em"] for r in part), len(part)),
                         strict_questions=len(strict),
                         strict_abstention=_pct(sum(not r["known"] for r in strict), len(strict)))
        if kind == "answerable":
            entry.update(exact_match=_pct(sum(r["em"] for r in part), len(part)),
                         f1=_pct(sum(r["f1"] for r in part), len(part)),
                         best_guess_exact_match=_pct(sum(r["guess_em"] for r in part), len(part)),
                         best_guess_f1=_pct(sum(r["guess_f1"] for r in part), len(part)))
        out[kind] = entry
    score, right = confidence_pairs(rows)
    answered = [r for r in rows if r["known"]]
    out["confidence"] = {"auroc": round(auroc(score, right), 4),
                         "ece": round(expected_calibration_error(score, right, bins), 4),
                         "bins": bins,
                         "precision_answered": _pct(sum(r["em"] for r in answered),
                                                    len(answered))}
    return out


def confidence_pairs(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(the best guess's shown score, 1 if it is exactly right) for every question."""
    return (np.array([r["guess_score"] for r in rows], dtype=np.float64),
            np.array([r["guess_em"] for r in rows], dtype=np.float64))


def auroc(score: np.ndarray, right: np.ndarray) -> float:
    """Probability that a right answer scores above a wrong one (ties count half)."""
    positives, negatives = int(right.sum()), int(len(right) - right.sum())
    if not positives or not negatives:
        return float("nan")
    ranks = average_ranks(score)
    return float((ranks[right == 1].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing their mean rank (scipy's rankdata, "average")."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    bounds = np.r_[starts, len(values)]
    tie = np.repeat(np.arange(len(starts)), np.diff(bounds))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = (bounds[tie] + bounds[tie + 1] + 1) / 2
    return ranks


def reliability(score: np.ndarray, right: np.ndarray, bins: int = 10,
                ) -> list[tuple[float, float, int]]:
    """(mean score, share right, count) of each non-empty equal-width score bin."""
    index = np.minimum((np.clip(score, 0.0, 1.0) * bins).astype(int), bins - 1)
    return [(float(score[index == b].mean()), float(right[index == b].mean()),
             int((index == b).sum())) for b in range(bins) if (index == b).any()]


def expected_calibration_error(score: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Σ over equal-width bins of (share of questions) × |mean score − share right|."""
    n = len(score)
    return float(sum(count / n * abs(mean - hit)
                     for mean, hit, count in reliability(score, right, bins))) if n else 0.0


def coverage_accuracy(score: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Answering the most confident first: (share answered, share of those right)."""
    order = np.argsort(-score, kind="stable")
    answered = np.arange(1, len(order) + 1)
    return answered / len(order), np.cumsum(right[order]) / answered


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: str | Path,
         bins: int = 10) -> list[Path]:
    """reliability.png and coverage_accuracy.png, one line per named (score, right) pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, (score, right) in curves.items():
        points = reliability(score, right, bins)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                label=f"{name} (ECE {expected_calibration_error(score, right, bins):.3f})")
    ax.set(xlabel="shown confidence (bin mean)", ylabel="share exactly right",
           title="Reliability (all three sets)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    paths = [out_dir / "reliability.png", out_dir / "coverage_accuracy.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (score, right) in curves.items():
        coverage, accuracy = coverage_accuracy(score, right)
        ax.plot(coverage, accuracy, label=f"{name} (AUROC {auroc(score, right):.3f})")
    ax.set(xlabel="share of questions answered (most confident first)",
           ylabel="share of answered exactly right", title="Coverage–accuracy (all three sets)",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths


def _pct(part: float, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


# ---- the two commands ----------------------------------------------------------------------


def open_pipeline_for(data: str | Path, model: str | Path | None, progress: bool = False,
                      confidence: Calibration | None = None,
                      ) -> tuple[QAPipeline, WithoutArticle]:
    """`korqa ask`'s pipeline (BM25 over the KorQuAD dev paragraphs, default top-k, weight and
    gate) over a `WithoutArticle` view of the index, and that view. `confidence` replaces the
    reader's calibration (refitting it must not need the old file to be readable)."""
    from korqa.pipeline.qa import load_reader
    from korqa.pipeline.sources import cached_index
    from korqa.retrieval.index import Index

    index = Index(cached_index([data], progress=progress))
    search = WithoutArticle(index, largest_article(index))
    return QAPipeline(search, load_reader(model), confidence=confidence), search


def default_cache(model: str | Path | None, data: str | Path, split: str) -> Path:
    """Where reads are cached: per reader weights, data file and split, under korqa's cache."""
    import hashlib

    from korqa.paths import cache_dir, resolve_reader_dir

    weights = resolve_reader_dir(model) / "model.safetensors"
    stat = weights.stat() if weights.is_file() else None
    key = json.dumps([str(weights.resolve()), stat and stat.st_size, stat and stat.st_mtime_ns,
                      str(Path(data).resolve()), split])
    return cache_dir() / "open-domain" / \
        f"{split}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def open_sets(sets: OpenSets, split: str) -> list[OpenQuestion]:
    """`build_open_sets` as `sets` asks."""
    return build_open_sets(sets.data, sets.chitchat, split, sets.answerable, sets.offtopic,
                           sets.seed)


def write_open_sets(config: OpenSetsConfig) -> dict[str, Any]:
    """`korqa open-sets`: write the three sets of `config.split`; returns what was written."""
    questions = open_sets(config.sets, config.split)
    write_sets(questions, config.out)
    return {"out": config.out, "split": config.split,
            "questions": dict(Counter(q.kind for q in questions))}


def _prepare_reads(reads: OpenReads, data: str | Path, split: str) -> Path:
    """Where this run's reads are cached (`reads.cache`, else `default_cache`), its folder made;
    and the reader's torch threads set as `reads` asks."""
    if reads.threads:
        from korqa.modeling.onnx_engine import set_default_threads

        set_default_threads(reads.threads)  # ONNX Runtime's sessions; torch's too where loaded
        try:
            import torch
        except ImportError:
            pass
        else:
            torch.set_num_threads(reads.threads)
    cache = Path(reads.cache) if reads.cache else default_cache(reads.model, data, split)
    cache.parent.mkdir(parents=True, exist_ok=True)
    return cache


def calibrate_confidence(config: CalibrateConfidenceConfig) -> dict[str, Any]:
    """Fit the reader's confidence on the validation sets and write it (default: into the
    reader directory as confidence.json). Never reads a test question."""
    from korqa.paths import resolve_reader_dir
    from korqa.pipeline.confidence import CONFIDENCE_FILE, fit_confidence

    sets, reads = config.sets, config.reads
    questions = open_sets(sets, "validation")
    cache = _prepare_reads(reads, sets.data, "validation")
    pipeline, search = open_pipeline_for(sets.data, reads.model, reads.progress,
                                         confidence=UNCALIBRATED)
    with pipeline:
        records = collect(pipeline, search, questions, cache, reads.progress)
        rows, right, groups, kinds = fitting_rows(records, pipeline)
    fit = fit_confidence(rows, [k == "answerable" for k in kinds], right, groups,
                         config.precision)
    held_out = fit.held_out
    answered = held_out >= fit.confidence.threshold
    stats: dict[str, Any] = {"questions": Counter(kinds), "right": int(sum(right)),
                             "split": "validation (reader's held-out fold 0; chitchat rows "
                                      "not 4 mod 5)", "seed": sets.seed}
    for kind in SET_KINDS:
        mask = np.array([k == kind for k in kinds])
        if mask.any():
            stats[f"{kind}_abstention"] = _pct(int((~answered[mask]).sum()), int(mask.sum()))
    right_array = np.asarray(right, dtype=np.float64)
    stats.update(held_out_auroc=round(auroc(held_out, right_array), 4),
                 held_out_ece=round(expected_calibration_error(held_out, right_array), 4),
                 held_out_precision=_pct(int(right_array[answered].sum()), int(answered.sum())))
    fit.confidence.fitted_on = stats
    target = Path(config.out) if config.out else resolve_reader_dir(reads.model) / CONFIDENCE_FILE
    fit.confidence.save(target)
    return {"out": str(target), "cache": str(cache), "threshold": fit.confidence.threshold,
            "precision": config.precision, **stats}


def evaluate_open(config: OpenEvaluationConfig) -> dict[str, Any]:
    """The three sets of `config.split` through the pipeline, decided with the reader's
    confidence ("calibrated") and with the reader's span score as the confidence, the rule
    before it and what an uncalibrated reader still uses ("before": `UNCALIBRATED`); with
    `config.report`, reliability.png, coverage_accuracy.png and summary.json there."""
    sets, reads = config.sets, config.reads
    questions = open_sets(sets, config.split)
    cache = _prepare_reads(reads, sets.data, config.split)
    given = Confidence.load(config.confidence) if config.confidence is not None else None
    pipeline, search = open_pipeline_for(sets.data, reads.model, reads.progress,
                                         confidence=given)
    fitted = pipeline.confidence
    if not isinstance(fitted, Confidence):
        raise ValueError("the reader has no confidence.json: run `korqa calibrate-confidence` "
                         "first, or pass --confidence FILE")
    with pipeline:
        records = collect(pipeline, search, questions, cache, reads.progress)
        calibrated = replay(records, pipeline)
        pipeline.confidence = UNCALIBRATED
        before = replay(records, pipeline)
    result: dict[str, Any] = {
        "split": config.split, "cache": str(cache), "threshold": fitted.threshold,
        "precision_chosen_for": fitted.precision,
        "calibrated": summarise(calibrated), "before": summarise(before)}
    if config.report is not None:
        paths = plot({"calibrated confidence": confidence_pairs(calibrated),
                      "before: reader's span score": confidence_pairs(before)}, config.report)
        summary = Path(config.report) / "summary.json"
        summary.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n",
                           encoding="utf-8")
        result["report_files"] = [str(p) for p in [*paths, summary]]
    return result


# (label, part of the result, key) of each row `format_open_evaluation` prints.
_ROWS = (("answerable: EM (don't know = 0)", "answerable", "exact_match"),
         ("answerable: F1 (don't know = 0)", "answerable", "f1"),
         ("answerable: abstention %", "answerable", "abstention"),
         ("unanswerable: abstention %", "unanswerable", "abstention"),
         ("off-topic: abstention %", "offtopic", "abstention"),
         ("AUROC of the shown confidence", "confidence", "auroc"),
         ("ECE of the shown confidence", "confidence", "ece"))


def format_open_evaluation(result: dict[str, Any], config: OpenEvaluationConfig) -> str:
    """`evaluate_open`'s result as a table: before and with the calibrated confidence."""
    before, now = result["before"], result["calibrated"]
    lines = [f"split {result['split']}; don't know under confidence {result['threshold']:.3f} "
             f"(chosen for precision {result['precision_chosen_for']:.2f} on validation)",
             f"{'':34}{'before':>10}{'calibrated':>12}"]
    lines += [f"{label:<34}{before[part][key]:>10}{now[part][key]:>12}"
              for label, part, key in _ROWS if part in now]
    lines += [f"  {kind}: {now[kind]['questions']} questions" for kind in SET_KINDS if kind in now]
    lines += [f"  wrote {path}" for path in result.get("report_files", [])]
    return "\n".join(lines)
