"""What Linux's /proc says about a process: its descendants, CPU time and memory.

The benchmarks and the multi-process tests use it to measure a server and to stop everything it
started (Ray's workers start process groups of their own, so killing one group misses them).
Each function answers None, or an empty result, for a process that is gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat after the command name, which may hold spaces and parentheses."""
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def process_tree(roots: Iterable[int]) -> set[int]:
    """`roots` and every process below them."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(entry.name)[1])
            except (OSError, IndexError, ValueError):  # it ended while we read
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    """The resident set now ("VmRSS") and at its peak ("VmHWM"), in MiB."""
    found = {}
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024  # the file counts kB
    return found
