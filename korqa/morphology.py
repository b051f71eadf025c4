"""One Kiwi morphological analyser per process, shared by retrieval (morpheme terms) and the
reader (particle trimming): building one and loading its language model (on the first
analysis) takes a second or more, holding the GIL throughout, so two private copies made a
first `korqa ask` wait twice. Threads that ask for it at once (the server's worker and index
writer) wait for the one build.

Kiwi is built without its multi-word dictionary (multi-word proper nouns such as "제럴드 포드"
as one morpheme): that dictionary doubled the build's CPU time and added a third to its memory,
while without it the reader's EM/F1 on KorQuAD stayed the same and retrieval recall moved by a
handful of questions (the numbers are in the commit that made the change). Indexes whose
morpheme terms were made with it (`TermConfig.multi_words`: korqa before that change) still
get queries analysed with it.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_analysers: dict[bool, object] = {}  # multi_words -> the Kiwi built with that dictionary
_builds = 0  # how many analysers this process built (tests check it)


def kiwi(multi_words: bool | None = None):  # noqa: ANN201 - kiwipiepy is imported lazily
    """The shared analyser, built (and its language model loaded) on first use.

    multi_words: True or False for the analyser with or without Kiwi's multi-word dictionary
    (an index's terms must be analysed as they were built); None for whichever one is built
    already, else the one without (particle trimming reads alike with both).
    """
    global _builds
    if multi_words is None and _analysers:
        return next(iter(_analysers.values()))
    wanted = bool(multi_words)
    if wanted in _analysers:
        return _analysers[wanted]
    with _lock:  # a second thread asking meanwhile waits for this build, never starts its own
        if wanted not in _analysers:
            from kiwipiepy import Kiwi

            analyser = Kiwi(load_multi_dict=wanted)
            analyser.tokenize("가")  # the first analysis loads the language model
            _builds += 1
            _analysers[wanted] = analyser
    return _analysers[wanted]


def builds() -> int:
    """How many Kiwi analysers this process has built (1 in ordinary use)."""
    return _builds
