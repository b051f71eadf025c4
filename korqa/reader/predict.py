"""Run a reader over examples and turn its start/end logits into scored n-best answer spans."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from korqa.corpus.formats import SquadExample
from korqa.modeling.engines import ReaderEngine, as_engine
from korqa.reader.features import (
    FeatureConfig,
    InputFeatures,
    convert_examples_to_features,
    max_context_among,
    pad_batch,
)
from korqa.reader.josa import particle_cut
from korqa.tokenization import Tokenizer

if TYPE_CHECKING:  # torch is loaded only for a torch model; ONNX Runtime reads numpy
    import torch

# A question's windows are read most promising first, and reading stops at the first window
# whose best span has at least this probability, once no unread window holds TIE_SHARE of
# the question match of the best (`read_logits`): fewer tokens read at the same F1 on the
# validation fold (the model card has the figures).
DEFAULT_STOP_CONFIDENCE = 0.5
TIE_SHARE = 0.95
# Windows one question may have read over all of its paragraphs (`Reader.read`): a question
# reads 1.2 windows on average, and an over-long one with many paragraphs may not cost more
# than about five of them (korqa.pipeline.limits).
MAX_WINDOWS = 6


# numpy's own stable log-sum-exp (a ufunc reduction), equal to scipy.special.logsumexp: that
# module is not otherwise imported when `korqa ask` reads, and importing it costs the answer time.
_logsumexp = np.logaddexp.reduce


@dataclass(kw_only=True)
class PredictConfig:
    """How answers are read off the logits (keyword-only, as `FeatureConfig`)."""

    # The "help" metadata is each knob's command-line help (korqa.cli_options).
    n_best: int = field(default=20, metadata={
        "help": "candidate answers kept per question", "metavar": "N"})
    max_answer_length: int = field(default=30, metadata={
        "help": "longest answer, in tokens (end - start + 1)", "metavar": "N"})
    batch_size: int = field(default=32, metadata={
        "help": "windows per forward pass", "metavar": "N"})
    trim_particles: bool = field(default=True, metadata={
        "help": "keep trailing particles (josa, copula) on answers instead of cutting them off",
        "flag": "--no-trim"})
    # Stop reading a question's windows once one's best span is this probable (read_logits);
    # None reads every window.
    stop_confidence: float | None = field(default=DEFAULT_STOP_CONFIDENCE, metadata={
        "help": "a paragraph longer than one window is read most promising window first, up "
                "to the first whose best answer is this probable", "metavar": "P",
        "presets": {"--all-windows": (None, "read every window of a paragraph longer than "
                                            "one (--stop-confidence off)")}})
    # Windows read per question at most, over all its paragraphs, most promising first, when
    # answering (`Reader.read`); evaluating a reader reads what stop_confidence says. A limit
    # of korqa.pipeline.limits, not an option.
    max_windows: int = MAX_WINDOWS


@dataclass
class Candidate:
    """One answer span: text == context[start:end]; score is probability-like, in (0, 1]."""

    text: str
    start: int  # character offsets into the example's context
    end: int
    score: float
    start_logit: float
    end_logit: float
    # The "no answer" event's share of the same softmax (one value per question): high when
    # the reader thinks the paragraph does not hold the answer. The pipeline's confidence uses it.
    null_score: float = 0.0


@dataclass
class WindowLogits:
    """A window's start and end logits over its real (unpadded) tokens."""

    start: np.ndarray  # [L] float64
    end: np.ndarray  # [L] float64


def predict(
    model: ReaderEngine | torch.nn.Module,
    tokenizer: Tokenizer,
    examples: list[SquadExample],
    feature_config: FeatureConfig,
    predict_config: PredictConfig,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, list[Candidate]]:
    """n-best candidates per question id, best first (see `decode_predictions` for the score).
    `device`: where a bare torch model reads (default: where its weights are)."""
    features = convert_examples_to_features(examples, tokenizer, feature_config, False)
    logits = read_logits(model, features, tokenizer, predict_config, device, progress)
    return decode_predictions(examples, features, logits, predict_config)


