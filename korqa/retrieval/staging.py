"""Where index writes stage their work: one writer at a time per index directory (across
processes), and fresh indexes built beside their final name.

A write (`korqa.retrieval.index._rebuild`, a fresh build, a finished swap) holds an exclusive
`flock` on DIR/write.lock for as long as it runs; the kernel lets go of it when the writer
exits, killed or not. So a process that can take the lock knows that no writer is alive, and
that staging folders it finds (`retriever.new/` beside a store it does not match, a
`.NAME.building-PID/` beside DIR) are what a killed writer left: it may remove them. A reader
that finds the store and the retriever of different generations while a writer holds the lock
waits for the write to end instead of failing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from korqa.errors import as_index_fault

T = TypeVar("T")

LOCK_FILE = "write.lock"
# How long a reader waits for a live writer to finish before reporting the state it found.
WRITER_WAIT = 120.0
_held = threading.local()  # the directories this thread holds the lock of (re-entrant)


def _held_here() -> set[str]:
    if not hasattr(_held, "directories"):
        _held.directories = set()
    return _held.directories


@contextlib.contextmanager
def write_lock(directory: Path) -> Iterator[None]:
    """Hold DIR/write.lock (made if missing) while the block runs; waits for another writer.
    Re-entrant within a thread; a failure to create the lock file raises (the folder is
    read-only: so is the write)."""
    key = str(directory.resolve())
    if key in _held_here():
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held_here().add(key)
        try:
            yield
        finally:
            _held_here().discard(key)
    finally:
        os.close(fd)


@contextlib.contextmanager
def unless_writing(directory: Path) -> Iterator[bool]:
    """Yield True, holding the lock, when no writer holds it and this process may write here;
    False (holding nothing) while a writer runs, or on a read-only folder."""
    if str(directory.resolve()) in _held_here():
        yield True
        return
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        _held_here().add(str(directory.resolve()))
        try:
            yield True
        finally:
            _held_here().discard(str(directory.resolve()))
    finally:
        os.close(fd)


def writer_active(directory: Path) -> bool:
    """Whether another writer holds DIR's lock now."""
    if str(directory.resolve()) in _held_here():
        return False
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False  # never written with a lock, or not ours to read
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def wait_for_writer(directory: Path, timeout: float = WRITER_WAIT) -> bool:
    """Wait until no writer holds DIR's lock (at most `timeout` s); whether one was running."""
    waited = False
    deadline = time.monotonic() + timeout
    while writer_active(directory) and time.monotonic() < deadline:
        waited = True
        time.sleep(0.05)
    return waited


def building_dir(target: Path) -> Path:
    """Where a fresh index for `target` is built before it is renamed into place."""
    return target.with_name(f".{target.name}.building-{os.getpid()}")


def remove_dead_builds(target: Path) -> list[Path]:
    """Remove the `.NAME.building-PID/` folders beside `target` whose builder is dead: its
    lock is free (or, without a lock file, no process PID runs). Returns what it removed."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for folder in target.parent.glob(f".{target.name}.building-*"):
        if folder.is_dir() and _builder_dead(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _builder_dead(folder: Path) -> bool:
    if (folder / LOCK_FILE).is_file():
        with unless_writing(folder) as free:
            return free
    pid = folder.name.rsplit("-", 1)[-1]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def create_beside(out: Path, build: Callable[[Path], T]) -> T:
    """Run `build` in a directory beside `out` and rename it into place; on failure remove it,
    and any parent folders made for it, so nothing is left that reads as a broken index."""
    absolute = out.resolve()
    made = [p for p in (absolute, *absolute.parents) if not p.exists()][1:]
    existing = next(p for p in absolute.parents if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{out}: {existing} is a file, not a folder; choose another --out")
    absolute.parent.mkdir(parents=True, exist_ok=True)
    staging = building_dir(absolute)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # Locked until renamed: a builder's free lock is what tells others it is dead.
        with as_index_fault(out), write_lock(staging):
            result = build(staging)
            if absolute.exists():  # an empty or unrelated folder: put the index files into it
                for child in staging.iterdir():
                    dest = absolute / child.name
                    if dest.is_dir():
                        shutil.rmtree(dest)
                    child.replace(dest)
                staging.rmdir()
            else:
                staging.rename(absolute)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return result
