"""Run a reader over examples and turn its start/end logits into scored n-best answer spans."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from korqa.reader.features import (
    FeatureConfig,
    InputFeatures,
    collate,
    convert_examples_to_features,
)
from korqa.reader.josa import particle_cut
from korqa.reader.squad import SquadExample
from korqa.tokenization import Tokenizer


@dataclass
class PredictConfig:
    """How answers are read off the logits."""

    n_best: int = 20  # candidates kept per question
    max_answer_length: int = 30  # in tokens, end - start + 1
    batch_size: int = 32  # windows per forward pass
    trim_particles: bool = True  # cut trailing josa/copula off each span (korqa.reader.josa)
    # Answer "" when the best span's score is below this; None never abstains.
    no_answer_threshold: float | None = None


@dataclass
class Candidate:
    """One answer span: text == context[start:end]; score is probability-like, in (0, 1]."""

    text: str
    start: int  # character offsets into the example's context
    end: int
    score: float
    start_logit: float
    end_logit: float


@dataclass
class WindowLogits:
    """A window's start and end logits over its real (unpadded) tokens."""

    start: np.ndarray  # [L] float64
    end: np.ndarray  # [L] float64


def predict(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    examples: list[SquadExample],
    feature_config: FeatureConfig,
    predict_config: PredictConfig,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, list[Candidate]]:
    """n-best candidates per question id, best first (see `decode_predictions` for the score)."""
    features = convert_examples_to_features(examples, tokenizer, feature_config, False)
    logits = compute_logits(model, features, tokenizer.pad_id, predict_config.batch_size,
                            device, progress)
    return decode_predictions(examples, features, logits, predict_config)