def read_logits(
    model: ReaderEngine | torch.nn.Module,
    features: list[InputFeatures],
    tokenizer: Tokenizer,
    config: PredictConfig,
    device: str | None = None,
    progress: bool = False,
    budget: int | None = None,
) -> list[WindowLogits | None]:
    """The logits of the windows worth reading, in `features` order; None for windows skipped.
    With a `budget`, at most that many windows are read in all, in the order below.

    With `config.stop_confidence` None every window is read. Otherwise each question's windows
    are ranked by how much of the question they hold (`question_match`) and read in rounds:
    round r reads the r-th window of every question still open (batched across questions).
    A question closes once a window's best span has at least that probability
    (`window_confidence`) and every window left matches the question clearly worse than the
    best one (under TIE_SHARE of its match): windows that tie are all read, since the lexical
    match cannot tell them apart. A window holding the answer usually ranks first and is
    confident, so a paragraph longer than one window mostly costs one window's read.
    """
    if config.stop_confidence is not None and not 0.0 <= config.stop_confidence <= 1.0:
        raise ValueError(f"stop_confidence must be in [0, 1] (or None to read every window), "
                         f"got {config.stop_confidence}")
    engine = as_engine(model, device)
    if budget is None or budget >= len(features):
        if config.stop_confidence is None:
            return compute_logits(engine, features, tokenizer.pad_id, config.batch_size,
                                  progress=progress)
        budget = len(features)
    elif budget < 1:
        raise ValueError(f"the window budget must be at least 1, got {budget}")
    # Without a stop confidence no window closes a question: only the budget ends reading.
    stop = 2.0 if config.stop_confidence is None else config.stop_confidence
    # One bar for all rounds: a question counts once its windows are read or skipped.
    bar = QuestionBar(features) if progress else None
    weights = tokenizer.piece_weights()
    queues: dict[int, list[tuple[int, float]]] = {}  # example -> (window, match), best first
    best_match: dict[int, float] = {}
    for example, indices in _windows_by_example(features).items():
        match = question_match([features[i] for i in indices], weights)
        queues[example] = sorted(zip(indices, match, strict=True), key=lambda item: -item[1])
        best_match[example] = queues[example][0][1]
    results: list[WindowLogits | None] = [None] * len(features)
    while queues and budget > 0:
        reading = [queue.pop(0)[0] for queue in list(queues.values())[:budget]]
        budget -= len(reading)
        logits = compute_logits(engine, [features[i] for i in reading], tokenizer.pad_id,
                                config.batch_size, progress=False if bar is None else bar)
        for index, window in zip(reading, logits, strict=True):
            results[index] = window
            example = features[index].example_index
            left = queues[example]
            if not left or (left[0][1] < TIE_SHARE * best_match[example]
                            and window_confidence(features[index], window,
                                                  config.max_answer_length) >= stop):
                del queues[example]
                if bar is not None:
                    bar.windows_done([example] * len(left))  # windows it will not need
    if bar is not None:
        for example, left in queues.items():  # left unread when the budget ran out
            bar.windows_done([example] * len(left))
        bar.close()
    return results


class QuestionBar:
    """A progress bar over the questions of `features`, told which windows are done: a
    question counts once every window of it is read or skipped, so the bar moves as people
    count the work (a paragraph's windows differ in number, and most are skipped)."""

    def __init__(self, features: list[InputFeatures]) -> None:
        from tqdm import tqdm

        self.left = Counter(feature.example_index for feature in features)
        self.bar = tqdm(total=len(self.left), desc="predict", unit="question")

    def windows_done(self, examples: Iterable[int]) -> None:
        """One window done for each question index in `examples`."""
        finished = 0
        for example in examples:
            self.left[example] -= 1
            finished += self.left[example] == 0
        self.bar.update(finished)

    def close(self) -> None:
        self.bar.close()


