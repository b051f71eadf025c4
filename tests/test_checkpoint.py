"""HF-format checkpoints: both ways with transformers, key spellings, hub names, int8 blocks."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from korqa.modeling import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertModel,
    checkpoint,
    dequantize,
    quantize_int8_blockwise,
)
from korqa.modeling.checkpoint import load_model, load_pretrained, save_pretrained

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=64)
PAIRS = [(BertModel, transformers.BertModel),
         (BertForQuestionAnswering, transformers.BertForQuestionAnswering),
         (BertForPreTraining, transformers.BertForPreTraining)]


def random_model(cls, seed: int = 0, **overrides):
    model = cls(BertConfig(**{**TINY, **overrides}))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, TINY["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    types = torch.zeros(2, 9, dtype=torch.long)
    types[:, 4:] = 1
    return dict(input_ids=ids, token_type_ids=types, attention_mask=mask)


def our_outputs(model) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(**batch())
    if isinstance(model, BertModel):
        return [out[0][-1], out[1]]
    return list(out)


def hf_outputs(model) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(**batch())
    if isinstance(model, transformers.BertModel):
        return [out.last_hidden_state, out.pooler_output]
    if isinstance(model, transformers.BertForQuestionAnswering):
        return [out.start_logits, out.end_logits]
    return [out.prediction_logits, out.seq_relationship_logits]


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x - y).abs().max().item() <= 1e-5


@pytest.mark.parametrize("ours,theirs", PAIRS)
def test_saved_by_us_loads_in_transformers_with_no_missing_keys(tmp_path, ours, theirs):
    model = random_model(ours)
    save_pretrained(model, tmp_path)
    hf, info = theirs.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert_same(our_outputs(model), hf_outputs(hf.eval()))
    # The file is fp32 with HF names: plain for BertModel, `bert.`-prefixed for the heads.
    keys = load_file(tmp_path / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in keys.values())
    assert ("bert.embeddings.word_embeddings.weight" in keys) == (ours is not BertModel)


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("ours,theirs", PAIRS)
def test_saved_by_transformers_loads_in_ours(tmp_path, ours, theirs, safe):
    torch.manual_seed(0)
    hf = theirs(transformers.BertConfig(**TINY)).eval()
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
    model, report = load_pretrained(ours, tmp_path)
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert not model.training
    assert_same(our_outputs(model), hf_outputs(hf))


def test_encoder_checkpoint_into_qa_leaves_head_fresh_and_reports_it(tmp_path):
    encoder = random_model(BertModel)
    save_pretrained(encoder, tmp_path)
    qa, report = load_pretrained(BertForQuestionAnswering, tmp_path)
    assert report.missing_keys == ["qa_outputs.weight", "qa_outputs.bias"]
    assert report.unexpected_keys == ["pooler.dense.bias", "pooler.dense.weight"]
    assert torch.equal(qa.qa_outputs.bias, torch.zeros(2))  # BERT init, not garbage
    assert torch.equal(qa.bert.embeddings.word_embeddings.weight,
                       encoder.embeddings.word_embeddings.weight)


def test_head_checkpoint_into_encoder_drops_bert_prefix(tmp_path):
    pretraining = random_model(BertForPreTraining)
    save_pretrained(pretraining, tmp_path)
    encoder, report = load_pretrained(BertModel, tmp_path)
    assert report.missing_keys == []
    assert report.unexpected_keys and all(k.startswith("cls.") for k in report.unexpected_keys)
    assert torch.equal(encoder.pooler.dense.weight, pretraining.bert.pooler.dense.weight)


def test_tf_gamma_beta_and_unprefixed_names_are_mapped(tmp_path):
    model = random_model(BertForQuestionAnswering)
    save_pretrained(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    renamed = {k.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma")
               .replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in state.items()}
    renamed["embeddings.position_ids"] = torch.arange(64)[None]  # old transformers saved this
    save_file(renamed, tmp_path / "model.safetensors")
    loaded, report = load_pretrained(BertForQuestionAnswering, tmp_path)
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert_same(our_outputs(model), our_outputs(loaded))


def test_shape_mismatch_names_key_and_file(tmp_path):
    save_pretrained(random_model(BertModel), tmp_path)
    BertConfig(**{**TINY, "vocab_size": 120}).to_json_file(tmp_path / "config.json")
    with pytest.raises(ValueError, match="embeddings.word_embeddings.weight") as err:
        load_model(BertModel, tmp_path)
    assert "model.safetensors" in str(err.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_load_as_float32(tmp_path, dtype):
    model = random_model(BertModel)
    save_pretrained(model, tmp_path)
    state = {k: v.to(dtype) for k, v in load_file(tmp_path / "model.safetensors").items()}
    save_file(state, tmp_path / "model.safetensors")
    loaded = load_model(BertModel, tmp_path)
    weight = loaded.encoder.layer[1].output.dense.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, state["encoder.layer.1.output.dense.weight"].float())


def test_missing_directory_and_bad_names_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_model(BertModel, tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not a model directory$"):
        load_model(BertModel, "org/../etc")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin"):
        load_model(BertModel, tmp_path)


def test_bin_that_is_not_a_state_dict_is_refused(tmp_path):
    BertConfig(**TINY).to_json_file(tmp_path / "config.json")
    torch.save({"model": {"a": torch.zeros(1)}, "step": 3}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        load_model(BertModel, tmp_path)


# ---------------------------------------------------------------- hub names

def test_hub_name_is_refused_with_the_command_that_downloads_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    with pytest.raises(FileNotFoundError) as error:
        load_model(BertModel, "org/tiny-qa")
    assert "hf download org/tiny-qa --local-dir DIR" in str(error.value)
    # What that command writes (config.json + weights in DIR) is what korqa loads.
    model = random_model(BertForQuestionAnswering)
    save_pretrained(model, tmp_path / "org" / "tiny-qa")
    assert_same(our_outputs(model), our_outputs(load_model(BertForQuestionAnswering,
                                                           "org/tiny-qa")))


# ---------------------------------------------------------------- int8 blocks

def test_quantize_error_is_at_most_half_a_step():
    weight = torch.randn(64, 96, generator=torch.Generator().manual_seed(0))
    qweight, qscale = quantize_int8_blockwise(weight, block=32)
    assert qweight.dtype == torch.int8 and qweight.shape == (64, 96)
    assert qscale.dtype == torch.float16 and qscale.shape == (64, 3)
    step = qscale.float().repeat_interleave(32, dim=1)
    error = (dequantize(qweight, qscale) - weight).abs()
    assert (error <= step / 2 + 1e-6).all()
    assert error.max().item() < 0.02  # |w| ≲ 4.5 → step ≲ 0.035


def test_int8_valued_weights_round_trip_exactly():
    gen = torch.Generator().manual_seed(1)
    ints = torch.randint(-127, 128, (8, 64), generator=gen)
    ints[:, ::32] = 127  # every block reaches the full range, so its scale is exactly `scale`
    scale = torch.tensor([2.0**-7, 0.375, 3.0, 2.0**-12]).half().repeat(2)[:, None]
    weight = ints.float() * scale.float()
    qweight, qscale = quantize_int8_blockwise(weight, block=32)
    assert torch.equal(dequantize(qweight, qscale), weight)


def test_four_bit_values_in_the_int8_format_load_exactly(tmp_path):
    # A 4-bit quantiser stores integers −8..7 in qweight and its per-block scales in qscale.
    model = random_model(BertModel)
    save_pretrained(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    key = "encoder.layer.0.intermediate.dense.weight"  # [37, 32]: blocks of 8 → 4 scales a row
    gen = torch.Generator().manual_seed(2)
    qweight = torch.randint(-8, 8, (37, 32), generator=gen, dtype=torch.int8)
    qscale = (torch.rand(37, 4, generator=gen) * 0.1).half()
    del state[key]
    state[key + ".qweight"], state[key + ".qscale"] = qweight, qscale
    save_file(state, tmp_path / "model.safetensors")
    loaded = load_model(BertModel, tmp_path)
    expected = qweight.float() * qscale.float().repeat_interleave(8, dim=1)
    assert torch.equal(loaded.encoder.layer[0].intermediate.dense.weight, expected)


def test_quantized_checkpoint_loads_within_the_quantization_error(tmp_path):
    model = random_model(BertForPreTraining, hidden_size=64, intermediate_size=128)
    save_pretrained(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    quantized = checkpoint.quantize_state_dict(state, block=32)
    assert "bert.embeddings.word_embeddings.weight.qweight" in quantized
    assert "bert.embeddings.LayerNorm.weight" in quantized  # 1-D stays float
    save_file(quantized, tmp_path / "model.safetensors")
    loaded, report = load_pretrained(BertForPreTraining, tmp_path)
    assert report.missing_keys == [] and report.unexpected_keys == []
    for name, weight in model.state_dict().items():
        # |w| ≤ ~2.5 here (0.5·randn): half a step is ≤ 2.5/127/2 ≈ 0.01.
        assert (loaded.state_dict()[name] - weight).abs().max().item() <= 0.011, name
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight


def test_bad_quantized_tensors_name_the_key_and_file(tmp_path):
    save_pretrained(random_model(BertModel), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    key = "pooler.dense.weight"  # [32, 32]
    state[key + ".qweight"] = torch.zeros(32, 32, dtype=torch.int8)
    state[key + ".qscale"] = torch.ones(32, 5, dtype=torch.float16)  # 5 does not divide 32
    del state[key]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="pooler.dense.weight") as err:
        load_model(BertModel, tmp_path)
    assert "model.safetensors" in str(err.value)
    del state[key + ".qscale"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="pooler.dense.weight.qscale"):
        load_model(BertModel, tmp_path)
