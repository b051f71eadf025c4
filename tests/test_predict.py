"""n-best prediction and its score (korqa.reader.predict) and particle trimming (reader.josa)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny import char_vocab

from korqa.corpus.formats import GoldAnswer, SquadExample
from korqa.modeling import BertConfig, BertForQuestionAnswering
from korqa.modeling.engines import TorchEngine
from korqa.reader.features import FeatureConfig, convert_examples_to_features, max_context_among
from korqa.reader.josa import is_particle_tail, particle_cut, trim_particles
from korqa.reader.predict import (
    MAX_WINDOWS,
    PredictConfig,
    WindowLogits,
    compute_logits,
    decode_predictions,
    decode_windows,
    predict,
    question_match,
    read_logits,
    window_confidence,
)
from korqa.tokenization import Tokenizer


@pytest.mark.parametrize(("span", "trimmed"), [
    ("임종석이", "임종석"),
    ("1989년 2월 15일에", "1989년 2월 15일"),
    ("1989년 2월 15일에는", "1989년 2월 15일"),
    ("《소나기》를", "《소나기》"),
    ("화강암이다", "화강암"),
    ("학생입니다", "학생"),  # 입 = copula 이 + ending ᆸ: the syllable goes with the copula
    ("이명박이었다", "이명박"),
])
def test_trailing_particles_and_copula_are_cut(span, trimmed):
    assert trim_particles(span) == trimmed


@pytest.mark.parametrize("span", [
    "1989년 2월 15일",  # already clean
    "한성조약",
    "주도한",  # ending on a verb: cutting would leave the stem 주도하
    "발견하여",
    "갔다",  # 가 + 었 share one syllable
    "에서",  # nothing but a particle: never trimmed to empty
    "2.32m",  # no Hangul at the end
])
def test_spans_that_must_not_change(span):
    assert trim_particles(span) == span


def test_context_keeps_names_whole_and_start_never_moves():
    context = "현정은 현대그룹 회장이 되었다"
    assert particle_cut(context, 0, 3) == 3  # 현정은 is a name here, not 현정 + 은
    assert particle_cut(context, 4, 12) == 11  # "현대그룹 회장이" -> "현대그룹 회장"
    assert particle_cut(context, 4, 4) == 4


def test_particle_tail_detection():
    assert is_particle_tail("임종석이", 3)
    assert is_particle_tail("1989년 2월 15일에", 12)
    assert not is_particle_tail("임종석의 아들", 3)
    assert not is_particle_tail("임종석", 3)


def _tokenizer(tmp_path, texts) -> Tokenizer:
    return char_vocab(texts, tmp_path)


CONTEXT = "임종석이 체포되었다"


def _windows(tmp_path, examples, logits_of):
    tokenizer = _tokenizer(tmp_path, [e.context for e in examples] + ["누구?"])
    features = convert_examples_to_features(examples, tokenizer, FeatureConfig(), False)
    return features, [logits_of(f) for f in features]


def _peaked(start: int, end: int, null: float = 0.0, peak: float = 10.0):
    """Logits: 0 everywhere, `peak` at the start/end token, `null` at CLS for both."""
    def make(feature):
        n = len(feature.input_ids)
        starts, ends = np.zeros(n), np.zeros(n)
        starts[0] = ends[0] = null
        starts[start] += peak
        ends[end] += peak
        return WindowLogits(starts, ends)
    return make


def test_score_is_a_softmax_over_all_spans_and_the_null(tmp_path):
    example = SquadExample("q", "누구?", CONTEXT, "t", 0, [GoldAnswer("임종석", 0)])
    # [CLS] 누 구 ? [SEP] 임 종 석 이 체 포 되 었 다 [SEP]: context tokens 5..13
    features, logits = _windows(tmp_path, [example], _peaked(5, 8))
    nbest = decode_predictions([example], features, logits, PredictConfig(trim_particles=False))
    best = nbest["q"][0]
    assert (best.text, best.start, best.end) == ("임종석이", 0, 4)
    assert (best.start_logit, best.end_logit) == (10.0, 10.0)
    # 9 context tokens -> 45 spans: one at 20, 8 + 3 sharing one peak at 10, 33 at 0; null 0.
    z = math.exp(0) + math.exp(20) + 11 * math.exp(10) + 33 * math.exp(0)
    assert best.score == pytest.approx(math.exp(20) / z)
    trimmed = decode_predictions([example], features, logits, PredictConfig())["q"][0]
    assert (trimmed.text, trimmed.start, trimmed.end) == ("임종석", 0, 3)
    assert trimmed.score == best.score


def test_paragraph_without_the_answer_gets_low_mass(tmp_path):
    here = SquadExample("here", "누구?", CONTEXT, "t", 0, [GoldAnswer("임종석", 0)])
    elsewhere = SquadExample("elsewhere", "누구?", "체포되었다 임종석이", "t", 0,
                             [GoldAnswer("임종석", 6)])
    # Same span logits in both; the second window is sure the answer is not in it.
    features, logits = _windows(tmp_path, [here, elsewhere], _peaked(5, 8))
    logits[1].start[0] = logits[1].end[0] = 15.0
    nbest = decode_predictions([here, elsewhere], features, logits, PredictConfig())
    assert nbest["here"][0].score > 0.99
    assert nbest["elsewhere"][0].score < 0.01
    # The "no answer" event's share, which the pipeline's confidence reads.
    assert nbest["elsewhere"][0].null_score == pytest.approx(
        math.exp(30) / (math.exp(30) + math.exp(20) + 11 * math.exp(10) + 33), rel=1e-6)


def test_spans_start_only_at_max_context_tokens(tmp_path):
    context = "가나다라마바사아자차"  # 10 tokens; room 6, stride 3: token 5 belongs to window 1
    example = SquadExample("q", "뭐", context, "t", 0, [GoldAnswer("바", 5)])
    tokenizer = _tokenizer(tmp_path, [context, "뭐"])
    features = convert_examples_to_features([example], tokenizer,
                                            FeatureConfig(max_seq_length=10, doc_stride=3), False)
    assert len(features) == 3

    def logits_of(feature):
        n = len(feature.input_ids)
        starts, ends = np.zeros(n), np.zeros(n)
        if feature.window_index == 0:
            starts[3 + 5] = 50.0  # [CLS] 뭐 [SEP] then context: token 5 = "바", not max here
        return WindowLogits(starts, ends)

    nbest = decode_predictions([example], features, [logits_of(f) for f in features],
                               PredictConfig(trim_particles=False))
    assert all(candidate.start_logit != 50.0 for candidate in nbest["q"])


def _tiny_model(vocab_size: int) -> BertForQuestionAnswering:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    return BertForQuestionAnswering(config)


def test_predict_with_a_tiny_random_model_is_well_formed(tmp_path):
    contexts = ["1989년 2월 15일 여의도 농민 폭력 시위를 주도한 혐의로 임종석이 지명수배되었다.",
                "임수경은 평양축전에 대표로 파견되었다."]
    examples = [
        SquadExample("q1", "누구?", contexts[0], "t", 0, [GoldAnswer("임종석", 35)]),
        SquadExample("q2", "누구?", contexts[1], "t", 1, [GoldAnswer("임수경", 0)]),
    ]
    tokenizer = _tokenizer(tmp_path, [*contexts, "누구?"])
    model = _tiny_model(tokenizer.vocab_size)
    model.train()
    feature_config = FeatureConfig(max_seq_length=24, doc_stride=6)
    config = PredictConfig(n_best=5, max_answer_length=4, batch_size=3, trim_particles=False)
    nbest = predict(model, tokenizer, examples, feature_config, config)
    assert model.training  # left in the mode it came in
    assert set(nbest) == {"q1", "q2"}
    for example in examples:
        candidates = nbest[example.qid]
        assert 1 <= len(candidates) <= 5
        scores = [c.score for c in candidates]
        assert scores == sorted(scores, reverse=True)
        assert all(0 < s <= 1 for s in scores) and sum(scores) <= 1 + 1e-9
        assert len({c.text for c in candidates}) == len(candidates)
        for candidate in candidates:
            assert candidate.text and candidate.text == example.context[
                candidate.start:candidate.end]
            assert len(tokenizer.encode(candidate.text)) <= 4  # max_answer_length tokens
    again = predict(model, tokenizer, examples, feature_config, config)
    assert again == nbest
    trimmed = predict(model, tokenizer, examples, feature_config,
                      PredictConfig(n_best=5, max_answer_length=4))
    for example in examples:
        for candidate in trimmed[example.qid]:
            assert candidate.text == example.context[candidate.start:candidate.end]


# ---- reading the most promising windows first (read_logits) --------------------------------

SPACED = "가 나 다 라 마 바 사 아 자 차"  # 10 one-syllable words, 10 tokens
SPACED_WINDOWS = FeatureConfig(max_seq_length=10, doc_stride=3)  # [0, 6) [3, 9) [6, 10)


class _PointsAt(torch.nn.Module):
    """A stand-in reader: start and end logits peaked on the last token equal to `target`
    (the context's, as the question comes first), on CLS when the window has none."""

    def __init__(self, target: int, peak: float = 20.0) -> None:
        super().__init__()
        self.target, self.peak, self.windows_read, self.batches = target, peak, 0, []

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        self.windows_read += input_ids.shape[0]
        self.batches.append(input_ids.shape[0])
        start = torch.zeros(input_ids.shape)
        for row, ids in enumerate(input_ids):
            hits = (ids == self.target).nonzero().flatten().tolist()
            start[row, hits[-1] if hits else 0] = self.peak
        return start, start.clone()


def _spaced(tmp_path, question: str):
    example = SquadExample("q", question, SPACED, "t", 0, [])
    tokenizer = _tokenizer(tmp_path, [SPACED, question])
    features = convert_examples_to_features([example], tokenizer, SPACED_WINDOWS, False)
    assert [f.context_start for f in features] == [0, 3, 6]
    return example, tokenizer, features


def test_question_match_counts_the_question_pieces_a_window_holds(tmp_path):
    _, tokenizer, features = _spaced(tmp_path, "차")  # only the last window holds 차
    assert question_match(features, tokenizer.piece_weights()) == [0.0, 0.0, 1.0]
    _, tokenizer, features = _spaced(tmp_path, "바")  # token 5: windows 0 and 1
    assert question_match(features, tokenizer.piece_weights()) == [1.0, 1.0, 0.0]


def test_reading_stops_at_the_first_confident_window(tmp_path):
    example, tokenizer, features = _spaced(tmp_path, "차")
    model = _PointsAt(tokenizer.token_to_id("차"))
    logits = read_logits(model, features, tokenizer, PredictConfig())
    assert model.windows_read == 1 and [w is not None for w in logits] == [False, False, True]
    best = decode_predictions([example], features, logits, PredictConfig())["q"][0]
    assert (best.text, best.start, best.end) == ("차", 18, 19)
    model.windows_read = 0
    everything = read_logits(model, features, tokenizer, PredictConfig(stop_confidence=None))
    assert model.windows_read == 3 and all(w is not None for w in everything)
    again = decode_predictions([example], features, everything, PredictConfig())["q"][0]
    assert (again.text, again.start, again.end) == (best.text, best.start, best.end)


def test_the_progress_bar_counts_questions_settled_by_skipped_windows_too(tmp_path, capsys):
    _, tokenizer, features = _spaced(tmp_path, "차")
    model = _PointsAt(tokenizer.token_to_id("차"))
    read_logits(model, features, tokenizer, PredictConfig(), progress=True)
    assert model.windows_read == 1
    bar = capsys.readouterr().err.replace("\r", "\n")
    # One question of three windows: one read, two skipped, and the question is settled.
    assert "predict: 100%" in bar and "1/1" in bar and "question" in bar
    read_logits(model, features * 2, tokenizer, PredictConfig(stop_confidence=None),
                progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n")
    assert "1/1" in bar and "2/1" not in bar  # every window read: still one question


def test_a_budget_caps_the_windows_read_most_promising_first(tmp_path):
    # Issue 27: one question reads at most MAX_WINDOWS windows over all its paragraphs, so an
    # over-long question with many paragraphs costs a bounded number of forward passes.
    _, tokenizer, features = _spaced(tmp_path, "차")
    model = _PointsAt(target=-1)  # never confident: without a budget every window is read
    logits = read_logits(model, features, tokenizer, PredictConfig(), budget=1)
    assert model.windows_read == 1 and [w is not None for w in logits] == [False, False, True]
    model.windows_read = 0
    logits = read_logits(model, features, tokenizer, PredictConfig(stop_confidence=None),
                         budget=2)
    assert model.windows_read == 2 and logits[2] is not None  # the best match is read first
    # Over several paragraphs (examples), rounds take each one's next-best window in turn.
    examples = [SquadExample(f"q{i}", "차", SPACED, "t", 0, []) for i in range(3)]
    many = convert_examples_to_features(examples, tokenizer, SPACED_WINDOWS, False)
    model.windows_read = 0
    logits = read_logits(model, many, tokenizer, PredictConfig(), budget=MAX_WINDOWS)
    assert model.windows_read == MAX_WINDOWS < len(many)
    assert all(logits[i] is not None for i in (2, 5, 8))  # every paragraph's best window
    # A budget smaller than the paragraphs: the first ones (by retrieval rank) are read, the
    # rest answer nothing, as if under the read gate.
    model.windows_read = 0
    logits = read_logits(model, many, tokenizer, PredictConfig(), budget=2)
    assert model.windows_read == 2 and [w is not None for w in logits].count(True) == 2
    answers = decode_windows([SPACED] * 3, many, logits, PredictConfig())
    assert [bool(candidates) for candidates in answers] == [True, True, False]
    with pytest.raises(ValueError, match="budget"):
        read_logits(model, features, tokenizer, PredictConfig(), budget=0)


def test_unsure_windows_are_all_read(tmp_path):
    _, tokenizer, features = _spaced(tmp_path, "차")
    model = _PointsAt(target=-1)  # every window says "not here" (CLS)
    logits = read_logits(model, features, tokenizer, PredictConfig(stop_confidence=0.01))
    assert model.windows_read == 3 and all(w is not None for w in logits)


def test_windows_that_match_as_well_as_the_best_are_all_read(tmp_path):
    _, tokenizer, features = _spaced(tmp_path, "바")  # windows 0 and 1 hold 바, window 2 not
    model = _PointsAt(tokenizer.token_to_id("바"))
    logits = read_logits(model, features, tokenizer, PredictConfig())
    assert model.windows_read == 2 and [w is not None for w in logits] == [True, True, False]


def test_a_read_window_takes_over_the_tokens_of_skipped_ones(tmp_path):
    # 사 is token 6, at window 2's edge: window 1 owns it when every window is read.
    example, tokenizer, features = _spaced(tmp_path, "차")  # only window 2 holds 차
    assert features[2].token_is_max_context[3] is False
    model = _PointsAt(tokenizer.token_to_id("사"))
    logits = read_logits(model, features, tokenizer, PredictConfig())
    assert model.windows_read == 1 and logits[2] is not None  # best match, and confident
    assert decode_predictions([example], features, logits,
                              PredictConfig())["q"][0].text == "사"


def test_max_context_among_read_windows(tmp_path):
    _, _, features = _spaced(tmp_path, "차")
    assert max_context_among(features) == [f.token_is_max_context for f in features]
    first, last = max_context_among([features[0], features[2]])
    owned = [i - 3 for i, flag in enumerate(first) if flag]
    owned += [i - 3 + 6 for i, flag in enumerate(last) if flag]
    assert sorted(owned) == list(range(10))  # every token once, none lost with window 1


def test_window_confidence_is_the_best_spans_share(tmp_path):
    _, _, features = _spaced(tmp_path, "차")
    flat = WindowLogits(np.zeros(len(features[2].input_ids)), np.zeros(len(features[2].input_ids)))
    # 4 context tokens: 4 + 3 + 2 + 1 spans, each as likely as CLS
    assert window_confidence(features[2], flat, 30) == pytest.approx(1 / 11)
    with pytest.raises(ValueError, match="stop_confidence"):
        read_logits(_PointsAt(0), features, _tokenizer(tmp_path, [SPACED, "차"]),
                    PredictConfig(stop_confidence=1.5))


def test_an_int8_engine_reads_one_window_at_a_time(tmp_path):
    # One activation scale per batch would make a window's answer depend on its batch-mates.
    _, tokenizer, features = _spaced(tmp_path, "차")
    model = _PointsAt(tokenizer.token_to_id("차"))
    compute_logits(model, features, tokenizer.pad_id, batch_size=3)
    assert model.batches == [3]

    class Int8(TorchEngine):
        is_int8, max_batch = True, 1  # as ONNX Runtime's int8 engine says

    model.batches.clear()
    compute_logits(Int8(model), features, tokenizer.pad_id, batch_size=3)
    assert model.batches == [1, 1, 1]