def question_match(windows: list[InputFeatures], piece_weights: np.ndarray) -> list[float]:
    """How much of the question each of `windows` (one question's) holds: the summed
    `piece_weights` of the distinct question pieces found in its context, so a shared name
    counts more than a shared particle."""
    question = set()
    for token_id, offset in zip(windows[0].input_ids, windows[0].token_offsets, strict=True):
        if offset is not None:
            break
        question.add(token_id)

    def score(window: InputFeatures) -> float:
        context = {token_id for token_id, offset in zip(window.input_ids, window.token_offsets,
                                                        strict=True) if offset is not None}
        return float(sum(piece_weights[token_id] for token_id in question & context))

    return [score(window) for window in windows]


def window_confidence(feature: InputFeatures, window: WindowLogits,
                      max_answer_length: int) -> float:
    """The probability of the window's best span against all its spans and "no answer"
    (CLS): exp(best) / (exp(cls) + sum of exp(span logit)). Spans may start at any context
    token here, as this asks whether the answer is in this window, not who owns it."""
    sums, _, _ = _span_logits(feature, window, max_answer_length, any_start=True)
    if sums.size == 0:
        return 0.0
    cls_logit = window.start[0] + window.end[0]
    best = float(sums.max())
    return float(np.exp(best - _logsumexp(np.append(sums, cls_logit))))


