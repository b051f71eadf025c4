"""The command line's manners: help for every option, grouped commands, --version, closed
pipes, a busy port, and the output folders git ignores."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from korqa import cli
from korqa.cli import HelpFormatter, build_parser, iter_parsers, main

REPO = Path(__file__).resolve().parents[1]
# "~1.4x faster", "26% fewer", "F1 80.02": numbers that go stale belong in the docs.
MEASUREMENT = re.compile(r"~\s*\d|\d\s*%|\d(\.\d+)?\s*[x×]\b|\b(F1|EM)\s*\d")


def _options() -> list[tuple[str, argparse.Action]]:
    return [(f"{name} {action.option_strings[-1]}", action)
            for name, parser in iter_parsers(build_parser())
            for action in parser._actions
            if action.option_strings and action.dest != "help"]


def test_every_option_of_every_command_says_what_it_does_and_its_default() -> None:
    options = _options()
    assert len(options) > 150  # the walk reached every subcommand, feedback export too
    assert "korqa feedback export --out" in dict(options)
    formatter = HelpFormatter("korqa")
    for name, action in options:
        assert action.help and action.help.strip(), f"{name} has no help text"
        assert not MEASUREMENT.search(action.help), f"{name}: a measurement in its help"
        shown = formatter._expand_help(action)
        if action.nargs != 0 and action.default not in (None, [], argparse.SUPPRESS):
            assert "default" in shown.lower(), f"{name} does not show its default"
    shown = dict(options)
    assert formatter._expand_help(shown["korqa serve --port"]).endswith("(default: 8000)")
    # A reader setting's default is the reader directory's reader_config.json, else the field's.
    assert formatter._expand_help(shown["korqa evaluate --n-best"]).endswith(
        "(default: the saved config's, else 20)")
    # A flag's "default" is its absence: "(default: True)" on --no-progress would read backwards.
    assert "default" not in formatter._expand_help(shown["korqa evaluate --no-progress"])


def test_no_command_describes_itself_with_a_measurement() -> None:
    for name, parser in iter_parsers(build_parser()):
        for text in (parser.description or "", parser.epilog or ""):
            assert not MEASUREMENT.search(text), f"{name}: a measurement in its description"


def test_help_lists_everyday_commands_first_then_evaluation_then_training() -> None:
    text = build_parser().format_help()
    everyday, evaluation, training = (text.index(title) for title in
                                      ("everyday use:", "evaluation:", "training:"))
    assert everyday < evaluation < training
    listed = re.findall(r"^  ([a-z][a-z0-9-]+)  ", text, flags=re.MULTILINE)
    assert listed[:4] == ["index", "ask", "chat", "serve"]
    assert listed.index("evaluate") < listed.index("train")
    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction)).choices
    assert sorted(listed) == sorted(commands)  # each command once, none hidden
    assert list(commands) == listed  # and "invalid choice" errors name them in that order
    assert "usage: korqa [-h] [--version] COMMAND ..." in text


def test_a_command_nobody_grouped_is_still_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    def add_later(sub: argparse._SubParsersAction) -> None:
        sub.add_parser("later", help="a command added after the groups were written")

    monkeypatch.setattr(cli, "_COMMANDS", [*cli._COMMANDS, add_later])
    text = build_parser().format_help()
    assert text.index("other commands:") < text.index("later ") < text.index("options:")


def test_subcommand_usage_names_only_the_subcommand(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert capsys.readouterr().out.startswith("usage: korqa serve [-h]")


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"korqa {version('korqa')}\n"


def _squad_files(tmp_path: Path) -> tuple[Path, Path]:
    qas = [{"id": f"q{i}", "question": f"질문 {i}?",
            "answers": [{"text": "한라산", "answer_start": 0}]} for i in range(3)]
    data = {"version": "1.0", "data": [{"title": "t", "paragraphs": [
        {"context": "한라산은 높다.", "qas": qas}]}]}
    gold = tmp_path / "gold.json"
    gold.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps({f"q{i}": "한라산" for i in range(3)}), encoding="utf-8")
    return gold, predictions


@pytest.mark.parametrize("buffered", [True, False])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path, buffered: bool) -> None:
    gold, predictions = _squad_files(tmp_path)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    for args in (["--version"], ["score", "--data", str(gold), "--predictions",
                                 str(predictions), "--json"]):
        # As in `korqa … | head`, once head has exited: the pipe's reading end is gone.
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            done = subprocess.run([sys.executable, "-m", "korqa", *args], stdout=write_end,
                                  stderr=subprocess.PIPE, env=env, timeout=120, cwd=REPO)
        finally:
            os.close(write_end)
        assert done.stderr.decode() == "", args
        assert done.returncode == 141, args


def test_a_closed_stdout_is_no_error() -> None:
    # `korqa --version >&-`: Python starts with sys.stdout None.
    run_closed = ("import os, sys; os.close(1); "
                  "os.execv(sys.executable, [sys.executable, '-m', 'korqa', '--version'])")
    done = subprocess.run([sys.executable, "-c", run_closed], stderr=subprocess.PIPE,
                          timeout=120, cwd=REPO)
    assert (done.returncode, done.stderr.decode()) == (0, "")


def test_serve_refuses_a_busy_port_before_loading_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        data_dir = tmp_path / "data"
        code = main(["serve", "--port", str(port), "--data-dir", str(data_dir),
                     "--model", str(tmp_path / "no-model")])
    assert code == 2
    error = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in error and "--port" in error
    assert "no-model" not in error  # the port was checked first...
    assert not data_dir.exists()  # ...before the server touched its data or index
    assert main(["serve", "--port", "70000", "--data-dir", str(data_dir)]) == 2
    assert "0 to 65535" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="not a git checkout")
def test_the_readmes_output_folders_are_ignored_by_git() -> None:
    paths = ["idx/korquad/paragraphs.sqlite", "runs/r1/best/model.safetensors"]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split() == paths


def test_the_dtypes_offered_are_those_checkpoints_save() -> None:
    from korqa.cli import DTYPES
    from korqa.modeling.checkpoint import SAVE_DTYPES

    assert DTYPES == SAVE_DTYPES
