"""Examples → windows (korqa.reader.features): answer positions, max-context marks, speed."""

from __future__ import annotations

import time

import pytest
import torch

from korqa.corpus.formats import GoldAnswer, SquadExample, read_squad
from korqa.reader.features import (
    FeatureConfig,
    answer_token_span,
    collate,
    convert_examples_to_features,
)
from korqa.tokenization import Tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _char_tokenizer(tmp_path, texts, extra=()) -> Tokenizer:
    """WordPiece over single characters (every character its own token), plus `extra` pieces."""
    chars = sorted({c for text in texts for c in text if not c.isspace()})
    vocab = [*SPECIALS, *extra, *chars, *("##" + c for c in chars)]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(path)


def _example(context: str, answer: str, question: str = "누구?", qid: str = "q") -> SquadExample:
    answers = [GoldAnswer(answer, context.index(answer))]
    return SquadExample(qid, question, context, "제목", 0, answers)


def _span(offsets: list[tuple[int, int]], char_start: int, char_end: int
          ) -> tuple[int, int] | None:
    return answer_token_span([s for s, _ in offsets], [e for _, e in offsets], char_start,
                             char_end)


def test_answer_span_worked_example(tmp_path):
    context = "1989년 2월 15일에 지명수배"
    tokenizer = _char_tokenizer(tmp_path, [context], extra=["1989", "15"])
    encoding = tokenizer.encode(context)
    span = _span(encoding.offsets, 0, len("1989년 2월 15일"))
    assert span is not None
    first, last = span
    assert context[encoding.offsets[first][0]:encoding.offsets[last][1]] == "1989년 2월 15일"


def test_answer_inside_a_token_gets_the_whole_token(tmp_path):
    context = "임종석이 체포되었다"
    tokenizer = _char_tokenizer(tmp_path, [context], extra=["임종", "##석이"])
    encoding = tokenizer.encode(context)
    assert encoding.tokens[:2] == ["임종", "##석이"]
    assert _span(encoding.offsets, 0, 3) == (0, 1)  # "임종석" → "임종석이"
    assert _span(encoding.offsets, 2, 3) == (1, 1)  # "석" → "석이"
    assert _span(encoding.offsets, 4, 5) is None  # only the space


def test_korean_answer_recovered_in_every_window_that_holds_it(tmp_path):
    # 30 single-character tokens; room 10, stride 4 -> windows [0,10) [4,14) [8,18) ...
    context = "가나다라마바사아 임종석이 자차카타파하 거너더러머버서어저"
    tokenizer = _char_tokenizer(tmp_path, [context, "누구?"])
    example = _example(context, "임종석")  # tokens 8..10: past w0, inside w1 and w2
    config = FeatureConfig(max_seq_length=len("누구?") + 3 + 10, doc_stride=4)
    features = convert_examples_to_features([example], tokenizer, config, is_training=True)
    holding = []
    for feature in features:
        if feature.start_position == 0:
            assert feature.end_position == 0
            continue
        start = feature.token_offsets[feature.start_position][0]
        end = feature.token_offsets[feature.end_position][1]
        assert context[start:end] == "임종석"
        holding.append(feature.window_index)
    assert holding == [1, 2]
    assert len(features) == 6 and all(len(f.input_ids) <= config.max_seq_length for f in features)


def test_answer_cut_by_every_window_edge_gets_cls(tmp_path):
    context = "가나다라마바사아자차카타파하"  # 14 tokens; room 4, stride 4: [0,4) [4,8) [8,12) ...
    tokenizer = _char_tokenizer(tmp_path, [context, "누구?"])
    example = _example(context, "라마")  # tokens 3-4 straddle the first edge
    config = FeatureConfig(max_seq_length=len("누구?") + 3 + 4, doc_stride=4)
    features = convert_examples_to_features([example], tokenizer, config, is_training=True)
    assert [(f.start_position, f.end_position) for f in features] == [(0, 0)] * 4


def test_window_layout_and_max_context_worked_example(tmp_path):
    context = "가나다라마바사아자차"  # 10 tokens; room 6, stride 3
    tokenizer = _char_tokenizer(tmp_path, [context, "뭐"])
    example = _example(context, "마", question="뭐")
    config = FeatureConfig(max_seq_length=1 + 3 + 6, doc_stride=3)
    features = convert_examples_to_features([example], tokenizer, config, is_training=False)
    spans = [[o for o in f.token_offsets if o is not None] for f in features]
    assert [(s[0][0], s[-1][1]) for s in spans] == [(0, 6), (3, 9), (6, 10)]
    marks = [[m for m, o in zip(f.token_is_max_context, f.token_offsets, strict=True)
              if o is not None] for f in features]
    assert marks[0] == [True, True, True, True, True, False]  # token 4 ties -> first window
    assert marks[1] == [False, False, True, True, True, False]
    assert marks[2] == [False, False, True, True]
    # Every context token is max-context in exactly one window; specials never are.
    owners = {}
    for feature in features:
        for offset, is_max in zip(feature.token_offsets, feature.token_is_max_context,
                                  strict=True):
            assert offset is not None or not is_max
            if is_max:
                assert offset not in owners
                owners[offset] = feature.window_index
    assert len(owners) == 10


