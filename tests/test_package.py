"""The package's public face (korqa/__init__.py): the few names a user needs, imported on first
use, and the README's "Python" section run as it stands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import korqa
from korqa.paths import default_reader_dir

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_public_names_are_the_pipelines_own() -> None:
    from korqa.pipeline import Answer, PipelineConfig, QAPipeline, open_pipeline

    assert (korqa.open_pipeline, korqa.QAPipeline, korqa.PipelineConfig, korqa.Answer) == \
        (open_pipeline, QAPipeline, PipelineConfig, Answer)
    assert set(korqa.__all__) == {"__version__", "open_pipeline", "QAPipeline",
                                  "PipelineConfig", "Answer"}
    with pytest.raises(AttributeError, match="no attribute 'ask'"):
        korqa.ask  # noqa: B018


def test_import_korqa_loads_nothing_but_itself() -> None:
    code = ("import sys\nimport korqa\n"
            "print(sorted(m for m in sys.modules if m.startswith('korqa') or m == 'typing'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.split("\n")[0] == "['korqa', 'korqa.lazy', 'korqa.version']"


def _python_section() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Python\n"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the Python section shows one snippet"
    return blocks[0]


def test_the_readme_python_snippet_answers_the_readme_question(tmp_path: Path) -> None:
    if not (default_reader_dir() / "config.json").is_file():
        pytest.skip(f"no shipped reader at {default_reader_dir()}")
    snippet = _python_section()
    assert "korqa.open_pipeline(" in snippet and ".ask(" in snippet
    # As a user runs it: a fresh interpreter, from a directory outside the checkout.
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    answer, score, title = done.stdout.split()
    assert "1,947" in answer and title == "제주도" and 0.0 < float(score) <= 1.0


def test_python_m_korqa_beside_a_checkout_named_korqa_says_so(tmp_path: Path) -> None:
    # A checkout in a folder named korqa, Python started in the folder holding it: Python takes
    # the checkout folder for the package (README: "Where to run it from").
    (tmp_path / "korqa").symlink_to(README.parent, target_is_directory=True)
    beside = subprocess.run([sys.executable, "-c", "import korqa; print(korqa.__path__)"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert str(tmp_path / "korqa") in beside.stdout  # the checkout, not the package
    done = subprocess.run([sys.executable, "-m", "korqa", "--version"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"korqa: error: Python took {tmp_path / 'korqa'}, a korqa checkout, for the package "
        f"korqa: it started in {tmp_path}, the folder holding the checkout. Run it from inside "
        "the checkout or from any other folder (with korqa installed: pip install -e .), or "
        "give the checkout folder another name.\n")
    # Started anywhere else, the installed package runs as ever.
    for folder in (tmp_path / "korqa", tmp_path / "korqa" / "docs"):
        elsewhere = subprocess.run([sys.executable, "-m", "korqa", "--version"],
                                   capture_output=True, text=True, timeout=120, cwd=folder)
        assert elsewhere.stdout.strip() == f"korqa {korqa.__version__}"