def compute_logits(
    model: ReaderEngine | torch.nn.Module,
    features: list[InputFeatures],
    pad_id: int,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool | QuestionBar = False,
) -> list[WindowLogits]:
    """The model's logits for every window, in `features` order. `progress`: a bar of its
    own (True), or a caller's bar that the windows are counted on (as `read_logits` passes).

    Windows are batched by length, so each batch pads only to its own longest window, and no
    batch holds more than the engine's `max_batch`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    engine = as_engine(model, device)
    batch_size = min(batch_size, engine.max_batch or batch_size)
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    own_bar = isinstance(progress, bool)
    bar = (QuestionBar(features) if progress else None) if own_bar else progress
    results: list[WindowLogits | None] = [None] * len(features)
    try:
        for indices in batches:
            start, end = engine.forward(pad_batch([features[i] for i in indices], pad_id))
            start, end = start.astype(np.float64), end.astype(np.float64)
            for row, index in enumerate(indices):
                length = len(features[index].input_ids)
                results[index] = WindowLogits(start[row, :length], end[row, :length])
            if bar is not None:
                bar.windows_done(features[i].example_index for i in indices)
    finally:
        if own_bar and bar is not None:
            bar.close()
    return results  # type: ignore[return-value]


def decode_predictions(
    examples: list[SquadExample],
    features: list[InputFeatures],
    logits: list[WindowLogits | None],
    config: PredictConfig,
    progress: bool = False,
) -> dict[str, list[Candidate]]:
    """n-best spans per question over its windows, with a score comparable anywhere.

    Windows whose logits are None were not read (`read_logits`); the read ones take over the
    tokens the skipped ones owned, and "every window" below means every read window.

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
    are dropped. When no span qualifies, the list is one empty answer (start = end = 0) scored
    exp(null) / Z. Whether to answer at all is the pipeline's decision
    (korqa.pipeline.confidence), not the reader's.
    """
    contexts = [example.context for example in examples]
    names = [f"question {example.qid!r}" for example in examples]
    nbest = decode_windows(contexts, features, logits, config, progress, names)
    return {example.qid: candidates for example, candidates in zip(examples, nbest, strict=True)}


def decode_windows(
    contexts: list[str],
    features: list[InputFeatures],
    logits: list[WindowLogits | None],
    config: PredictConfig,
    progress: bool = False,
    names: list[str] | None = None,
) -> list[list[Candidate]]:
    """`decode_predictions` for windows cut from `contexts` (a window's `example_index` is its
    context's index): n-best spans per context, best first; none for a context of which no
    window was read (a window budget spent on better ones). `names` name them in errors."""
    if config.n_best < 1 or config.max_answer_length < 1:
        raise ValueError("n_best and max_answer_length must be at least 1, got "
                         f"{config.n_best} and {config.max_answer_length}")
    names = names or [f"context {i}" for i in range(len(contexts))]
    by_example = _windows_by_example(features)
    predictions: list[list[Candidate]] = []
    items = enumerate(contexts)
    if progress:  # trimming asks Kiwi about every candidate, which takes a while
        from tqdm import tqdm

        items = tqdm(items, total=len(contexts), unit="question",
                     desc="answers, particles trimmed" if config.trim_particles else "answers")
    for index, context in items:
        indices = by_example.get(index, [])
        if not indices:
            raise ValueError(f"{names[index]}: no features were made for it")
        read = [i for i in indices if logits[i] is not None]
        if not read:
            predictions.append([])
            continue
        windows = [features[i] for i in read]
        if len(read) < len(indices):  # skipped windows' tokens pass to the read ones
            windows = [replace(feature, token_is_max_context=flags) for feature, flags
                       in zip(windows, max_context_among(windows), strict=True)]
        predictions.append(_context_nbest(
            context, [(feature, logits[i]) for feature, i in zip(windows, read, strict=True)],
            config))
    return predictions


def _windows_by_example(features: list[InputFeatures]) -> dict[int, list[int]]:
    """Indices into `features` of each example's windows, in window order."""
    by_example: dict[int, list[int]] = defaultdict(list)
    for index, feature in enumerate(features):
        by_example[feature.example_index].append(index)
    return by_example


def _context_nbest(
    context: str,
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
        log_masses.append(float(_logsumexp(sums)))
        top = np.argpartition(-sums, min(config.n_best, sums.size) - 1)[: config.n_best]
        for k in top:
            i, j = int(starts[k]), int(starts[k] + lengths[k])
            spans.append((float(sums[k]), float(window.start[i]), float(window.end[j]),
                          feature.token_offsets[i], feature.token_offsets[j]))
    log_z = float(_logsumexp(np.array([null_logit, *log_masses])))

    spans.sort(key=lambda span: -span[0])
    null_score = float(np.exp(null_logit - log_z))
    nbest: list[Candidate] = []
    seen: set[str] = set()
    for logit, start_logit, end_logit, (char_start, _), (_, char_end) in spans:
        if config.trim_particles:
            char_end = particle_cut(context, char_start, char_end)
        text = context[char_start:char_end]
        if text in seen:
            continue
        seen.add(text)
        nbest.append(Candidate(text, char_start, char_end, float(np.exp(logit - log_z)),
                               start_logit, end_logit, null_score))
        if len(nbest) == config.n_best:
            break

    if not nbest:
        nbest = [Candidate("", 0, 0, null_score, null_start, null_end, null_score)]
    return nbest


def _span_logits(
    feature: InputFeatures, window: WindowLogits, max_answer_length: int,
    any_start: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits of every candidate span of one window, flat, with each span's start and length-1.

    Spans are laid out as a band: row i = start token, column d = end - start, so
    sums[i, d] = start[i] + end[i + d] where both are allowed. A span starts at a max-context
    token, or with `any_start` at any context token.
    """
    n = len(window.start)
    is_context = np.array([offset is not None for offset in feature.token_offsets])
    can_start = is_context if any_start else np.array(feature.token_is_max_context, dtype=bool)
    width = min(max_answer_length, n)
    ends = np.arange(n)[:, None] + np.arange(width)[None, :]  # [n, width]
    inside = ends < n
    ends = np.where(inside, ends, 0)
    allowed = can_start[:, None] & inside & is_context[ends]
    starts, lengths = np.nonzero(allowed)
    sums = window.start[starts] + window.end[starts + lengths]
    return sums, starts, lengths

