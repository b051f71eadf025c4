"""Turn examples into model inputs: the question plus overlapping windows of context tokens."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from korqa.corpus.formats import GoldAnswer, SquadExample
from korqa.tokenization import Tokenizer

if TYPE_CHECKING:  # only `collate` makes tensors; reading with ONNX Runtime never loads torch
    import torch

@dataclass(kw_only=True)
class FeatureConfig:
    """How examples are cut into windows; the defaults are BERT's run_squad settings.
    Keyword-only, so that configs holding the windows among their own fields (a reader's, a
    training run's) can inherit them."""

    # The "help" metadata is each knob's command-line help (korqa.cli_options).
    max_seq_length: int = field(default=384, metadata={
        "help": "tokens per window, specials included", "metavar": "N"})
    doc_stride: int = field(default=128, metadata={
        "help": "how far the next window starts after the previous one, in tokens",
        "metavar": "N"})
    max_query_length: int = field(default=64, metadata={
        "help": "longer questions are cut to this many tokens", "metavar": "N"})


@dataclass
class InputFeatures:
    """One window of one example, ready for the model."""

    example_index: int  # index into the examples list given to `convert_examples_to_features`
    window_index: int  # 0, 1, ... within its example
    input_ids: list[int]
    token_type_ids: list[int]
    # [start, end) characters of the context each token spells; None for question and specials.
    token_offsets: list[tuple[int, int] | None]
    # True where this window is the one that sees the token with the most context around it.
    token_is_max_context: list[bool]
    context_start: int  # index of the window's first context token among the context's tokens
    start_position: int = 0  # answer's first/last token in input_ids; 0 (= CLS) when the
    end_position: int = 0  # answer is not wholly inside this window, or there is none


@dataclass(frozen=True)
class _Window:
    start: int  # first context token
    end: int  # one past the last context token
    is_max_context: list[bool]  # per token of the window


def convert_examples_to_features(
    examples: list[SquadExample],
    tokenizer: Tokenizer,
    config: FeatureConfig,
    is_training: bool,
) -> list[InputFeatures]:
    """Windows for every example, in example order; training windows carry answer positions
    (of the first gold answer: SQuAD-style training files have one per question)."""
    answers = [example.answers[0] if is_training and example.answers
               and not example.is_impossible else None for example in examples]
    return _cut([example.question for example in examples],
                [example.context for example in examples],
                [example.qid for example in examples], answers, tokenizer, config)


def question_windows(question: str, contexts: Sequence[str], tokenizer: Tokenizer,
                     config: FeatureConfig) -> list[InputFeatures]:
    """Windows of one question over each of `contexts`; a window's `example_index` is the
    index of its context."""
    return _cut([question] * len(contexts), list(contexts),
                [f"context {i}" for i in range(len(contexts))], [None] * len(contexts),
                tokenizer, config)


def _cut(questions: list[str], contexts: list[str], names: list[str],
         answers: list[GoldAnswer | None], tokenizer: Tokenizer,
         config: FeatureConfig) -> list[InputFeatures]:
    """Windows of each (question, context) pair, in order; `answers` (or None) give training
    positions, `names` name a pair in errors.

    Each distinct context is tokenised once (questions share paragraphs), and the window layout
    depends only on the context's length and the room the question leaves, so it is computed
    once per (length, room) pair.
    """
    _check_config(config, tokenizer)
    context_ids: dict[str, int] = {}
    for context in contexts:
        context_ids.setdefault(context, len(context_ids))
    context_encodings = tokenizer.encode_batch(list(context_ids))
    question_encodings = tokenizer.encode_batch(questions)
    layouts: dict[tuple[int, int], list[_Window]] = {}
    bounds: dict[int, tuple[list[int], list[int]]] = {}

    features: list[InputFeatures] = []
    for example_index, (text, question, name, gold) in enumerate(
        zip(contexts, question_encodings, names, answers, strict=True)
    ):
        question_ids = question.ids[: config.max_query_length]
        room = config.max_seq_length - len(question_ids) - tokenizer.pair_overhead
        if room < 1:
            raise ValueError(
                f"question {name!r}: max_seq_length {config.max_seq_length} leaves no room "
                f"for context after its {len(question_ids)}-token question; raise max_seq_length "
                f"or lower max_query_length ({config.max_query_length})"
            )
        context_index = context_ids[text]
        context = context_encodings[context_index]
        windows = layouts.get((len(context), room))
        if windows is None:
            windows = _layout_windows(len(context), room, config.doc_stride)
            layouts[(len(context), room)] = windows

        answer = None
        if gold is not None:
            if context_index not in bounds:
                bounds[context_index] = ([s for s, _ in context.offsets],
                                         [e for _, e in context.offsets])
            answer = answer_token_span(*bounds[context_index], gold.start, gold.end)

        for window_index, window in enumerate(windows):
            input_ids, token_type_ids, context_start = tokenizer.build_pair(
                question_ids, context.ids[window.start:window.end]
            )
            n_after = len(input_ids) - context_start - (window.end - window.start)
            offsets: list[tuple[int, int] | None] = [None] * context_start
            offsets += context.offsets[window.start:window.end]
            offsets += [None] * n_after
            is_max = [False] * context_start + window.is_max_context + [False] * n_after
            start_position = end_position = 0
            if answer is not None and window.start <= answer[0] and answer[1] < window.end:
                start_position = context_start + answer[0] - window.start
                end_position = context_start + answer[1] - window.start
            features.append(InputFeatures(
                example_index, window_index, input_ids, token_type_ids, offsets, is_max,
                window.start, start_position, end_position,
            ))
    return features


def answer_token_span(
    starts: list[int], ends: list[int], char_start: int, char_end: int
) -> tuple[int, int] | None:
    """First and last token (inclusive) covering characters [char_start, char_end), or None;
    `starts` and `ends` are the tokens' character offsets (ascending, as an encoding's are).

    The first token is the first whose span ends after `char_start`; the last is the last whose
    span starts before `char_end`. Answers that cut a token in two get the whole token, so the
    span always covers the answer. Worked example, context "1989년 2월 15일에 지명수배":

        tokens   1989  ##년  2     ##월  15     ##일    ##에    지명  ...
        offsets  0-4   4-5   6-7   7-8   9-11   11-12   12-13   14-16
        answer "1989년 2월 15일" = chars [0, 12)
        first token ending after 0  -> "1989" (0);  last token starting before 12 -> "##일" (5)

    Had the vocabulary one token "##일에" (11-13), the span would end there and read "…15일에";
    the particle is left to `korqa.reader.josa` at prediction time. None means no token
    overlaps the characters (e.g. an answer that is only whitespace).
    """
    first = bisect.bisect_right(ends, char_start)
    last = bisect.bisect_left(starts, char_end) - 1
    if first >= len(ends) or last < first:
        return None
    return first, last


def _layout_windows(n_tokens: int, room: int, stride: int) -> list[_Window]:
    """Windows of at most `room` tokens, each starting `stride` after the last, ending at the end.

    A token inside several windows is "max context" in the one where it sits furthest from an
    edge: score = min(tokens left of it, tokens right of it) + 0.01 * window length, first
    window on a tie. Worked example, 10 tokens, room 6, stride 3:

        windows      w0 = [0, 6)   w1 = [3, 9)   w2 = [6, 10)
        token 4:     w0 min(4, 1) + 0.06 = 1.06;  w1 min(1, 4) + 0.06 = 1.06  -> w0 (tie, first)
        token 5:     w0 min(5, 0) + 0.06 = 0.06;  w1 min(2, 3) + 0.06 = 2.06  -> w1
        token 7:     w1 min(4, 1) + 0.06 = 1.06;  w2 min(1, 2) + 0.04 = 1.04  -> w1

    Prediction only takes answer starts at max-context tokens, so a span is not scored twice
    and is judged where the model saw the most around it.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(n_tokens, start + room)
        spans.append((start, end))
        if end >= n_tokens:
            break
        # Never jump past the window's end, or tokens between windows would go unread.
        start += min(end - start, stride)

    if len(spans) == 1:
        return [_Window(0, n_tokens, [True] * n_tokens)]
    owner = _max_context_owner(spans, n_tokens)
    return [
        _Window(start, end, (owner[start:end] == index).tolist())
        for index, (start, end) in enumerate(spans)
    ]


def _max_context_owner(spans: list[tuple[int, int]], n_tokens: int) -> np.ndarray:
    """For each of n_tokens tokens, the index of the span in `spans` where it has the most
    context (scored as `_layout_windows` explains); -1 for a token no span holds."""
    best_score = np.full(n_tokens, -1.0)
    owner = np.full(n_tokens, -1, dtype=np.int64)
    for index, (start, end) in enumerate(spans):
        position = np.arange(start, end)
        score = np.minimum(position - start, end - 1 - position) + 0.01 * (end - start)
        better = score > best_score[start:end]
        best_score[start:end][better] = score[better]
        owner[start:end][better] = index
    return owner


def max_context_among(windows: list[InputFeatures]) -> list[list[bool]]:
    """`token_is_max_context` of each window as if `windows` (some of one example's windows)
    were all there is: when a reader skips windows, the tokens they owned pass to a read one."""
    spans, firsts = [], []
    for feature in windows:
        first = next(i for i, offset in enumerate(feature.token_offsets) if offset is not None)
        n_context = sum(offset is not None for offset in feature.token_offsets)
        spans.append((feature.context_start, feature.context_start + n_context))
        firsts.append(first)
    owner = _max_context_owner(spans, max(end for _, end in spans))
    flags = []
    for index, (feature, (start, end), first) in enumerate(zip(windows, spans, firsts,
                                                              strict=True)):
        is_max = [False] * len(feature.input_ids)
        is_max[first:first + end - start] = (owner[start:end] == index).tolist()
        flags.append(is_max)
    return flags


def _check_config(config: FeatureConfig, tokenizer: Tokenizer) -> None:
    if config.max_query_length < 1:
        raise ValueError(f"max_query_length must be at least 1, got {config.max_query_length}")
    if config.doc_stride < 1:
        raise ValueError(f"doc_stride must be at least 1, got {config.doc_stride}")
    if config.max_seq_length < tokenizer.pair_overhead + 2:
        raise ValueError(f"max_seq_length {config.max_seq_length} cannot hold a question, a "
                         f"context token and {tokenizer.pair_overhead} special tokens")


def pad_batch(features: list[InputFeatures], pad_id: int) -> dict[str, np.ndarray]:
    """A batch of windows as int64 arrays [B, L], padded to the batch's longest window (not
    max_seq_length): input_ids, token_type_ids and attention_mask."""
    if not features:
        raise ValueError("cannot collate an empty batch of features")
    length = max(len(feature.input_ids) for feature in features)
    input_ids, token_type_ids, attention_mask = [], [], []
    for feature in features:
        pad = length - len(feature.input_ids)
        input_ids.append(feature.input_ids + [pad_id] * pad)
        token_type_ids.append(feature.token_type_ids + [0] * pad)
        attention_mask.append([1] * len(feature.input_ids) + [0] * pad)
    return {
        "input_ids": np.array(input_ids, dtype=np.int64),
        "token_type_ids": np.array(token_type_ids, dtype=np.int64),
        "attention_mask": np.array(attention_mask, dtype=np.int64),
    }


def collate(
    features: list[InputFeatures], pad_id: int, with_positions: bool
) -> dict[str, torch.Tensor]:
    """`pad_batch` as torch tensors, with the answer positions for training."""
    import torch

    batch = {name: torch.from_numpy(array) for name, array in pad_batch(features, pad_id).items()}
    if with_positions:
        batch["start_positions"] = torch.tensor([f.start_position for f in features])
        batch["end_positions"] = torch.tensor([f.end_position for f in features])
    return batch
