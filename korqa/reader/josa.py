"""Cut trailing Korean particles (josa) and copula endings off predicted answer spans."""

from __future__ import annotations

import re
from functools import lru_cache

from korqa.morphology import kiwi

# Kiwi (Sejong-style) tags. J*: case markers JK*, auxiliary JX, conjunctive JC.
_PARTICLE_PREFIXES = ("JK", "JX", "JC")
_COPULA = "VCP"
_ENDING_PREFIX = "E"  # EP, EF, EC, ETN, ETM


def trim_particles(text: str) -> str:
    """`text` without its trailing particles / copula; the start never moves, never empty.

    KorQuAD's gold answers stop before the particle, so "임종석이" → "임종석",
    "1989년 2월 15일에" → "1989년 2월 15일", "화강암이다" → "화강암". Prefer `particle_cut`
    with the context when there is one: Kiwi reads a word better with what follows it.
    """
    return text[:particle_cut(text, 0, len(text))]


def particle_cut(context: str, start: int, end: int) -> int:
    """New end for the span [start, end) of `context` with trailing particles cut off.

    Particles and endings attach to the span's last word, so Kiwi reads that word, the rest
    of it past the span, and the next word: a name read alone is easily mistaken for stem +
    particle ("현정은" alone is 현정 + 은/JX, but in "현정은 현대그룹 회장" it is one name; on
    KorQuAD dev's 5,774 gold answers this context halves the spans Kiwi would wrongly cut).
    Short texts also keep Kiwi fast and let candidates that end alike share the cache.
    """
    if not 0 <= start < end <= len(context) or not _is_hangul(context[end - 1]):
        # Particles, copula and endings are all Hangul: other spans keep their end (and skip Kiwi).
        return end
    word_start = start
    for position in range(end - 1, start, -1):
        if context[position - 1].isspace():
            word_start = position
            break
    match = _NEXT_WORD.match(context, end)
    return word_start + _cut(context[word_start:match.end()], end - word_start)


# The rest of the word the span ends in, then the next word: the context Kiwi sees.
_NEXT_WORD = re.compile(r"\S*(?:\s+\S+)?")


@lru_cache(maxsize=200_000)
def _cut(text: str, span_end: int) -> int:
    """How much of text[:span_end] (one word, no spaces) to keep; span_end when nothing goes.

    Morphemes come from Kiwi with their character positions in `text`; the cut is made in
    `text` at a morpheme's position, never by joining morpheme forms (Kiwi's forms are
    normalised: "입니다" is 이 + ᆸ니다).

    The trailing run of particles (JK*, JX, JC), copula (VCP) and endings (E*) is cut, except
    endings that hang on a verb or adjective rather than on the copula: "발견하여" would become
    the bare stem "발견하", and "갔다" (가 + 었 + 다) cannot be cut inside its first syllable.
    Worked example, span "학생입니다" of "학생입니다 그":

        morphemes  학생/NNG [0,2)   이/VCP [2,3)   ᆸ니다/EF [2,5)   (그/MM [6,7) lies outside)
        run        이/VCP, ᆸ니다/EF   (starts with the copula, so its endings go with it)
        kept       학생 ends at 2   -> cut = max(2, start of 이 = 2) = 2 -> "학생"

    and "주도한" (주도/NNG 하/XSV ᆫ/ETM): the run is only ᆫ/ETM, an ending on 하, so nothing goes.
    """
    morphemes = [m for m in kiwi().tokenize(text) if m.start < span_end]
    run_start = len(morphemes)
    while run_start > 0:
        last = morphemes[run_start - 1]
        # A morpheme running past the span's end is not the span's to cut.
        if last.start + last.len > span_end or not _trimmable(last.tag):
            break
        run_start -= 1
    # Endings at the head of the run belong to the predicate before them (not the copula).
    while run_start < len(morphemes) and morphemes[run_start].tag.startswith(_ENDING_PREFIX):
        run_start += 1
    kept, cut_away = morphemes[:run_start], morphemes[run_start:]
    if not kept or not cut_away:
        return span_end
    kept_end = max(m.start + m.len for m in kept)
    # A contracted syllable (입 = 이 + ᆸ) belongs to both sides; it stays with the kept part.
    return max(kept_end, min(m.start for m in cut_away))


def is_particle_tail(text: str, keep: int) -> bool:
    """Whether text[keep:] is non-empty and only particles / copula / endings (0 < keep).

    Used to tell "gold answer + particle" predictions apart from other boundary errors:
    is_particle_tail("임종석이", 3) is True, is_particle_tail("임종석의 아들", 3) is False.
    """
    if not 0 < keep < len(text):
        return False
    morphemes = kiwi().tokenize(text)
    tail = [m for m in morphemes if m.start + m.len > keep]
    return bool(tail) and all(m.start >= keep and _trimmable(m.tag) for m in tail)


def _is_hangul(char: str) -> bool:
    return "가" <= char <= "힣"


def _trimmable(tag: str) -> bool:
    return tag.startswith(_PARTICLE_PREFIXES) or tag == _COPULA or tag.startswith(_ENDING_PREFIX)
