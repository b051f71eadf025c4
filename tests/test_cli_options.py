"""Options made from config dataclasses: one spelling per knob, from the flag to the field, and
every flag the README shows still parses."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import pytest

from korqa.cli import HelpFormatter, build_parser, iter_parsers
from korqa.cli_options import add_options, build
from korqa.pipeline import PipelineConfig, PipelineSources
from korqa.pretraining.pretrain import PretrainConfig
from korqa.training.finetune import FinetuneConfig

README = Path(__file__).resolve().parents[1] / "README.md"
# Flags the README quotes of bench/ scripts, of torchrun and of pip, not of korqa.
OTHER_TOOLS_FLAGS = {"--nproc_per_node", "--extra-index-url"}


def _bench_flags() -> set[str]:
    """Every option the bench scripts declare (the README quotes their commands too)."""
    sources = (README.parent / "bench").glob("*.py")
    return {flag for path in sources
            for flag in re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"",
                                   path.read_text(encoding="utf-8"))}


@dataclass
class Inner:
    depth: int = field(default=3, metadata={"help": "how deep", "metavar": "N"})


@dataclass
class Knobs:
    name: str = field(metadata={"help": "required: no default"})
    weight: float = field(default=0.8, metadata={"help": "w", "aliases": ("--old-weight",)})
    limit: int | None = field(default=None, metadata={"help": "at most"})
    paths: list[str] = field(default_factory=list, metadata={"help": "files",
                                                             "exclusive": "where"})
    index: str | None = field(default=None, metadata={"help": "a dir", "exclusive": "where"})
    origins: list[str] = field(default_factory=list, metadata={
        "help": "repeatable", "flag": "--origin", "action": "append"})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "how"})
    loud: bool = field(default=False, metadata={"help": "say more"})
    trim: bool = field(default=True, metadata={"help": "do not trim", "flag": "--no-trim"})
    inner: Inner = field(default_factory=Inner)
    hidden: int = 7  # no help: not an option


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter, exit_on_error=False)
    add_options(parser, Knobs)
    return parser


def test_fields_become_typed_options_and_build_the_dataclass_back() -> None:
    args = _parser().parse_args(["--name", "x", "--old-weight", "0.5", "--limit", "4",
                                 "--paths", "a", "b", "--origin", "o1", "--origin", "o2",
                                 "--mode", "slow", "--loud", "--no-trim", "--depth", "9"])
    assert build(Knobs, args) == Knobs(name="x", weight=0.5, limit=4, paths=["a", "b"],
                                       origins=["o1", "o2"], mode="slow", loud=True,
                                       trim=False, inner=Inner(depth=9))
    assert build(Knobs, _parser().parse_args(["--name", "x"])) == Knobs(name="x")


def test_generated_options_check_their_input_and_show_their_defaults() -> None:
    parser = _parser()
    for bad in (["--weight", "0.5"],  # --name is required
                ["--name", "x", "--mode", "medium"],
                ["--name", "x", "--limit", "many"],
                ["--name", "x", "--paths", "a", "--index", "i"],  # one of the two
                ["--name", "x", "--hidden", "1"]):
        with pytest.raises((argparse.ArgumentError, SystemExit)):
            parser.parse_args(bad)
    text = parser.format_help()
    assert "--weight WEIGHT, --old-weight WEIGHT" in text
    assert "(default: 0.8)" in text and "(default: 3)" in text and "{fast,slow}" in text
    assert "(default: True)" not in text and "(default: False)" not in text


def test_fusion_weight_is_one_knob_under_its_new_and_its_old_flag() -> None:
    parser = build_parser()
    for flag in ("--fusion-weight", "--weight"):
        args = parser.parse_args(["ask", "질문", flag, "0.5", "--top-k", "2"])
        assert build(PipelineConfig, args) == PipelineConfig(fusion_weight=0.5, top_k=2)
    # Unset flags are the dataclass's defaults, the engine options included.
    args = parser.parse_args(["chat"])
    assert build(PipelineConfig, args) == PipelineConfig()
    assert build(PipelineSources, args) == PipelineSources()
    args = parser.parse_args(["ask", "질문", "--int8", "--all-windows", "--engine", "torch",
                              "--corpus", "a", "b", "--faq", "f.csv"])
    assert build(PipelineConfig, args) == PipelineConfig(
        int8=True, engine="torch", reader_overrides={"stop_confidence": None})
    assert build(PipelineSources, args) == PipelineSources(corpus=["a", "b"], faq="f.csv")


def test_serve_builds_one_server_config_that_holds_the_pipelines() -> None:
    from korqa.corpus.text import TextReading
    from korqa.server.app import ServerConfig

    args = build_parser().parse_args([
        "serve", "--index", "idx", "--top-k", "5", "--weight", "0.7", "--engine", "onnx",
        "--allow-origin", "http://a", "--allowed-hosts", "h1", "h2", "--encoding", "cp949",
        "--log-level", "debug"])
    config = build(ServerConfig, args)
    assert config.sources == PipelineSources(index="idx")
    assert config.pipeline == PipelineConfig(top_k=5, fusion_weight=0.7, engine="onnx")
    assert config.reading == TextReading("cp949")
    assert (config.allow_origins, config.allowed_hosts, config.log_level) == \
        (["http://a"], ["h1", "h2"], "debug")
    assert build(ServerConfig, build_parser().parse_args(["serve"])) == ServerConfig()
    # The server holds the pipeline's knobs and sources whole: none is copied into its own.
    own = {spec.name for spec in fields(ServerConfig)}
    assert not own & {spec.name for cls in (PipelineConfig, PipelineSources)
                      for spec in fields(cls)}


@pytest.mark.parametrize(("command", "config", "required"), [
    ("train", FinetuneConfig, ["--model", "m", "--data", "d", "--out", "o"]),
    ("pretrain", PretrainConfig, ["--corpus", "c", "--tokenizer", "t", "--out", "o"]),
])
def test_training_commands_take_every_config_field_under_its_own_name(
        command: str, config: type, required: list[str]) -> None:
    args = build_parser().parse_args([command, *required, "--no-progress", "--seed", "3"])
    built = build(config, args)
    assert isinstance(built, config) and built.progress is False and built.seed == 3
    parser = dict(iter_parsers(build_parser()))[f"korqa {command}"]
    dests = {action.dest for action in parser._actions} - {"help"}
    assert dests == {spec for spec in vars(built)}  # no option without a field, nor the reverse


def _readme_commands() -> list[tuple[str, list[str]]]:
    """(command, flags) of each `korqa COMMAND …` the README's shell blocks show."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            for match in re.finditer(r"korqa ([a-z][a-z0-9-]*)(.*?)(?=\bkorqa [a-z]|$|#)",
                                     line):
                commands.append((match[1], re.findall(r"(?<!\S)--[a-z0-9-]+", match[2])))
    return commands


