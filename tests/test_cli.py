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
from korqa.cli.command import Command

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
    later = Command("later", "a command added after the groups were written", run=print)
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, later))
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
    from typing import get_args

    from korqa.modeling.checkpoint import SAVE_DTYPES
    from korqa.modeling.config import SaveDtype

    assert get_args(SaveDtype) == SAVE_DTYPES
    parsers = dict(iter_parsers(build_parser()))
    for command in ("average", "prune", "export", "import-e5"):
        assert parsers[f"korqa {command}"]._option_string_actions["--dtype"].choices == \
            list(SAVE_DTYPES), command


def _field_names(cls: type) -> set[str]:
    """The option names (dests) a config dataclass gives: its fields with help, nested
    dataclasses' and override classes' fields too (korqa.cli_options)."""
    from dataclasses import fields, is_dataclass
    from typing import get_type_hints

    from korqa.cli_options import resolve

    hints = get_type_hints(cls)
    names = set()
    for spec in fields(cls):
        if is_dataclass(hints[spec.name]):
            names |= _field_names(hints[spec.name])
        elif "overrides" in spec.metadata:
            skip = set(spec.metadata.get("skip", ()))
            names |= {f.name for f in fields(resolve(spec.metadata["overrides"]))
                      if "help" in f.metadata} - skip
        elif "help" in spec.metadata:
            names.add(spec.name)
    return names


def test_every_option_of_every_command_is_a_field_of_its_configs() -> None:
    from korqa.cli.command import OUTPUT
    from korqa.cli_options import resolve

    parsers = dict(iter_parsers(build_parser()))
    runnable = [command for command in cli.COMMANDS if command.run is not None]
    assert len(runnable) == 27
    for command in runnable:
        configs = (*command.configs, OUTPUT) if command.text else command.configs
        fields = set().union(*(_field_names(resolve(config)) for config in configs))
        parser = parsers[f"korqa {command.name}"]
        dests = {action.dest for action in parser._actions} - {"help"}
        assert dests == fields, command.name  # no option without a field, nor the reverse


def test_no_cli_module_adds_an_option_by_hand() -> None:
    package = Path(cli.__file__).parent
    calls = {path.name: path.read_text(encoding="utf-8").count(".add_argument(")
             for path in package.glob("*.py")}
    # `--version` is the one option no config holds: it prints and exits.
    assert calls == {name: (1 if name == "__init__.py" else 0) for name in calls}
    assert '"--version", action=_Version' in (package / "__init__.py").read_text("utf-8")


def test_the_retriever_choices_are_the_registrys_kinds() -> None:
    from korqa.retrieval.registry import KINDS, REGISTRY

    assert set(REGISTRY) == set(KINDS) and "dense-ivfpq" in KINDS
    parsers = dict(iter_parsers(build_parser()))
    for command in ("index", "retrieval-eval"):
        option = parsers[f"korqa {command}"]._option_string_actions["--retriever"]
        assert option.choices == KINDS
        assert all(f"{kind}: {REGISTRY[kind].description}" in option.help for kind in KINDS)


@pytest.mark.parametrize("name", [command.name for command in cli.COMMANDS])
def test_the_help_of_each_command_names_each_of_its_options(
        name: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*name.split(), "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"usage: korqa {name} ")
    parser = dict(iter_parsers(build_parser()))[f"korqa {name}"]
    for action in parser._actions:
        shown = action.option_strings or [action.metavar or action.dest]
        assert all(spelling in text for spelling in shown), (name, shown)


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("korqa.training.cross_validation.write_splits", interrupted)
    assert main(["split", "--data", "d.json", "--out", "o"]) == 130
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "korqa split: interrupted\n")
