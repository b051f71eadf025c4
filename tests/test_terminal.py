"""The command line as a terminal shows it (issue 29, item 4): warnings on lines of their own
under the progress bars, Ctrl-C during `korqa index` and at the chat prompt, Ctrl-D."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import office_files as office
from faults import paused_at

from korqa.cli import main as korqa_main
from korqa.retrieval.index import STAGING_DIR, Index, list_documents

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


# ---- Ctrl-C during `korqa index` ---------------------------------------------------------------

FIRST = "# 김장\n\n김장은 겨울을 나기 위해 김치를 한꺼번에 많이 담그는 일이다.\n"
SECOND = "# 파란여우\n\n파란여우 마을의 우체국장은 뷁꽯이다.\n"


def interrupt_index_at(step: str, argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `korqa ARGV` in a process stopped at commit step `step`, then press Ctrl-C there."""
    flag = tmp_path / f"paused-{step}"
    code = paused_at(step, flag) + ("import sys\nfrom korqa.cli import main\n"
                                    f"sys.exit(main({argv!r}))\n")
    env = {**os.environ, "KORQA_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while not flag.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "korqa index never reached the commit"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def test_ctrl_c_while_index_builds_leaves_the_old_index_and_says_so(tmp_path: Path,
                                                                    capsys) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kimchi.md").write_text(FIRST, encoding="utf-8")
    out = tmp_path / "idx"
    argv = ["index", "--corpus", str(folder), "--out", str(out), "--no-morphemes"]
    assert korqa_main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    (folder / "fox.md").write_text(SECOND, encoding="utf-8")
    # Stopped with the new retriever saved and the store's change not yet committed.
    done = interrupt_index_at("saved", argv, tmp_path)
    assert done.returncode == 130
    assert done.stderr.splitlines()[-1] == "중단됨: 색인은 그대로입니다"
    assert "Traceback" not in done.stderr and "interrupted" not in done.stderr
    assert done.stdout == ""
    # As it was: the old document answers, the new one is not there, nothing half-written.
    assert [d.doc_id for d in list_documents(out)] == ["kimchi.md"]
    with Index(out) as index:
        assert index.search("김장은 언제 담그나?", 1)[0][0].doc_id == "kimchi.md"
        assert index.search("뷁꽯", 1) == []
    assert not (out / STAGING_DIR).exists()
    assert korqa_main(["verify", "--index", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_ctrl_c_while_a_new_index_builds_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kimchi.md").write_text(FIRST, encoding="utf-8")
    out = tmp_path / "new" / "idx"
    done = interrupt_index_at("saved", ["index", "--corpus", str(folder), "--out", str(out),
                                        "--no-morphemes", "--no-progress"], tmp_path)
    assert (done.returncode, done.stderr) == (130, "중단됨: 색인은 그대로입니다\n")
    assert not (tmp_path / "new").exists()  # no index, and no folder made for it


def test_ctrl_c_just_after_the_commit_says_the_new_index_is_saved(tmp_path: Path,
                                                                  capsys) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kimchi.md").write_text(FIRST, encoding="utf-8")
    out = tmp_path / "idx"
    argv = ["index", "--corpus", str(folder), "--out", str(out), "--no-morphemes",
            "--no-progress"]
    assert korqa_main(argv) == 0
    capsys.readouterr()
    (folder / "fox.md").write_text(SECOND, encoding="utf-8")
    done = interrupt_index_at("committed", argv, tmp_path)
    assert (done.returncode, done.stderr) == (130, "중단됨: 바뀐 색인은 이미 저장되었습니다\n")
    with Index(out) as index:  # the next open finds the committed retriever
        assert index.search("뷁꽯", 1)[0][0].doc_id == "fox.md"
