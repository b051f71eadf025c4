"""Exporting a reader: vocabulary trimming keeps kept text identical; int8 stays close."""

from __future__ import annotations

import numpy as np
import torch

from korqa.convert.export import export_reader
from korqa.convert.unigram import build_normalizer, build_tokenizer, trim_unigram
from korqa.modeling import BertConfig, BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model, save_pretrained
from korqa.reader.config import ReaderConfig
from korqa.reader.directory import ReaderDir
from korqa.tokenization import Tokenizer

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁임종석", "이", "▁1989", "년", "▁서울", "▁부산",
          "역", "시", "임", "종", "석", "서", "울", "부", "산", "1", "9", "8", "년에", "<mask>"]
KEPT_TEXT = "임종석이 1989년"


def _tiny_unigram() -> Tokenizer:
    scores = np.linspace(-1.0, -12.0, len(PIECES))
    scores[5] = -0.5  # make the whole-word piece win
    return build_tokenizer(PIECES, scores, build_normalizer({}), unk=3)


def _tiny_reader(tmp_path, vocab_size: int):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, pad_token_id=1)
    model = BertForQuestionAnswering(config).eval()
    save_pretrained(model, tmp_path / "reader")
    _tiny_unigram().save(tmp_path / "reader")
    return model


def _logits(model, tokenizer, text):
    ids = torch.tensor([tokenizer.build_single(tokenizer.encode(text).ids)])
    with torch.inference_mode():
        return model(ids)


def test_trimmed_tokenizer_keeps_kept_text_identical():
    full = _tiny_unigram()
    trimmed, keep = trim_unigram(full, [KEPT_TEXT])
    before = full.encode(KEPT_TEXT)
    after = trimmed.encode(KEPT_TEXT)
    assert after.tokens == before.tokens
    assert after.offsets == before.offsets
    assert [keep[i] for i in after.ids] == before.ids
    assert "▁부산" not in trimmed.backend.get_vocab()  # unused multi-character piece dropped
    assert trimmed.token_to_id("<pad>") == 1 and trimmed.token_to_id("<unk>") == 3
    assert trimmed.token_to_id("<mask>") == len(keep) - 1


def test_export_int8_trimmed_reader_gives_the_same_answers(tmp_path):
    model = _tiny_reader(tmp_path, len(PIECES))
    txt = tmp_path / "kept.txt"
    txt.write_text(KEPT_TEXT + "\n", encoding="utf-8")
    from korqa.convert.unigram import trim_texts

    summary = export_reader(tmp_path / "reader", tmp_path / "out", dtype="int8",
                            trim_texts=trim_texts([txt]))
    assert summary.vocab_after < summary.vocab_before == len(PIECES)
    exported = load_model(BertForQuestionAnswering, tmp_path / "out")
    tokenizer = Tokenizer.from_pretrained(tmp_path / "out")
    assert exported.config.vocab_size == tokenizer.vocab_size == summary.vocab_after
    start0, end0 = _logits(model, _tiny_unigram(), KEPT_TEXT)
    start1, end1 = _logits(exported, tokenizer, KEPT_TEXT)
    # int8 blocks: ~0.4 % relative error per weight; the logits move by far less than their spread.
    assert torch.allclose(start0, start1, atol=0.05) and torch.allclose(end0, end1, atol=0.05)
    assert start1.argmax() == start0.argmax() and end1.argmax() == end0.argmax()


def test_export_from_python_keeps_the_windows(tmp_path):
    # Called from Python, not only through `korqa export`: the reader must still cut the
    # windows it was trained on, not BERT's defaults.
    _tiny_reader(tmp_path, len(PIECES))
    windows = ReaderConfig(max_seq_length=48, doc_stride=16, max_query_length=8)
    ReaderDir(tmp_path / "reader").save_config(windows)
    export_reader(tmp_path / "reader", tmp_path / "out", dtype="fp32")
    assert ReaderDir(tmp_path / "out").config() == windows


def test_korqa_export_writes_the_graph_and_it_agrees_with_the_weights(tmp_path):
    from korqa.cli import main
    from korqa.modeling.onnx_engine import OnnxEngine
    from korqa.modeling.onnx_graph import expected_metadata, graph_metadata
    from korqa.modeling.weights import WeightsLayout

    _tiny_reader(tmp_path, len(PIECES))
    out = tmp_path / "out"
    assert main(["export", "--model", str(tmp_path / "reader"), "--out", str(out)]) == 0
    graph = out / "model.onnx"
    # Built from exactly these weights and config, and holding none of them itself: every
    # tensor of model.safetensors is read from that file, its int8 blocks as int8.
    assert graph_metadata(graph).items() >= expected_metadata(out).items()
    layout = WeightsLayout.read(out / "model.safetensors")
    assert {t.dtype for t in layout.tensors.values()} == {"I8", "F16", "F32"}
    import onnx

    stored = {t.name: {e.key: e.value for e in t.external_data}
              for t in onnx.load(str(graph), load_external_data=False).graph.initializer
              if t.data_location == onnx.TensorProto.EXTERNAL}
    assert set(stored) == set(layout.tensors)
    assert {where["location"] for where in stored.values()} == {"model.safetensors"}
    engine = OnnxEngine(out)
    assert engine.path == graph
    exported = load_model(BertForQuestionAnswering, out)
    tokenizer = Tokenizer.from_pretrained(out)
    ids = np.array([tokenizer.build_single(tokenizer.encode(KEPT_TEXT).ids)])
    start, end = engine.forward({"input_ids": ids})
    expected = _logits(exported, tokenizer, KEPT_TEXT)
    assert abs(start - expected[0].numpy()).max() < 1e-4
    assert abs(end - expected[1].numpy()).max() < 1e-4
