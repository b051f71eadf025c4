"""docs/tutorial.ipynb, the seminar as a notebook, runs top to bottom with nbclient on the
shipped reader: it finds the paragraph, reads the expected answer with the torch BERT and
korqa's Reader alike, and draws its three figures with Korean text and no missing glyphs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from korqa.paths import default_reader_dir

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


@pytest.mark.slow
def test_the_tutorial_notebook_runs_and_draws_its_figures_in_korean(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not (default_reader_dir() / "config.json").is_file():
        pytest.skip(f"no shipped reader at {default_reader_dir()}")
    if not Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf").exists():
        pytest.skip("fonts-nanum is not installed (.ci/run installs it)")
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path / "cache"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The committed notebook carries no outputs: it stays small and shows nothing stale.
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    nbclient.NotebookClient(notebook, timeout=170, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "missing from font" not in streams and "Traceback" not in streams
    # The torch BERT's best span keeps its particle; korqa's Reader trims it.
    summary = json.loads(streams.strip().splitlines()[-1])
    assert summary == {"span": "1443년에", "reader": "1443년",
                       "figures": ["attention.png", "confidence.png", "start_end.png"]}
    pictures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pictures) == 3
    assert all(base64.b64decode(p.data["image/png"]).startswith(b"\x89PNG") for p in pictures)