def test_question_truncated_and_layout_is_bert_style(tmp_path):
    context = "가나다라"
    question = "아주아주긴질문입니다"
    tokenizer = _char_tokenizer(tmp_path, [context, question])
    config = FeatureConfig(max_seq_length=20, doc_stride=2, max_query_length=4)
    (feature,) = convert_examples_to_features([_example(context, "다", question)], tokenizer,
                                              config, is_training=False)
    tokens = [tokenizer.id_to_token(i) for i in feature.input_ids]
    assert tokens == ["[CLS]", "아", "##주", "##아", "##주", "[SEP]", "가", "##나", "##다",
                      "##라", "[SEP]"]
    assert feature.token_type_ids == [0] * 6 + [1] * 5
    assert feature.token_offsets[:6] == [None] * 6 and feature.token_offsets[-1] is None
    assert feature.token_offsets[6:10] == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_config_without_room_for_context_is_rejected(tmp_path):
    tokenizer = _char_tokenizer(tmp_path, ["가", "누구?"])
    with pytest.raises(ValueError, match="question 'q': max_seq_length 6 leaves no room for "
                                         "context after its 3-token question"):
        convert_examples_to_features([_example("가", "가")], tokenizer,
                                     FeatureConfig(max_seq_length=6), is_training=False)


def test_collate_pads_to_the_longest_in_the_batch(tmp_path):
    tokenizer = _char_tokenizer(tmp_path, ["가나다라마", "가나", "누구?"])
    examples = [_example("가나다라마", "다"), _example("가나", "나", qid="q2")]
    features = convert_examples_to_features(examples, tokenizer, FeatureConfig(), True)
    batch = collate(features, tokenizer.pad_id, with_positions=True)
    assert batch["input_ids"].shape == (2, 3 + 3 + 5)
    assert batch["attention_mask"].tolist() == [[1] * 11, [1] * 8 + [0] * 3]
    assert batch["input_ids"][1, 8:].tolist() == [tokenizer.pad_id] * 3
    # [CLS] 누 구 ? [SEP] context…: "다" is context token 2 -> 7, "나" is token 1 -> 6.
    assert batch["start_positions"].tolist() == [7, 6]
    assert batch["end_positions"].tolist() == [7, 6]
    assert batch["end_positions"].dtype == torch.long
    assert set(collate(features, 0, with_positions=False)) == {
        "input_ids", "token_type_ids", "attention_mask"}


def _trained_wordpiece(tmp_path, texts: list[str]) -> Tokenizer:
    """A real subword vocabulary (8k WordPiece trained on the texts) for realistic offsets."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece

    backend = Backend(WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=8000,
                                                                 special_tokens=SPECIALS))
    vocab = sorted(backend.get_vocab().items(), key=lambda item: item[1])
    path = tmp_path / "wordpiece.txt"
    path.write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    return Tokenizer.from_vocab(path)


@pytest.mark.slow
def test_korquad_dev_converts_fast_and_answers_map_back(tmp_path, korquad_dev):
    examples = read_squad(korquad_dev)
    texts = list({e.context for e in examples}) + [e.question for e in examples]
    for name, tokenizer in (("chars", _char_tokenizer(tmp_path, texts)),
                            ("wordpiece", _trained_wordpiece(tmp_path, texts))):
        started = time.perf_counter()
        features = convert_examples_to_features(examples, tokenizer, FeatureConfig(), True)
        seconds = time.perf_counter() - started
        print(f"{name}: {len(examples)} questions -> {len(features)} windows in {seconds:.2f} s")
        assert seconds < 30  # ~2 s on an idle core; generous for a shared machine
        assert {f.example_index for f in features} == set(range(len(examples)))
        held = set()
        for feature in features:
            if not feature.start_position:
                continue
            example = examples[feature.example_index]
            answer = example.answers[0]
            start = feature.token_offsets[feature.start_position][0]
            end = feature.token_offsets[feature.end_position][1]
            assert feature.start_position <= feature.end_position
            if name == "chars":
                # One token per character: exact (three gold answers carry edge spaces, which
                # no token covers).
                assert example.context[start:end] == answer.text.strip()
            else:
                # Subword tokens: the tightest token span that covers the gold answer.
                first = answer.start + len(answer.text) - len(answer.text.lstrip())
                last = answer.end - len(answer.text) + len(answer.text.rstrip())
                assert start <= first < feature.token_offsets[feature.start_position][1]
                assert feature.token_offsets[feature.end_position][0] < last <= end
            held.add(feature.example_index)
        assert len(held) == len(examples)  # every gold answer fits some 384-token window
