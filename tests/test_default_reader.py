"""The README's first command: the shipped reader answers from the shipped sample corpus."""

from __future__ import annotations

import json

import pytest

from korqa.cli import main
from korqa.paths import default_reader_dir


@pytest.mark.parametrize("flags", [[], ["--int8"], ["--engine", "torch"]],
                         ids=["onnx float", "onnx int8", "torch float"])
def test_shipped_reader_answers_the_readme_question(flags, tmp_path, monkeypatch, capsys):
    if not (default_reader_dir() / "config.json").is_file():
        pytest.skip(f"no shipped reader at {default_reader_dir()}")
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path))
    assert main(["ask", "한라산의 높이는 얼마인가?", "--json", *flags]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["known"] is True
    assert answer["title"] == "제주도"
    assert "1,947" in answer["answer"]
    assert answer["context"][answer["start"]:answer["end"]] == answer["answer"]
