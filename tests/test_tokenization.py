"""Tokenizer: offsets back into Korean text, cased and un-decomposed, pair layouts, save/load."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import pre_tokenizers
from tokenizers.models import Unigram

from korqa.tokenization import BERT_SPECIALS, XLMR_SPECIALS, Tokenizer

KOREAN = "임종석이 1989년 2월 15일에"
TEXTS = [
    KOREAN,
    "서울특별시는 대한민국의 수도이며, 인구는 약 940만 명(2023년)이다.",
    "  앞뒤 공백과\t탭,\n줄바꿈이 섞인   문장 ",
    "Seoul과 Busan은 KTX로 2시간 30분 걸린다!",
    "《훈민정음》은 1446년(세종 28년)에 반포되었다.",
]
WORDS = ["임종석", "서울", "대한민국", "1989", "##년", "##이", "##에", "Seoul", "KTX", "##민국"]
HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)
HANGUL_JAMO = range(0x1100, 0x1200)


def korquad_contexts(path: Path, n: int) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [article["paragraphs"][0]["context"] for article in data[:n]]


def make_wordpiece(texts: list[str], directory: Path) -> Tokenizer:
    """A WordPiece vocabulary written as vocab.txt: specials, a few words, every character of
    `texts`, alone and as a "##" continuation."""
    chars = sorted({c for text in texts for c in text if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars]
    vocab += [f"##{c}" for c in chars]
    path = directory / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(path)


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory) -> Tokenizer:
    return make_wordpiece(TEXTS, tmp_path_factory.mktemp("wordpiece"))


@pytest.fixture(scope="module")
def xlmr() -> Tokenizer:
    """A tiny SentencePiece-style Unigram tokenizer with XLM-R's special tokens."""
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁임종석", "이", "▁서울", "은", "▁수도", "다"]
    chars = sorted({c for c in "임종석이서울은수도다"})
    vocab = [(p, 0.0 if p.startswith("<") else -1.0) for p in pieces]
    vocab += [(c, -5.0) for c in chars if c not in pieces]
    backend = HFTokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace("▁", prepend_scheme="always", split=True)
    return Tokenizer(backend)


def assert_offsets_exact(tokenizer: Tokenizer, text: str, continuation: str) -> None:
    """Every non-unknown token's span is exactly the characters it spells, in order."""
    encoding = tokenizer.encode(text)
    assert encoding.ids, text
    previous_end = 0
    for token, (start, end) in zip(encoding.tokens, encoding.offsets, strict=True):
        assert previous_end <= start <= end <= len(text), (text, token, start, end)
        previous_end = end
        if token == tokenizer.specials.unk:
            continue
        assert text[start:end] == token.removeprefix(continuation), (text, token, start, end)


def test_wordpiece_offsets_map_back_to_exact_korean_substrings(wordpiece):
    for text in TEXTS:
        assert_offsets_exact(wordpiece, text, "##")


def test_wordpiece_offsets_on_korquad_contexts(korquad_dev, tmp_path):
    contexts = korquad_contexts(korquad_dev, 8)
    tokenizer = make_wordpiece(contexts, tmp_path)
    for text in contexts:
        assert_offsets_exact(tokenizer, text, "##")
        assert tokenizer.unk_id not in tokenizer.encode(text).ids


def test_wordpiece_covers_every_character(wordpiece):
    for text in TEXTS:
        encoding = wordpiece.encode(text)
        covered = "".join(text[start:end] for start, end in encoding.offsets)
        assert covered == "".join(text.split())


def test_wordpiece_splits_korean_words_into_pieces(wordpiece):
    encoding = wordpiece.encode(KOREAN)
    assert encoding.tokens == [
        "임종석", "##이", "1989", "##년", "2", "##월", "1", "##5", "##일", "##에"
    ]
    assert encoding.offsets[:4] == [(0, 3), (3, 4), (5, 9), (9, 10)]
    assert wordpiece.decode(encoding.ids) == "임종석이 1989년 2월 15일에"


def test_no_lower_casing_and_hangul_stays_in_syllables(wordpiece):
    tokens = [t for text in TEXTS for t in wordpiece.encode(text).tokens]
    assert "Seoul" in tokens and "KTX" in tokens  # a lower-casing normalizer would lose these
    hangul = [c for token in tokens for c in token if unicodedata.name(c, "").startswith("HANGUL")]
    assert hangul and all(ord(c) in HANGUL_SYLLABLES for c in hangul)
    assert not any(ord(c) in HANGUL_JAMO for token in tokens for c in token)  # no NFD


