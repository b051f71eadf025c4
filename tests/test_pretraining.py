"""`korqa pretrain`: sentence pairs, masking statistics, the training loop, checkpoints, resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from korqa.cli import main
from korqa.modeling import BertConfig, BertForPreTraining, BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model, load_pretrained
from korqa.pretraining.config import PairConfig
from korqa.pretraining.data import (
    InstanceStream,
    Vocabulary,
    collate,
    create_pairs,
    mask_tokens,
    split_sentences,
)
from korqa.pretraining.pretrain import PretrainConfig, model_config, pretrain, sparse_forward
from korqa.pretraining.vocab import iter_corpus, train_vocab
from korqa.tokenization import Tokenizer

# Twelve short articles of several sentences each: enough for pairs across documents.
ARTICLES = [
    "서울은 대한민국의 수도이다. 인구는 약 천만 명이다. 한강이 도시를 가로지른다.",
    "부산은 대한민국 제2의 도시이다. 해운대 해수욕장이 유명하다. 부산항은 큰 항구이다.",
    "세종대왕은 조선의 제4대 국왕이다. 1443년에 훈민정음을 창제하였다. 백성을 사랑하였다.",
    "이순신은 조선 중기의 무신이다. 거북선을 이용하였다. 왜군을 여러 번 물리쳤다.",
    "한라산은 제주도에 있는 산이다. 높이는 1947미터이다. 정상에 백록담이 있다.",
    "김치는 한국의 전통 음식이다. 배추와 무를 소금에 절인다. 양념을 하여 발효시킨다.",
    "경주는 신라의 수도였다. 불국사와 석굴암이 있다. 많은 관광객이 찾는 역사 도시이다.",
    "태권도는 한국의 전통 무술이다. 2000년 시드니 올림픽에서 정식 종목이 되었다. 발차기가 많다.",
    "한글날은 10월 9일이다. 훈민정음의 반포를 기념한다. 국경일로 정해져 있다.",
    "독도는 동해에 있는 섬이다. 동도와 서도로 이루어져 있다. 주변 바다는 어장이 풍부하다.",
    "지리산은 남부 지방의 큰 산이다. 여러 도에 걸쳐 있다. 국립공원으로 지정되었다.",
    "한강은 서울을 흐르는 강이다. 여러 다리가 놓여 있다. 강변에는 공원이 많다.",
]
SPECIALS = frozenset(range(5))  # [PAD] [UNK] [CLS] [SEP] [MASK]
TINY_RUN = dict(config="tiny", batch_size=8, max_seq_length=48, lr=2e-3, warmup=0.1,
                doc_buffer=4, instance_buffer=16, device="cpu", threads=1, progress=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A kowiki-style shard of the articles (two paragraphs each) and a vocabulary trained on it."""
    root = tmp_path_factory.mktemp("pretraining")
    lines = []
    for i, text in enumerate(ARTICLES):
        first, second = text.split(". ", 1)
        doc = {"id": str(i), "title": f"문서{i}", "paragraphs": [first + ".", second]}
        lines.append(json.dumps(doc, ensure_ascii=False))
    (root / "wiki.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    vocab = train_vocab(iter_corpus([root / "wiki.jsonl"]), size=300, min_frequency=1)
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    Tokenizer.from_vocab(root / "vocab.txt").save(root / "tokenizer")
    return root


@pytest.fixture(scope="module")
def tokenizer(workspace) -> Tokenizer:
    return Tokenizer.from_pretrained(workspace / "tokenizer")


# ---- sentences and pairs -------------------------------------------------------------------


def test_sentences_split_after_korean_endings_only():
    text = "그는 1950년에 태어났다. 이후 U.S. 육군에 입대했다! 정말요? 1. 첫째 항목(영어). 끝"
    assert split_sentences(text) == ["그는 1950년에 태어났다.", "이후 U.S. 육군에 입대했다!",
                                     "정말요?", "1. 첫째 항목(영어).", "끝"]
    assert split_sentences("“그렇다.” 그가 말했다.") == ["“그렇다.”", "그가 말했다."]
    assert split_sentences("   ") == []


def _document(doc: int, sentences: int = 6, length: int = 5) -> list[list[int]]:
    # Token ids that encode where they come from: document, sentence, position.
    return [[doc * 1000 + s * 10 + j for j in range(length)] for s in range(sentences)]


def _contiguous(tokens: list[int], document: list[list[int]]) -> bool:
    flat = [t for sentence in document for t in sentence]
    start = flat.index(tokens[0]) if tokens and tokens[0] in flat else -1
    return start >= 0 and flat[start:start + len(tokens)] == tokens


@pytest.mark.parametrize("sop", [False, True])
def test_pairs_are_half_actual_next_and_respect_the_length(sop):
    config = PairConfig(max_seq_length=24, sop=sop)
    documents = [_document(d, sentences=random.Random(d).randint(1, 8)) for d in range(40)]
    others = list(enumerate(documents))
    rng = random.Random(0)
    pairs = [(d, pair) for d, document in enumerate(documents) for _ in range(20)
             for pair in create_pairs(document, d, others, config, rng)]
    assert len(pairs) > 1000
    random_share = sum(pair[2] for _, pair in pairs) / len(pairs)
    assert 0.45 < random_share < 0.55
    for d, (tokens_a, tokens_b, is_random, b_doc) in pairs:
        assert tokens_a and tokens_b and len(tokens_a) + len(tokens_b) <= 24 - 3
        assert all(t // 1000 == d for t in tokens_a)
        if is_random and not sop:  # B from another document
            assert b_doc != d and all(t // 1000 == b_doc for t in tokens_b)
        else:
            assert b_doc == d and all(t // 1000 == d for t in tokens_b)
        if not is_random:  # B is what follows A (truncation only trims the outer ends)
            assert tokens_a[-1] < tokens_b[0]
        elif sop:  # swapped: A is what follows B
            assert tokens_b[-1] < tokens_a[0]


def test_actual_next_pairs_are_consecutive_text_when_nothing_is_trimmed():
    config = PairConfig(max_seq_length=200, short_seq_prob=0.0)
    document = _document(3, sentences=10)
    rng = random.Random(1)
    for _ in range(50):
        for tokens_a, tokens_b, is_random, _ in create_pairs(document, 3, [], config, rng):
            assert not is_random  # no other document to draw from: always the actual next
            assert _contiguous(tokens_a + tokens_b, document)


def test_instances_have_the_bert_layout(workspace, tokenizer):
    config = PairConfig(max_seq_length=40, doc_buffer=4, instance_buffer=8)
    stream = iter(InstanceStream([workspace / "wiki.jsonl"], tokenizer, config, seed=3))
    instances = [next(stream) for _ in range(400)]
    assert 0.4 < sum(i.is_random_next for i in instances) / len(instances) < 0.6
    for instance in instances:
        ids, types = instance.input_ids, instance.token_type_ids
        assert len(ids) == len(types) <= 40
        seps = [k for k, t in enumerate(ids) if t == tokenizer.sep_id]
        assert ids[0] == tokenizer.cls_id and len(seps) == 2 and seps[1] == len(ids) - 1
        assert types == [0] * (seps[0] + 1) + [1] * (len(ids) - seps[0] - 1)
        assert all(ids[p] not in (tokenizer.cls_id, tokenizer.sep_id)
                   for p in instance.masked_positions)
        assert (instance.a_doc != instance.b_doc) == instance.is_random_next


def test_the_stream_is_reproducible(workspace, tokenizer):
    def first(n: int, seed: int) -> list:
        stream = iter(InstanceStream([workspace / "wiki.jsonl"], tokenizer, PairConfig(),
                                     seed=seed))
        return [next(stream) for _ in range(n)]

    assert first(60, 0) == first(60, 0)  # spans several passes over the twelve articles
    assert first(60, 0) != first(60, 1)


# ---- masking -------------------------------------------------------------------------------


def _sequences(rng: random.Random, count: int, vocab: Vocabulary) -> list[list[int]]:
    return [[2, *(rng.randrange(5, vocab.size) for _ in range(60)), 3,
             *(rng.randrange(5, vocab.size) for _ in range(40)), 3] for _ in range(count)]


def test_masking_statistics():
    vocab = Vocabulary(size=1000, mask_id=4, special_ids=SPECIALS, continuation_ids=frozenset())
    config = PairConfig(max_seq_length=128)
    rng = random.Random(0)
    picked = masked = replaced = kept = candidates = 0
    for ids in _sequences(rng, 2000, vocab):
        output, positions, labels = mask_tokens(ids, vocab, config, rng)
        assert positions == sorted(set(positions))
        assert labels == [ids[p] for p in positions]
        assert all(ids[p] not in SPECIALS for p in positions)  # never [CLS]/[SEP]
        assert all(output[k] == ids[k] for k in range(len(ids)) if k not in set(positions))
        candidates += sum(t not in SPECIALS for t in ids)
        picked += len(positions)
        for p in positions:
            if output[p] == vocab.mask_id:
                masked += 1
            elif output[p] == ids[p]:
                kept += 1
            else:
                replaced += 1
                assert output[p] not in SPECIALS
    assert picked / candidates == pytest.approx(0.15, abs=0.005)
    assert masked / picked == pytest.approx(0.8, abs=0.015)
    assert replaced / picked == pytest.approx(0.1, abs=0.01)
    assert kept / picked == pytest.approx(0.1, abs=0.01)


def test_whole_word_masking_masks_every_piece_of_a_word():
    # Ids 500 and above are "##" continuation pieces.
    vocab = Vocabulary(size=1000, mask_id=4, special_ids=SPECIALS,
                       continuation_ids=frozenset(range(500, 1000)))
    config = PairConfig(max_seq_length=128, whole_word_mask=True)
    rng = random.Random(1)
    picked = candidates = 0
    for ids in _sequences(rng, 500, vocab):
        _, positions, _ = mask_tokens(ids, vocab, config, rng)
        chosen = set(positions)
        words, word = [], []
        for k, token in enumerate(ids):
            if token in SPECIALS or token < 500:
                if word:
                    words.append(word)
                word = [] if token in SPECIALS else [k]
            else:
                word.append(k)
        for word in words:
            assert set(word) <= chosen or not set(word) & chosen
        assert any(len(word) > 1 and set(word) <= chosen for word in words)
        picked += len(positions)
        candidates += sum(t not in SPECIALS for t in ids)
    assert picked / candidates == pytest.approx(0.15, abs=0.02)


# ---- the model and the loop ----------------------------------------------------------------


def dense_mlm_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sparse targets as HF's [B, L] `labels` (-100 where nothing is predicted)."""
    labels = torch.full_like(batch["input_ids"], -100)
    labels[batch["mlm_rows"], batch["mlm_columns"]] = batch["mlm_labels"]
    return labels


def test_sparse_forward_gives_the_models_own_loss(workspace, tokenizer):
    torch.manual_seed(0)
    model = BertForPreTraining(model_config("tiny", tokenizer)).eval()
    stream = iter(InstanceStream([workspace / "wiki.jsonl"], tokenizer,
                                 PairConfig(max_seq_length=40), seed=0))
    batch = collate([next(stream) for _ in range(6)], tokenizer.pad_id)
    mlm_logits, nsp_logits = sparse_forward(model, batch)
    sparse = (torch.nn.functional.cross_entropy(mlm_logits, batch["mlm_labels"])
              + torch.nn.functional.cross_entropy(nsp_logits, batch["nsp_labels"]))
    full = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                 masked_lm_labels=dense_mlm_labels(batch), next_sentence_label=batch["nsp_labels"])
    torch.testing.assert_close(sparse, full)


@pytest.fixture(scope="module")
def trained(workspace) -> Path:
    out = workspace / "run"
    code = main(["pretrain", "--corpus", str(workspace / "wiki.jsonl"), "--config", "tiny",
                 "--tokenizer", str(workspace / "tokenizer"), "--out", str(out),
                 "--max-steps", "40", "--batch-size", "8", "--max-seq-length", "48",
                 "--lr", "2e-3", "--warmup", "0.1", "--doc-buffer", "4", "--instance-buffer",
                 "16", "--whole-word-mask", "--device", "cpu", "--threads", "1",
                 "--save-every", "20", "--no-progress"])
    assert code == 0
    return out


def test_mlm_loss_falls_and_the_run_is_recorded(trained):
    rows = [json.loads(line) for line in (trained / "log.jsonl").open()]
    train = [row for row in rows if row["kind"] == "train"]
    assert [row["step"] for row in train] == list(range(1, 41))
    first = sum(row["mlm_loss"] for row in train[:5]) / 5
    last = sum(row["mlm_loss"] for row in train[-5:]) / 5
    assert first > 5.0  # about log(300) for a fresh model
    assert last < first - 0.7  # towards the corpus's unigram entropy, ~4.5, within 40 steps
    assert sum(row["mlm_acc"] for row in train[-5:]) > sum(row["mlm_acc"] for row in train[:5])
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 40
    assert summary["tokens_seen"] == train[-1]["tokens_seen"] > 40 * 8 * 10
    assert summary["parameters"] > 0 and summary["mlm_acc_last40"] > 0
    assert (trained / "curves.png").stat().st_size > 10_000


def test_final_checkpoint_loads_as_reader_and_in_transformers(trained):
    transformers = pytest.importorskip("transformers")
    final = trained / "final"
    tokenizer = Tokenizer.from_pretrained(final)  # `korqa train --model final` needs it beside
    ids, types, _ = tokenizer.build_pair(tokenizer.encode("서울은 수도이다.").ids,
                                         tokenizer.encode("한강이 흐른다.").ids)
    input_ids, token_type_ids = torch.tensor([ids]), torch.tensor([types])
    mask = torch.ones_like(input_ids)

    ours = load_model(BertForPreTraining, final)
    theirs = transformers.BertForPreTraining.from_pretrained(final).eval()
    with torch.no_grad():
        scores, nsp = ours(input_ids, token_type_ids, mask)
        output = theirs(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask)
    torch.testing.assert_close(scores, output.prediction_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(nsp, output.seq_relationship_logits, atol=1e-4, rtol=1e-4)

    reader, report = load_pretrained(BertForQuestionAnswering, final)
    assert report.missing_keys == ["qa_outputs.weight", "qa_outputs.bias"]
    with torch.no_grad():
        encoded, _ = ours.bert(input_ids, token_type_ids, mask, output_all_encoded_layers=False)
        read, _ = reader.bert(input_ids, token_type_ids, mask, output_all_encoded_layers=False)
    torch.testing.assert_close(encoded[-1], read[-1])


def test_resume_continues_exactly(workspace):
    base = dict(corpus=[str(workspace / "wiki.jsonl")], tokenizer=str(workspace / "tokenizer"),
                max_steps=6, save_every=100, sop=True, **TINY_RUN)
    pretrain(PretrainConfig(out=str(workspace / "straight"), **base))
    pretrain(PretrainConfig(out=str(workspace / "resumed"), stop_at_step=3, **base))
    assert not (workspace / "resumed" / "final").exists()
    with pytest.raises(ValueError, match="already holds a run"):
        pretrain(PretrainConfig(out=str(workspace / "resumed"), **base))
    with pytest.raises(ValueError, match="lr was"):
        pretrain(PretrainConfig(out=str(workspace / "resumed"), resume=True,
                                **{**base, "lr": 1e-3}))
    pretrain(PretrainConfig(out=str(workspace / "resumed"), resume=True, **base))

    straight = load_file(str(workspace / "straight" / "final" / "model.safetensors"))
    resumed = load_file(str(workspace / "resumed" / "final" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)

    def losses(run: str) -> list[float]:
        rows = [json.loads(line) for line in (workspace / run / "log.jsonl").open()]
        return [row["loss"] for row in rows if row["kind"] == "train"]

    assert losses("resumed") == losses("straight")


@pytest.mark.slow
def test_two_processes_follow_one_at_the_same_global_batch(workspace, tmp_path, torchrun):
    # Dropout off: two processes with 4 sequences each see the gradients that one process
    # accumulating two micro-batches of 4 does (both read the same stream).
    config = tmp_path / "config.json"
    tiny = BertConfig(vocab_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    config.write_text(json.dumps(tiny.to_dict()))
    run = {**TINY_RUN, "config": str(config), "batch_size": 4, "max_steps": 4}
    base = dict(corpus=[str(workspace / "wiki.jsonl")], tokenizer=str(workspace / "tokenizer"))
    pretrain(PretrainConfig(out=str(tmp_path / "one"), grad_accum=2, **base, **run))
    torchrun(2, "pretrain", "--corpus", base["corpus"][0], "--tokenizer", base["tokenizer"],
             "--config", str(config), "--out", str(tmp_path / "two"), "--max-steps", "4",
             "--batch-size", "4", "--max-seq-length", "48", "--lr", "2e-3", "--warmup", "0.1",
             "--doc-buffer", "4", "--instance-buffer", "16", "--device", "cpu",
             "--threads", "1", "--no-progress")

    def rows(run: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / run / "log.jsonl").open()]

    one = [row for row in rows("one") if row["kind"] == "train"]
    two = [row for row in rows("two") if row["kind"] == "train"]
    assert [row["loss"] for row in two] == pytest.approx([row["loss"] for row in one], abs=1e-5)
    assert [row["tokens_seen"] for row in two] == [row["tokens_seen"] for row in one]
    assert rows("two")[0]["global_batch"] == 8 and rows("two")[0]["world_size"] == 2
    a = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "final" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
