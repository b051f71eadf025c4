"""One Kiwi morphological analyser per process, shared by retrieval (morpheme terms) and the
reader (particle trimming): building one takes ~2 s and its first analysis loads its language
model (~3 s more), so two private copies made a first `korqa ask` wait twice."""

from __future__ import annotations

from functools import cache


@cache
def kiwi():  # noqa: ANN201 - kiwipiepy is imported lazily
    """The shared analyser, built on first use."""
    from kiwipiepy import Kiwi

    return Kiwi()
