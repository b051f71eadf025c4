"""`korqa vocab`: a cased WordPiece vocabulary that keeps Hangul syllables whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from korqa.cli import main
from korqa.pretraining.vocab import SPECIAL_TOKENS, iter_corpus, train_vocab, vocab_stats
from korqa.tokenization import Tokenizer

DOCUMENTS = [
    ["서울은 대한민국의 수도이다. 서울에는 한강이 흐른다.", "Seoul is the capital of Korea."],
    ["부산은 대한민국 제2의 도시이다. 부산에는 해운대가 있다.", "SEOUL and Busan are cities."],
    ["세종대왕은 훈민정음을 창제하였다. 한글은 세종대왕이 만들었다."],
    ["한라산은 제주도에 있는 산이다. 한라산 정상에는 백록담이 있다.", "Jeju Island 제주도"],
]


def _is_jamo(char: str) -> bool:
    # Conjoining jamo (what NFD makes of a syllable) and compatibility jamo.
    return "\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vocab")
    lines = [json.dumps({"id": str(i), "title": f"t{i}", "paragraphs": doc}, ensure_ascii=False)
             for i, doc in enumerate(DOCUMENTS * 5)]
    (root / "wiki.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "extra.txt").write_text("독도는 동해에 있다.\n\n김치는 발효 음식이다.\n",
                                    encoding="utf-8")
    squad = {"data": [{"title": "서울", "paragraphs": [{
        "context": "서울은 대한민국의 수도이다.",
        "qas": [{"id": "q1", "question": "대한민국의 수도는?",
                 "answers": [{"text": "서울", "answer_start": 0}]}]}]}]}
    (root / "squad.json").write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    return root


def test_vocabulary_keeps_hangul_syllables_and_case(corpus):
    vocab = train_vocab(iter_corpus([corpus]), size=400, min_frequency=1)
    assert vocab[:5] == SPECIAL_TOKENS  # [PAD] = 0, as BertConfig.pad_token_id expects
    assert not any(_is_jamo(char) for token in vocab for char in token)
    hangul = {c for doc in DOCUMENTS for text in doc for c in text if "가" <= c <= "힣"}
    assert all(c in vocab or f"##{c}" in vocab for c in hangul)  # every syllable, whole
    assert {"S", "E", "O", "U", "L"} <= set(vocab)  # from "SEOUL": case is kept


def test_corpus_reading_spreads_max_docs_over_files(corpus):
    texts = list(iter_corpus([corpus / "wiki.jsonl", corpus / "extra.txt"], max_docs=4))
    # Two documents from each file: two kowiki documents and both .txt documents.
    assert texts == [*DOCUMENTS[0], *DOCUMENTS[1], "독도는 동해에 있다.", "김치는 발효 음식이다."]


def test_cli_writes_a_tokenizer_korqa_loads(corpus, tmp_path, capsys):
    out = tmp_path / "wp"
    code = main(["vocab", "--corpus", str(corpus), "--size", "300", "--min-frequency", "1",
                 "--out", str(out), "--eval-data", str(corpus / "squad.json"), "--no-progress"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    stats = report["eval:squad.json"]
    assert stats["texts"] == 2 and 0 <= stats["unk_share"] < 0.2 and stats["pieces_per_word"] >= 1
    assert (out / "vocab.txt").is_file() and (out / "tokenizer.json").is_file()
    for tokenizer in (Tokenizer.from_pretrained(out), Tokenizer.from_vocab(out / "vocab.txt")):
        encoding = tokenizer.encode("Seoul은 대한민국의 수도이다.")
        assert tokenizer.unk_id not in encoding.ids
        assert encoding.tokens[0].startswith("S")  # cased: not lower-cased to "s"
        assert not any(_is_jamo(char) for token in encoding.tokens for char in token)
        assert tokenizer.decode(encoding.ids).replace(" ", "") == "Seoul은대한민국의수도이다."
        assert tokenizer.mask_id == 4 and tokenizer.pad_id == 0


def test_stats_count_unknown_pieces_and_words(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join([*SPECIAL_TOKENS, "서", "##울", "수", "##도"]),
                                        encoding="utf-8")
    tokenizer = Tokenizer.from_vocab(tmp_path / "vocab.txt")
    stats = vocab_stats(tokenizer, ["서울 수도", "X"])
    assert (stats["words"], stats["pieces"]) == (3, 5)
    assert stats["unk_share"] == pytest.approx(1 / 5)
    assert stats["unk_word_share"] == pytest.approx(1 / 3)
    assert stats["pieces_per_word"] == pytest.approx(5 / 3)