def test_every_flag_the_readme_shows_still_parses() -> None:
    parsers = {name.removeprefix("korqa "): parser
               for name, parser in iter_parsers(build_parser())}
    commands = _readme_commands()
    assert len(commands) > 25 and ("ask", ["--index", "--json"]) in commands
    for command, flags in commands:
        known = parsers[command]._option_string_actions
        assert [flag for flag in flags if flag not in known] == [], command
    # Flags the prose names belong to some command.
    every = {flag for parser in parsers.values() for flag in parser._option_string_actions}
    prose = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]+", README.read_text(encoding="utf-8")))
    assert len(prose) > 40 and {"--all-windows", "--int8", "--api-key"} <= prose
    assert prose - every - _bench_flags() - OTHER_TOOLS_FLAGS == set()


@pytest.mark.parametrize(("argv", "unloaded"), [
    (["--help"], ["fastapi", "korqa.pipeline", "numpy", "torch"]),  # options made per command
    (["train", "--help"], ["torch"]),  # the configs live apart from their trainers
    (["pretrain", "--help"], ["torch"]),
])
def test_help_imports_only_what_its_options_need(argv: list[str], unloaded: list[str]) -> None:
    code = (f"import sys\nfrom korqa.cli import main\ntry:\n    main({argv!r})\n"
            f"except SystemExit:\n    pass\n"
            f"print(sorted(set({unloaded!r}) & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert "usage: korqa" in done.stdout and done.stdout.splitlines()[-1] == "[]"


def test_reader_settings_override_the_saved_config_only_where_given() -> None:
    from korqa.cli_options import overrides
    from korqa.reader.config import ReaderConfig

    parser = build_parser()
    assert build(PipelineConfig, parser.parse_args(["ask", "질문"])).reader_overrides == {}
    # --all-windows is the old spelling of --stop-confidence off: one field, two flags.
    for flags, expected in ((["--all-windows"], {"stop_confidence": None}),
                            (["--stop-confidence", "0.7"], {"stop_confidence": 0.7}),
                            (["--max-answer-length", "12", "--no-trim"],
                             {"max_answer_length": 12, "trim_particles": False})):
        args = parser.parse_args(["ask", "질문", "--n-best", "3", *flags])
        config = build(PipelineConfig, args)
        assert config.reader_overrides == expected
        assert config.n_best == 3  # the pipeline's own n_best, not the reader's
    args = parser.parse_args(["evaluate", "--data", "d", "--max-seq-length", "256",
                              "--n-best", "7", "--all-windows", "--int8"])
    assert overrides(ReaderConfig, args) == {"max_seq_length": 256, "n_best": 7,
                                             "stop_confidence": None}
    assert args.int8 and args.engine == "auto"
    assert overrides(ReaderConfig, parser.parse_args(["evaluate", "--data", "d"])) == {}
    # The pipeline has no batch size of its own to give: it reads one window per pass.
    with pytest.raises(SystemExit):
        parser.parse_args(["ask", "질문", "--batch-size", "8"])
