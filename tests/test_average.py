"""Weight averaging of fine-tuned readers (korqa.training.average, `korqa average`)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import make_reader

from korqa.cli import main
from korqa.modeling import BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model
from korqa.reader.directory import ReaderDir
from korqa.tokenization import Tokenizer
from korqa.training.average import average_readers


def test_average_is_the_mean_of_every_weight(tmp_path):
    readers = [make_reader(tmp_path / f"r{i}", seed=i) for i in range(3)]
    out = average_readers([tmp_path / f"r{i}" for i in range(3)], tmp_path / "soup")
    soup = load_model(BertForQuestionAnswering, out)
    states = [reader.state_dict() for reader in readers]
    for key, value in soup.state_dict().items():
        expected = sum(state[key].double() for state in states) / 3
        torch.testing.assert_close(value.double(), expected, atol=1e-6, rtol=0)
    assert ReaderDir(out).config().max_seq_length == 48  # the windows travel along
    assert Tokenizer.from_pretrained(out).vocab_size == Tokenizer.from_pretrained(
        tmp_path / "r0").vocab_size


def test_readers_that_cannot_be_averaged_are_refused(tmp_path):
    make_reader(tmp_path / "a", seed=0)
    make_reader(tmp_path / "b", seed=1, chars="가나다라바")  # same size, other vocabulary
    with pytest.raises(ValueError, match="tokenizer differs"):
        average_readers([tmp_path / "a", tmp_path / "b"], tmp_path / "soup")
    with pytest.raises(ValueError, match="at least two"):
        average_readers([tmp_path / "a"], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_average_command(tmp_path, capsys):
    for i in range(2):
        make_reader(tmp_path / f"r{i}", seed=i)
    args = ["average", "--models", str(tmp_path / "r0"), str(tmp_path / "r1"),
            "--out", str(tmp_path / "soup"), "--dtype", "fp16"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(tmp_path / "soup")
    assert (tmp_path / "soup" / "model.safetensors").is_file()
