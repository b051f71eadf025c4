"""The command line as a terminal shows it (issue 29, item 4): warnings on lines of their own
under the progress bars, Ctrl-C during `korqa index` and at the chat prompt, Ctrl-D."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import office_files as office

REPO = Path(__file__).resolve().parents[1]


def screen(output: str) -> list[str]:
    """The lines a terminal shows for `output`: a carriage return moves back to the start of
    the line and what follows overwrites what was there."""
    lines = []
    for raw in output.split("\n"):
        shown = ""
        for part in raw.split("\r"):
            shown = part + shown[len(part):]
        lines.append(shown.rstrip())
    return lines


def test_the_screen_helper_overwrites_as_a_terminal_does() -> None:
    assert screen("bar 10%\rbar 20%\r      \rwarning\nnext") == ["warning", "next"]
    assert screen("bar 10%warning\n") == ["bar 10%warning", ""]


def test_warnings_while_reading_a_corpus_get_lines_of_their_own(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    office.write(folder / "a.md", office.KIMCHI)
    with zipfile.ZipFile(folder / "b.docx", "w") as archive:  # a zip, but not a Word file
        archive.writestr("IMG_0001.jpg", b"\xff\xd8\xff not really a photo")
    env = {**os.environ, "KORQA_CACHE": str(tmp_path / "cache"), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "korqa", "index", "--corpus", str(folder), "--out",
         str(tmp_path / "idx"), "--no-morphemes"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    shown = screen(done.stderr)
    # The bar was drawn, and each warning is a line of its own, never after a bar's text.
    assert any(line.startswith("reading corpus:") for line in shown), shown
    warnings = [line for line in shown if "b.docx" in line]
    assert len(warnings) == 2, shown  # the file's own warning, then the folder's summary
    assert warnings[0].startswith(f"{folder / 'b.docx'}: skipped, not indexed: not a Word")
    assert warnings[1].startswith(f"{folder}: skipped 1 file — b.docx: not a Word")


def test_python_warnings_and_log_records_pass_the_bars_too(tmp_path: Path) -> None:
    code = ("import logging, sys, warnings\n"
            "from tqdm import tqdm\n"
            "from korqa.cli.logs import route_warnings_past_progress_bars\n"
            "route_warnings_past_progress_bars()\n"
            "with tqdm(total=3, desc='working', file=sys.stderr) as bar:\n"
            "    bar.update()\n"
            "    warnings.warn('라이브러리의 경고', UserWarning)\n"
            "    logging.getLogger('korqa.corpus').warning('korqa의 경고')\n"
            "    logging.getLogger('korqa.corpus').info('보이지 않는 안내')\n"
            "    bar.update(2)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = screen(done.stderr)
    assert "korqa의 경고" in shown
    library = [line for line in shown if "라이브러리의 경고" in line]
    assert len(library) == 1 and library[0].startswith("<string>:"), shown
    assert not any("보이지 않는" in line for line in shown)  # warnings and worse only
    assert shown[-2].startswith("working: 100%")  # the bar is drawn again below them
