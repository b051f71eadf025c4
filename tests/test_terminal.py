"""The command line as a terminal shows it (issue 29, item 4): warnings on lines of their own
under the progress bars, Ctrl-C during `korqa index` and at the chat prompt, Ctrl-D."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import office_files as office
import pytest
from faults import paused_at
from tiny import write_corpus

from korqa.cli import main as korqa_main
from korqa.pipeline.chat import PROMPT, run_chat
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


def kimchi_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kimchi.md").write_text(FIRST, encoding="utf-8")
    return folder


def index_then_grow(tmp_path: Path) -> tuple[Path, list[str]]:
    """An index of a folder that has grown since by a file: the index, and the `korqa`
    arguments that would update it."""
    folder = kimchi_folder(tmp_path)
    out = tmp_path / "idx"
    argv = ["index", "--corpus", str(folder), "--out", str(out), "--no-morphemes"]
    assert korqa_main([*argv, "--no-progress"]) == 0
    (folder / "fox.md").write_text(SECOND, encoding="utf-8")
    return out, argv


def test_ctrl_c_while_index_builds_leaves_the_old_index_and_says_so(tmp_path: Path,
                                                                    capsys) -> None:
    out, argv = index_then_grow(tmp_path)
    capsys.readouterr()
    # Stopped with the new retriever saved and the store's change not yet committed.
    done = interrupt_index_at("saved", argv, tmp_path)
    assert done.returncode == 130
    assert done.stderr.splitlines()[-1] == "중단됨: 색인은 그대로입니다"
    assert "Traceback" not in done.stderr and "interrupted" not in done.stderr
    assert done.stdout == ""
    # As it was: the old document answers, the new one is not there, nothing half-written.
    assert [Path(d.doc_id).name for d in list_documents(out)] == ["kimchi.md"]
    with Index(out) as index:
        assert index.search("김장은 언제 담그나?", 1)[0][0].doc_id.endswith("/kimchi.md")
        assert index.search("뷁꽯", 1) == []
    assert not (out / STAGING_DIR).exists()
    assert korqa_main(["verify", "--index", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_ctrl_c_while_a_new_index_builds_leaves_nothing(tmp_path: Path) -> None:
    folder = kimchi_folder(tmp_path)
    out = tmp_path / "new" / "idx"
    done = interrupt_index_at("saved", ["index", "--corpus", str(folder), "--out", str(out),
                                        "--no-morphemes", "--no-progress"], tmp_path)
    assert (done.returncode, done.stderr) == (130, "중단됨: 색인은 그대로입니다\n")
    assert not (tmp_path / "new").exists()  # no index, and no folder made for it


def test_ctrl_c_just_after_the_commit_says_the_new_index_is_saved(tmp_path: Path,
                                                                  capsys) -> None:
    out, argv = index_then_grow(tmp_path)
    capsys.readouterr()
    done = interrupt_index_at("committed", [*argv, "--no-progress"], tmp_path)
    assert (done.returncode, done.stderr) == (130, "중단됨: 바뀐 색인은 이미 저장되었습니다\n")
    with Index(out) as index:  # the next open finds the committed retriever
        assert index.search("뷁꽯", 1)[0][0].doc_id.endswith("/fox.md")


# ---- Ctrl-C and Ctrl-D in `korqa chat` --------------------------------------------------------

FAQ = [{"question": "오늘 너무 힘들다", "answer": "고생 많았어요."}]


def chat_argv(tmp_path: Path) -> list[str]:
    faq = tmp_path / "faq.json"
    faq.write_text(json.dumps(FAQ, ensure_ascii=False), encoding="utf-8")
    return ["chat", "--corpus", str(write_corpus(tmp_path / "c.jsonl")), "--faq", str(faq),
            "--model", str(tmp_path / "no-model")]


class Terminal:
    """A command run in a pseudo-terminal, as a person at a terminal runs it: keys typed go
    through the terminal's line discipline, so Ctrl-C (\\x03) is SIGINT to the command."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its terminal
            os.chdir(REPO)
            os.execve(sys.executable, [sys.executable, *argv], env)
        self.shown = b""

    @property
    def seen(self) -> str:
        # Decoded whole: a read may end inside a character's UTF-8 bytes.
        return self.shown.decode("utf-8", errors="replace")

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode("utf-8"))

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> str:
        """Read until `text` has been shown `count` times in all; everything shown so far."""
        deadline = time.monotonic() + timeout
        while self.seen.count(text) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r} {count}x; the screen so far: {self.seen!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the command ended and closed the terminal
                    chunk = b""
                assert chunk, f"the command ended; the screen: {self.seen!r}"
                self.shown += chunk
        return self.seen

    def exit_status(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # drain, so the child never blocks writing
                if select.select([self.fd], [], [], 0.1)[0]:
                    self.shown += os.read(self.fd, 4096)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"the command did not end; the screen: {self.seen!r}")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_ctrl_c_at_the_chat_prompt_clears_the_line_and_ctrl_d_leaves(tmp_path: Path) -> None:
    env = {**os.environ, "KORQA_CACHE": str(tmp_path / "cache"), "TERM": "dumb"}
    terminal = Terminal(["-m", "korqa", *chat_argv(tmp_path)], env)
    try:
        terminal.wait_for(PROMPT)
        terminal.type("반쯤 쓰다 만 질문")
        terminal.wait_for("반쯤 쓰다 만 질문")  # echoed as typed
        # A person's pause: Python's readline loop notices a signal only while it waits in
        # select(), not in the microseconds after it echoed a key (a Ctrl-C then waits for the
        # next key), and a person never presses it that fast.
        time.sleep(0.5)
        terminal.type("\x03")  # Ctrl-C: a fresh prompt, the chat goes on
        after = terminal.wait_for(PROMPT, count=2)
        assert "^C" in after and "interrupted" not in after and "Traceback" not in after
        terminal.type("오늘 너무 힘들다\r")
        terminal.wait_for("고생 많았어요.")
        terminal.wait_for(PROMPT, count=3)
        terminal.type(":history\r")  # the dropped line was never asked
        history = terminal.wait_for(PROMPT, count=4).rsplit(":history", 1)[1]
        assert "1. 오늘 너무 힘들다 → 고생 많았어요." in history and "2." not in history
        terminal.type("\x04")  # Ctrl-D on an empty line: leave
        assert terminal.exit_status() == 0
        assert "Traceback" not in terminal.seen
    finally:
        terminal.close()


def test_ctrl_c_ends_a_chat_reading_piped_questions_with_130(tmp_path: Path) -> None:
    # No terminal, no prompt: questions piped in stop at Ctrl-C, as any command reading a pipe.
    env = {**os.environ, "KORQA_CACHE": str(tmp_path / "cache")}
    chat = subprocess.Popen([sys.executable, "-m", "korqa", *chat_argv(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        chat.stdin.write("오늘 너무 힘들다\n")
        chat.stdin.flush()
        assert "고생 많았어요." in chat.stdout.readline()  # answered: now it waits for more
        time.sleep(0.5)
        chat.send_signal(signal.SIGINT)
        out, err = chat.communicate(timeout=60)
    finally:
        chat.kill()
    assert (chat.returncode, err) == (130, "korqa chat: interrupted\n")


class SlowOnce:
    """A pipeline whose answer to one question is cut short by Ctrl-C."""

    def ask(self, question: str, top_k: int | None = None) -> object:
        from korqa.pipeline import Answer

        if question == "느린 질문":
            raise KeyboardInterrupt
        return Answer(question, "답", 0.9, True, "제목", "p:0", "답이 있는 문단", 0, 1, [],
                      "reader")


def test_ctrl_c_while_answering_drops_that_question_and_the_chat_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    typed = iter(["느린 질문", "다음 질문", ":history"])

    def keyboard(prompt: str) -> str:
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None  # Ctrl-D

    monkeypatch.setattr("builtins.input", keyboard)
    screen_out = io.StringIO()
    assert run_chat(SlowOnce(), stdout=screen_out, interactive=True) == 0  # type: ignore[arg-type]
    shown = screen_out.getvalue()
    assert "(interrupted: that question is dropped" in shown
    assert "1. 다음 질문 → 답" in shown and "느린 질문 →" not in shown
    # Piped questions stop there instead.
    with pytest.raises(KeyboardInterrupt):
        run_chat(SlowOnce(), io.StringIO("느린 질문\n다음 질문\n"), io.StringIO(),  # type: ignore[arg-type]
                 interactive=False)
