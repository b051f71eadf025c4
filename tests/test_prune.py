"""Dropping encoder layers from a reader (korqa.training.prune, `korqa prune`)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import make_reader

from korqa.cli import main
from korqa.corpus.formats import GoldAnswer, SquadExample
from korqa.korquad_metric import score_example
from korqa.modeling import BertConfig, BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model, save_pretrained
from korqa.reader.directory import ReaderDir
from korqa.reader.predict import PredictConfig, predict
from korqa.tokenization import Tokenizer
from korqa.training.prune import drop_layers, layer_drop_scores, prune_reader

TINY = dict(vocab_size=12, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=64, initializer_range=0.5)


def three_layer_reader(directory, seed: int = 0) -> BertForQuestionAnswering:
    """test_average's tiny reader, grown to three layers so that there is a choice to make."""
    make_reader(directory, seed)
    torch.manual_seed(seed)
    config = BertConfig(**{**TINY, "vocab_size": BertConfig.from_json_file(
        directory / "config.json").vocab_size})
    model = BertForQuestionAnswering(config).eval()
    save_pretrained(model, directory)
    return model


def test_dropping_a_layer_computes_the_rest_of_the_stack(tmp_path):
    model = three_layer_reader(tmp_path / "r")
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 9, 3]])
    with torch.no_grad():
        embedded = model.bert.embeddings(ids, torch.zeros_like(ids))
        hidden = model.bert.encoder.layer[2](model.bert.encoder.layer[0](embedded, None), None)
        expected = model.qa_outputs(hidden)[..., 0]
        drop_layers(model, [1])
        start = model(ids)[0]
    assert len(model.bert.encoder.layer) == model.config.num_hidden_layers == 2
    torch.testing.assert_close(start, expected)


@pytest.mark.parametrize("layers, message", [([3], r"do not exist"), ([-1], r"do not exist"),
                                             ([], "at least one"), ([0, 1, 2], "no encoder")])
def test_impossible_drops_are_refused_and_change_nothing(tmp_path, layers, message):
    model = three_layer_reader(tmp_path / "r")
    with pytest.raises(ValueError, match=message):
        drop_layers(model, layers)
    assert len(model.bert.encoder.layer) == model.config.num_hidden_layers == 3


def test_pruned_reader_round_trips_with_its_tokenizer_and_windows(tmp_path):
    model = three_layer_reader(tmp_path / "r")
    (tmp_path / "r" / "activation_absmax.safetensors").write_bytes(b"calibration")
    out = prune_reader(tmp_path / "r", tmp_path / "p", [2])
    pruned = load_model(BertForQuestionAnswering, out)
    assert pruned.config.num_hidden_layers == 2
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3]])
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids)[0], drop_layers(model, [2])(ids)[0])
    assert ReaderDir(out).config().max_seq_length == 48
    assert Tokenizer.from_pretrained(out).vocab_size == Tokenizer.from_pretrained(
        tmp_path / "r").vocab_size
    # The calibration measured the old head's input: it must be redone, not copied.
    assert not (out / "activation_absmax.safetensors").exists()


def test_probe_scores_each_drop_as_the_pruned_reader_would(tmp_path):
    three_layer_reader(tmp_path / "r", seed=1)
    # One-syllable words: the tiny vocabulary has no "##" pieces.
    contexts = ["다 라 마 가 나 다 라", "가 가 나 라 다 마 나",
                "나 다 라 마 가 라 다", "마 마 가 다 나"]
    examples = [SquadExample(f"q{i}", "가 나", context, "t", 0, [GoldAnswer(context[2:5], 2)])
                for i, context in enumerate(contexts)]
    seen = []
    scores = layer_drop_scores(tmp_path / "r", examples, lambda *row: seen.append(row))
    assert list(scores) == [None, 0, 1, 2] and [row[0] for row in seen] == list(scores)
    assert scores[None] != scores[1]  # the layers matter, so agreeing below means something
    tokenizer = Tokenizer.from_pretrained(tmp_path / "r")
    config = PredictConfig(n_best=1, batch_size=1, trim_particles=False,
                           stop_confidence=None)
    for layer in (None, 1):
        directory = tmp_path / "r" if layer is None else prune_reader(
            tmp_path / "r", tmp_path / f"p{layer}", [layer])
        model = load_model(BertForQuestionAnswering, directory)
        answers = predict(model, tokenizer, examples, ReaderDir(directory).config(), config)
        f1 = 100 * sum(score_example(answers[e.qid][0].text, e)[1] for e in examples) / 4
        assert scores[layer] == pytest.approx(f1)


def test_prune_command(tmp_path, capsys):
    three_layer_reader(tmp_path / "r")
    assert main(["prune", "--model", str(tmp_path / "r"), "--drop", "2", "0",
                 "--out", str(tmp_path / "p")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dropped"] == [0, 2] and "korqa calibrate" in printed["next"]
    assert BertConfig.from_json_file(tmp_path / "p" / "config.json").num_hidden_layers == 1
    assert main(["prune", "--model", str(tmp_path / "r"), "--drop", "1"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["prune", "--model", str(tmp_path / "r"), "--probe"]) == 2
    assert "--data" in capsys.readouterr().err


def test_probe_command_reads_validation_questions_only(tmp_path, capsys, korquad_dev,
                                                       monkeypatch):
    import korqa.training.prune as prune
    from korqa.corpus.formats import read_squad
    from korqa.splits import select_split

    asked = []
    real = prune.layer_drop_scores
    monkeypatch.setattr(prune, "layer_drop_scores",
                        lambda model_dir, examples, on_score: asked.extend(examples)
                        or real(model_dir, examples, on_score))
    three_layer_reader(tmp_path / "r")
    assert main(["prune", "--model", str(tmp_path / "r"), "--probe", "--data", str(korquad_dev),
                 "--limit", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["dropped"] for row in rows] == [None, 0, 1, 2]
    assert all(row["questions"] == 3 and 0 <= row["f1"] <= 100 for row in rows)
    # Choosing layers on test questions would leak them into the shipped model.
    validation = {e.qid for e in select_split(read_squad(korquad_dev), "validation")}
    assert len(asked) == 3 and all(example.qid in validation for example in asked)
