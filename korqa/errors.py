"""Expected faults of the world outside korqa (a full disk, a read-only folder, a damaged file):
typed, so that the CLI prints their one-line message and the server answers them with the
right status, never a traceback or a bare 500."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path


class IndexFault(Exception):
    """An index that cannot be written or read as it is; the message says why and what to do."""

    status = 503  # the HTTP status the server answers it with


class StorageFull(IndexFault):
    """The disk (or the user's quota) is full."""

    status = 507


class ReadOnlyIndex(IndexFault):
    """The index's folder or files cannot be written."""


class DamagedIndex(IndexFault):
    """An index file does not hold what it should (found while answering, or by a check)."""


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def storage_fault(error: BaseException, where: str | Path) -> IndexFault | None:
    """`error` (an OSError or a SQLite error met while writing `where`) as the fault it means,
    or None when it is none of them."""
    if isinstance(error, IndexFault):
        return error
    if isinstance(error, OSError) and error.errno in _FULL:
        return StorageFull(f"{where}: no space left on the disk ({error.strerror}); free some "
                           "space and try again: nothing was changed")
    if isinstance(error, OSError) and error.errno in _READ_ONLY:
        return ReadOnlyIndex(f"{where}: cannot write here ({error.strerror}: "
                             f"{error.filename or where}); the index is read-only to this "
                             "user or on a read-only disk: nothing was changed")
    if isinstance(error, sqlite3.OperationalError):
        message = str(error).lower()
        if "disk is full" in message or "database or disk is full" in message:
            return StorageFull(f"{where}: no space left on the disk ({error}); free some "
                               "space and try again: nothing was changed")
        if "readonly" in message or "read-only" in message:
            return ReadOnlyIndex(f"{where}: cannot write here ({error}); the index is "
                                 "read-only to this user or on a read-only disk: nothing "
                                 "was changed")
    return None


@contextlib.contextmanager
def as_index_fault(where: str | Path) -> Iterator[None]:
    """A full disk or a read-only folder met inside the block raised as its typed fault (one
    line for the CLI, 507 or 503 for the server); anything else as it was."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as error:
        fault = storage_fault(error, where)
        if fault is None:
            raise
        raise fault from None
