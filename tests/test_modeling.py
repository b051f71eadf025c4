"""The BERT network against transformers' on random tiny configs, plus config and init checks."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from korqa.modeling import BertConfig, BertForPreTraining, BertForQuestionAnswering, BertModel

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=64)
B, L = 3, 11
LENGTHS = [11, 7, 4]  # rows 2 and 3 are padded


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (biases and LayerNorms too), so no term can hide behind a 0 or 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


def twins(our_cls, hf_cls, attn: str = "sdpa", **overrides):
    """Our model with random weights and transformers' with the very same state dict."""
    config = BertConfig(**{**TINY, **overrides})
    ours = randomize(our_cls(config))
    hf = hf_cls(transformers.BertConfig(**config.to_dict(), attn_implementation=attn)).eval()
    result = hf.load_state_dict(ours.state_dict(), strict=False)
    # Only HF's alias of the MLM bias may be absent from ours; everything else maps one-to-one.
    assert set(result.missing_keys) <= {"cls.predictions.decoder.bias"}
    assert result.unexpected_keys == []
    return ours, hf


def inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, TINY["vocab_size"], (B, L), generator=gen)
    types = torch.zeros(B, L, dtype=torch.long)
    types[:, 5:] = 1  # question | context
    mask = (torch.arange(L)[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    ids[mask == 0] = 0
    return dict(input_ids=ids, token_type_ids=types, attention_mask=mask)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("act", ["gelu", "gelu_new", "gelu_pytorch_tanh"])
def test_bert_model_matches_transformers_layer_by_layer(act, attn):
    ours, hf = twins(BertModel, transformers.BertModel, attn=attn, hidden_act=act)
    x = inputs()
    with torch.no_grad():
        layers, pooled = ours(**x)
        ref = hf(**x, output_hidden_states=True)
    assert len(layers) == TINY["num_hidden_layers"]
    for mine, theirs in zip(layers, ref.hidden_states[1:], strict=True):
        assert max_diff(mine, theirs) <= 1e-5
    assert max_diff(pooled, ref.pooler_output) <= 1e-5


def test_default_token_types_and_mask_match_transformers():
    ours, hf = twins(BertModel, transformers.BertModel)
    ids = inputs()["input_ids"]
    with torch.no_grad():
        layers, pooled = ours(ids)
        ref = hf(ids)
    assert max_diff(layers[-1], ref.last_hidden_state) <= 1e-5
    assert max_diff(pooled, ref.pooler_output) <= 1e-5


def test_question_answering_logits_and_loss_match_transformers():
    ours, hf = twins(BertForQuestionAnswering, transformers.BertForQuestionAnswering)
    x = inputs()
    # The third answer lies beyond the window (as after truncation): clamped to L and ignored.
    starts, ends = torch.tensor([2, 6, 40]), torch.tensor([4, 6, 45])
    with torch.no_grad():
        start, end = ours(**x)
        ref = hf(**x)
        loss = ours(**x, start_positions=starts, end_positions=ends)
        ref_loss = hf(**x, start_positions=starts, end_positions=ends).loss
    assert start.shape == end.shape == (B, L)
    assert max_diff(start, ref.start_logits) <= 1e-5
    assert max_diff(end, ref.end_logits) <= 1e-5
    assert loss.dim() == 0 and abs(loss.item() - ref_loss.item()) <= 1e-5


def test_question_answering_loss_ignores_positions_outside_the_window():
    ours, _ = twins(BertForQuestionAnswering, transformers.BertForQuestionAnswering)
    x = inputs()
    with torch.no_grad():
        start, end = ours(**x)
        loss = ours(**x, start_positions=torch.tensor([2, 6, 99]),
                    end_positions=torch.tensor([4, 6, 99]))
    by_hand = sum(torch.nn.functional.cross_entropy(logits[:2], torch.tensor(gold))
                  for logits, gold in ((start, [2, 6]), (end, [4, 6]))) / 2
    assert abs(loss.item() - by_hand.item()) <= 1e-6


def test_pretraining_scores_and_loss_match_transformers():
    ours, hf = twins(BertForPreTraining, transformers.BertForPreTraining)
    x = inputs()
    labels = torch.full((B, L), -100)
    labels[0, 3], labels[1, 1], labels[2, 2] = 17, 42, 5
    nsp = torch.tensor([0, 1, 0])
    with torch.no_grad():
        scores, nsp_scores = ours(**x)
        ref = hf(**x)
        loss = ours(**x, masked_lm_labels=labels, next_sentence_label=nsp)
        ref_loss = hf(**x, labels=labels, next_sentence_label=nsp).loss
    assert scores.shape == (B, L, TINY["vocab_size"]) and nsp_scores.shape == (B, 2)
    assert max_diff(scores, ref.prediction_logits) <= 1e-5
    assert max_diff(nsp_scores, ref.seq_relationship_logits) <= 1e-5
    assert abs(loss.item() - ref_loss.item()) <= 1e-5


def test_state_dict_keys_are_transformers_keys_one_to_one():
    config = BertConfig(**TINY)
    pairs = [(BertModel, transformers.BertModel),
             (BertForQuestionAnswering, transformers.BertForQuestionAnswering),
             (BertForPreTraining, transformers.BertForPreTraining)]
    for ours, theirs in pairs:
        hf_keys = set(theirs(transformers.BertConfig(**config.to_dict())).state_dict())
        assert set(ours(config).state_dict()) == hf_keys - {"cls.predictions.decoder.bias"}


def test_mlm_decoder_is_tied_to_word_embeddings():
    model = BertForPreTraining(BertConfig(**TINY))
    word = model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.weight is word
    assert len(list(model.parameters())) == len(model.state_dict()) - 1


def test_last_layer_only_equals_last_of_all_layers():
    model = randomize(BertModel(BertConfig(**TINY)))
    x = inputs()
    with torch.no_grad():
        every, pooled = model(**x)
        last, pooled_last = model(**x, output_all_encoded_layers=False)
    assert len(last) == 1
    assert torch.equal(last[0], every[-1]) and torch.equal(pooled, pooled_last)


def test_padding_does_not_change_real_tokens():
    model = randomize(BertModel(BertConfig(**TINY)))
    x = inputs()
    n = LENGTHS[2]
    with torch.no_grad():
        batch, _ = model(**x, output_all_encoded_layers=False)
        alone, _ = model(x["input_ids"][2:, :n], x["token_type_ids"][2:, :n])
    assert max_diff(batch[-1][2, :n], alone[-1][0]) <= 1e-5


def test_sequence_longer_than_positions_is_refused():
    model = BertModel(BertConfig(**TINY))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, TINY["max_position_embeddings"] + 1, dtype=torch.long))


