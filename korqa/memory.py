"""Giving freed memory back to the system: glibc keeps freed heap pages for reuse, so a server
that parsed a large graph once, or read a long paragraph, would hold that memory for good."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _malloc_trim():  # noqa: ANN202 - a ctypes function, or None
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def return_freed_memory() -> None:
    """Ask the C library to return freed heap pages (glibc's malloc_trim); a no-op where there
    is no malloc_trim."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