def test_bert_pair_layout(wordpiece):
    assert wordpiece.specials == BERT_SPECIALS and wordpiece.pair_overhead == 3
    q, c = wordpiece.encode("임종석이").ids, wordpiece.encode("서울 1989년").ids
    input_ids, token_types, second_start = wordpiece.build_pair(q, c)
    cls, sep = wordpiece.cls_id, wordpiece.sep_id
    assert input_ids == [cls, *q, sep, *c, sep]
    assert token_types == [0] * (len(q) + 2) + [1] * (len(c) + 1)
    assert input_ids[second_start : second_start + len(c)] == c
    # The backend's post-processor (what tokenizer.json users get) agrees.
    both = wordpiece.backend.encode("임종석이", "서울 1989년")
    assert both.ids == input_ids and both.type_ids == token_types


def test_xlmr_pair_layout(xlmr):
    assert xlmr.specials == XLMR_SPECIALS and xlmr.pair_overhead == 4
    q, c = xlmr.encode("임종석이").ids, xlmr.encode("서울은 수도다").ids
    input_ids, token_types, second_start = xlmr.build_pair(q, c)
    bos, eos = xlmr.cls_id, xlmr.sep_id
    assert (bos, eos) == (0, 2)
    assert input_ids == [bos, *q, eos, eos, *c, eos]
    assert token_types == [0] * len(input_ids)
    assert input_ids[second_start : second_start + len(c)] == c
    both = xlmr.backend.encode("임종석이", "서울은 수도다")
    assert both.ids == input_ids and both.type_ids == token_types


def test_unigram_offsets_drop_the_metaspace(xlmr):
    text = " 임종석이 서울은  수도다"
    encoding = xlmr.encode(text)
    assert encoding.tokens == ["▁임종석", "이", "▁서울", "은", "▁", "▁수도", "다"]
    assert_offsets_exact(xlmr, text, "▁")
    assert text[slice(*encoding.offsets[0])] == "임종석"


def test_save_and_reload_round_trip(wordpiece, tmp_path):
    wordpiece.save(tmp_path)
    assert (tmp_path / "vocab.txt").exists() and (tmp_path / "tokenizer.json").exists()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["do_lower_case"] is False and config["tokenizer_class"] == "BertTokenizerFast"
    for loaded in (Tokenizer.from_pretrained(tmp_path),
                   Tokenizer.from_pretrained(tmp_path / "vocab.txt")):
        assert loaded.encode(KOREAN) == wordpiece.encode(KOREAN)
        assert loaded.build_pair([5], [6]) == wordpiece.build_pair([5], [6])


def test_transformers_reads_the_saved_files_the_same_way(wordpiece, tmp_path):
    transformers = pytest.importorskip("transformers")
    wordpiece.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    ours_ids, ours_types, _ = wordpiece.build_pair(
        wordpiece.encode("Seoul은 어디?").ids, wordpiece.encode(KOREAN).ids)
    theirs = hf("Seoul은 어디?", KOREAN)
    assert theirs["input_ids"] == ours_ids and theirs["token_type_ids"] == ours_types


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or vocab.txt"):
        Tokenizer.from_pretrained(tmp_path)
    bad = tmp_path / "vocab.txt"
    bad.write_text("[CLS]\n[SEP]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.txt: a WordPiece vocabulary needs an \\[UNK\\]"):
        Tokenizer.from_vocab(bad)


def test_piece_weights_favour_rare_pieces(xlmr, wordpiece):
    weights = xlmr.piece_weights()  # −log p of the Unigram model; specials weigh nothing
    assert weights[xlmr.token_to_id("▁임종석")] == 1.0 and weights[xlmr.token_to_id("종")] == 5.0
    assert [weights[i] for i in (xlmr.cls_id, xlmr.sep_id, xlmr.pad_id, xlmr.unk_id)] == [0] * 4
    flat = wordpiece.piece_weights()  # WordPiece keeps no frequencies: every piece alike
    assert len(flat) == wordpiece.vocab_size
    assert flat[wordpiece.token_to_id("임종석")] == flat[wordpiece.token_to_id("##년")] == 1.0
    assert flat[wordpiece.cls_id] == 0.0
