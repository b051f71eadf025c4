"""The `korqa chat` loop: read questions line by line, answer each, keep a history."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TextIO

from korqa.pipeline.answers import Answer
from korqa.pipeline.display import format_answer, format_sources
from korqa.pipeline.qa import QAPipeline

PROMPT = "질문> "
HELP = """Type a question in Korean and press Enter. Commands:
  :help      this help (also :h, :?)
  :sources   the answers and paragraphs behind the last answer (also :s)
  :history   the questions asked so far and their answers (also :hist)
  :quit      leave (also :q, :exit, or Ctrl-D)
Ctrl-C clears the line you are typing, or drops the question being answered."""


def run_chat(pipeline: QAPipeline, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
             top_k: int | None = None, color: bool = False, interactive: bool = False) -> int:
    """Answer questions until `:quit` or end of input; returns the exit status (0).

    Interactive (a terminal): a prompt, line editing and a banner, and Ctrl-C as in a shell:
    at the prompt it drops the line typed so far for a fresh prompt, while a question is
    being answered it drops that question; Ctrl-D on an empty line leaves. Otherwise
    questions are read from `stdin` as lines, so a file of questions can be piped in, and
    Ctrl-C stops the run (KeyboardInterrupt), as it stops any command reading a pipe.
    """
    history: list[Answer] = []

    def say(text: str = "") -> None:
        print(text, file=stdout, flush=True)

    if interactive:
        say("korqa chat — ask a question in Korean; :help lists commands, Ctrl-D leaves.")
    for raw in _lines(stdin, stdout, interactive):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(":"):
            command = line.split()[0].lower()
            if command in (":quit", ":q", ":exit"):
                break
            say(_command(command, history, color))
            continue
        try:
            answer = pipeline.ask(line, top_k)
        except (ValueError, FileNotFoundError) as error:
            # One bad question (or a missing model) must not end the conversation.
            say(f"error: {error}")
            continue
        except KeyboardInterrupt:
            if not interactive:
                raise
            say("(interrupted: that question is dropped; ask another, or Ctrl-D to leave)")
            continue
        history.append(answer)
        say(format_answer(answer, color))
    if interactive:
        say()
    return 0


def _command(command: str, history: list[Answer], color: bool) -> str:
    if command in (":help", ":h", ":?"):
        return HELP
    if command in (":sources", ":s"):
        return format_sources(history[-1], color) if history else "(no question asked yet)"
    if command in (":history", ":hist"):
        if not history:
            return "(no question asked yet)"
        return "\n".join(
            f"{n}. {a.question} → {a.answer if a.known else '(모르겠어요)'}"
            for n, a in enumerate(history, start=1))
    return f"unknown command {command!r}; :help lists the commands"


def _lines(stdin: TextIO, stdout: TextIO, interactive: bool) -> Iterator[str]:
    """Input lines until end of input (Ctrl-D at the prompt); Ctrl-C at the prompt drops the
    line typed so far and prompts afresh."""
    if not interactive:
        yield from stdin
        return
    try:
        import readline  # noqa: F401 - gives input() line editing and ↑ history

        editing = True
    except ImportError:
        editing = False
    while True:
        try:
            yield input(PROMPT)
        except EOFError:
            return
        except KeyboardInterrupt:
            # After the dropped text, "^C" as a shell shows it (readline turns the terminal's
            # own echo off; without it, the terminal echoed it), then a fresh prompt below.
            print("^C" if editing else "", file=stdout, flush=True)
