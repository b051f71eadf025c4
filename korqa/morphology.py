"""One Kiwi morphological analyser per process, shared by retrieval (morpheme terms) and the
reader (particle trimming): building one takes ~1 s and its first analysis loads its language
model (~1.5 s more), holding the GIL throughout, so two private copies made a first `korqa ask`
wait twice. Threads that ask for it at once (the server's worker and index writer) wait for the
one build.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_kiwi = None
_builds = 0  # how many analysers this process built: 1 at most (tests check it)


def kiwi():  # noqa: ANN201 - kiwipiepy is imported lazily
    """The shared analyser, built (and its language model loaded) on first use."""
    global _kiwi, _builds
    if _kiwi is not None:
        return _kiwi
    with _lock:  # a second thread asking meanwhile waits for this build, never starts its own
        if _kiwi is None:
            from kiwipiepy import Kiwi

            analyser = Kiwi()
            analyser.tokenize("가")  # the first analysis loads the language model
            _builds += 1
            _kiwi = analyser
    return _kiwi


def builds() -> int:
    """How many Kiwi analysers this process has built (0 or 1)."""
    return _builds