def test_init_is_berts():
    model = BertForQuestionAnswering(BertConfig(**{**TINY, "hidden_size": 64,
                                                   "num_attention_heads": 4}))
    word = model.bert.embeddings.word_embeddings.weight
    assert abs(word[1:].std().item() - 0.02) < 0.002
    assert torch.equal(word[0], torch.zeros(64))  # the [PAD] row, as HF
    ln = model.bert.encoder.layer[0].output.LayerNorm
    assert torch.equal(ln.weight, torch.ones(64)) and torch.equal(ln.bias, torch.zeros(64))
    assert torch.equal(model.qa_outputs.bias, torch.zeros(2))
    assert abs(model.qa_outputs.weight.std().item() - 0.02) < 0.01


def test_config_json_round_trip_is_read_by_transformers(tmp_path):
    config = BertConfig(**TINY, hidden_act="gelu_new")
    config.to_json_file(tmp_path / "config.json", architectures=["BertForQuestionAnswering"])
    assert BertConfig.from_json_file(tmp_path / "config.json") == config
    hf = transformers.AutoConfig.from_pretrained(tmp_path)
    assert hf.model_type == "bert" and hf.architectures == ["BertForQuestionAnswering"]
    assert {k: getattr(hf, k) for k in config.to_dict()} == config.to_dict()


def test_config_ignores_unknown_keys(tmp_path):
    values = {**TINY, "transformers_version": "4.57.6", "use_cache": True, "dtype": "float32"}
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert BertConfig.from_json_file(tmp_path / "config.json") == BertConfig(**TINY)


@pytest.mark.parametrize("field,value", [("hidden_act", "swish"), ("num_attention_heads", 5),
                                         ("vocab_size", 0), ("layer_norm_eps", "tiny"),
                                         ("hidden_dropout_prob", 1.5), ("pad_token_id", 100),
                                         ("position_embedding_type", "relative_key")])
def test_config_bad_value_names_field_and_file(tmp_path, field, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TINY, field: value}))
    with pytest.raises(ValueError, match=field) as err:
        BertConfig.from_json_file(path)
    assert str(path) in str(err.value)