def compute_logits(
    model: torch.nn.Module,
    features: list[InputFeatures],
    pad_id: int,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = False,
) -> list[WindowLogits]:
    """The model's logits for every window, in `features` order.

    Windows are batched by length, so each batch pads only to its own longest window. The model
    is put in eval mode for the pass and left in the mode it came in.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="predict", unit="batch")
    results: list[WindowLogits | None] = [None] * len(features)
    # Toggling modes walks every submodule (~13 ms on e5): only do it when needed.
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode():
            for batch_indices in batches:
                batch = collate([features[i] for i in batch_indices], pad_id, False)
                batch = {name: tensor.to(device) for name, tensor in batch.items()}
                start_logits, end_logits = model(**batch)[:2]
                start_rows = start_logits.float().cpu().numpy().astype(np.float64)
                end_rows = end_logits.float().cpu().numpy().astype(np.float64)
                for row, index in enumerate(batch_indices):
                    length = len(features[index].input_ids)
                    results[index] = WindowLogits(start_rows[row, :length],
                                                  end_rows[row, :length])
    finally:
        if was_training:
            model.train()
    return results  # type: ignore[return-value]


def decode_predictions(
    examples: list[SquadExample],
    features: list[InputFeatures],
    logits: list[WindowLogits],
    config: PredictConfig,
) -> dict[str, list[Candidate]]:
    """n-best spans per question over all of its windows, with a score comparable anywhere.

    A span (i, j) of window w has logit s_w[i] + e_w[j]; it is a candidate when both ends are
    context tokens, i is a max-context token of w (so a span is judged once, where the model
    saw most around it), j >= i and j - i < max_answer_length. Its score is

        score = exp(s_w[i] + e_w[j]) / (exp(null) + sum of exp(logit) over every candidate
                                        of every window of the question)

    where null = min over windows of s_w[CLS] + e_w[CLS], the "no answer here" logit of the
    window most sure the answer is in it (BERT's SQuAD 2.0 convention). This is a softmax over
    all spans plus one null event, so scores are in (0, 1] and sum to at most 1 per question.
    Because the null event takes its share, a paragraph that does not hold the answer (every
    window points at CLS, as training taught for windows without the answer) gives all its
    spans low scores instead of spreading 1 over them. So scores of different paragraphs for
    the same question can be compared and fused with retrieval scores.

    With trim_particles, each span's end is pulled back before trailing particles
    (korqa.reader.josa) and keeps its score; candidates whose text repeats a better one's
    are dropped. When no span qualifies, or the best score is below no_answer_threshold, the
    list starts with an empty answer (start = end = 0) scored exp(null) / Z.
    """
    if config.n_best < 1 or config.max_answer_length < 1:
        raise ValueError("n_best and max_answer_length must be at least 1, got "
                         f"{config.n_best} and {config.max_answer_length}")
    by_example: dict[int, list[int]] = defaultdict(list)
    for index, feature in enumerate(features):
        by_example[feature.example_index].append(index)
    predictions: dict[str, list[Candidate]] = {}
    for example_index, example in enumerate(examples):
        windows = [(features[i], logits[i]) for i in by_example.get(example_index, [])]
        if not windows:
            raise ValueError(f"question {example.qid!r}: no features were made for it")
        predictions[example.qid] = _example_nbest(example, windows, config)
    return predictions


def _example_nbest(
    example: SquadExample,
    windows: list[tuple[InputFeatures, WindowLogits]],
    config: PredictConfig,
) -> list[Candidate]:
    null_logit, null_start, null_end = np.inf, 0.0, 0.0
    log_masses: list[float] = []
    spans: list[tuple[float, float, float, tuple[int, int], tuple[int, int]]] = []
    for feature, window in windows:
        cls_logit = window.start[0] + window.end[0]
        if cls_logit < null_logit:
            null_logit, null_start, null_end = cls_logit, window.start[0], window.end[0]
        sums, starts, lengths = _span_logits(feature, window, config.max_answer_length)
        if sums.size == 0:
            continue
        log_masses.append(_logsumexp(sums))
        top = np.argpartition(-sums, min(config.n_best, sums.size) - 1)[: config.n_best]
        for k in top:
            i, j = int(starts[k]), int(starts[k] + lengths[k])
            spans.append((float(sums[k]), float(window.start[i]), float(window.end[j]),
                          feature.token_offsets[i], feature.token_offsets[j]))
    log_z = _logsumexp(np.array([null_logit, *log_masses]))

    spans.sort(key=lambda span: -span[0])
    nbest: list[Candidate] = []
    seen: set[str] = set()
    for logit, start_logit, end_logit, (char_start, _), (_, char_end) in spans:
        if config.trim_particles:
            char_end = particle_cut(example.context, char_start, char_end)
        text = example.context[char_start:char_end]
        if text in seen:
            continue
        seen.add(text)
        nbest.append(Candidate(text, char_start, char_end, float(np.exp(logit - log_z)),
                               start_logit, end_logit))
        if len(nbest) == config.n_best:
            break

    threshold = config.no_answer_threshold
    if not nbest or (threshold is not None and nbest[0].score < threshold):
        empty = Candidate("", 0, 0, float(np.exp(null_logit - log_z)), null_start, null_end)
        nbest = [empty, *nbest][: config.n_best]
    return nbest


def _span_logits(
    feature: InputFeatures, window: WindowLogits, max_answer_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits of every candidate span of one window, flat, with each span's start and length-1.

    Spans are laid out as a band: row i = start token, column d = end - start, so
    sums[i, d] = start[i] + end[i + d] where both are allowed.
    """
    n = len(window.start)
    is_context = np.array([offset is not None for offset in feature.token_offsets])
    can_start = np.array(feature.token_is_max_context, dtype=bool)  # context tokens only
    width = min(max_answer_length, n)
    ends = np.arange(n)[:, None] + np.arange(width)[None, :]  # [n, width]
    inside = ends < n
    ends = np.where(inside, ends, 0)
    allowed = can_start[:, None] & inside & is_context[ends]
    starts, lengths = np.nonzero(allowed)
    sums = window.start[starts] + window.end[starts + lengths]
    return sums, starts, lengths


def _logsumexp(values: np.ndarray) -> float:
    top = float(np.max(values))
    return top + float(np.log(np.sum(np.exp(values - top))))
