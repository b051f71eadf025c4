"""One Kiwi morphological analyser per process, shared by retrieval (morpheme terms) and the
reader (particle trimming): building one and loading its language model (on the first
analysis) takes a second or more, holding the GIL throughout, so two private copies made a
first `korqa ask` wait twice. Threads that ask for it at once (the server's worker and index
writer) wait for the one build.

Kiwi is built with none of its user dictionaries (multi-word proper nouns such as "제럴드
포드", the default word list, typo corrections): they made every build slower and larger, while
without them the reader's EM/F1 on KorQuAD and retrieval recall stayed within a handful of
questions (bench/kiwi_dictionary.py; the numbers are in the README). Indexes whose morpheme
terms were made with them (`TermConfig.kiwi_dictionaries`) still get queries analysed with them.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
DICTIONARIES = ("default", "typo", "multi")  # Kiwi's load_default_dict, _typo_dict, _multi_dict
_analysers: dict[tuple[str, ...], object] = {}  # dictionaries -> the Kiwi built with them
_builds = 0  # how many analysers this process built (tests check it)


def kiwi(dictionaries: tuple[str, ...] | None = None):  # noqa: ANN201 - imported lazily
    """The shared analyser, built (and its language model loaded) on first use.

    dictionaries: which of Kiwi's DICTIONARIES it loads (an index's terms must be analysed as
    they were built); None for whichever analyser is built already, else the one with none
    (particle trimming reads alike with all of them).
    """
    global _builds
    if dictionaries is None and _analysers:
        return next(iter(_analysers.values()))
    wanted = tuple(sorted(set(dictionaries or ())))
    unknown = set(wanted) - set(DICTIONARIES)
    if unknown:
        raise ValueError(f"unknown Kiwi dictionaries {sorted(unknown)}; known: {DICTIONARIES}")
    if wanted in _analysers:
        return _analysers[wanted]
    with _lock:  # a second thread asking meanwhile waits for this build, never starts its own
        if wanted not in _analysers:
            from kiwipiepy import Kiwi

            analyser = Kiwi(load_default_dict="default" in wanted,
                            load_typo_dict="typo" in wanted, load_multi_dict="multi" in wanted)
            analyser.tokenize("가")  # the first analysis loads the language model
            _builds += 1
            _analysers[wanted] = analyser
    return _analysers[wanted]


def builds() -> int:
    """How many Kiwi analysers this process has built (1 in ordinary use)."""
    return _builds
