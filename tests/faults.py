"""Fault injection for tests that SIGKILL a real process in the middle of a write: code that a
test puts before the script it runs with `python -c`, arming korqa's commit seam
(`korqa.retrieval.index.commit_step`) in that process only."""

from __future__ import annotations

from pathlib import Path

_PAUSE = """
import time as _time
from pathlib import Path as _Path

import korqa.retrieval.index as _index


def _pause_at(step, _passed=_index.commit_step):
    _passed(step)
    if step == {step!r}:
        _Path({flag!r}).touch()
        while True:
            _time.sleep(1)


_index.commit_step = _pause_at
"""


def paused_at(step: str | None, flag: Path) -> str:
    """Python code that makes the process it runs in stop its commits at `step` ("saved",
    "committed" or "swapping"): it creates `flag` there and sleeps until killed. No code for
    None."""
    return "" if step is None else _PAUSE.format(step=step, flag=str(flag))
