"""Korean-aware index terms, decided in one place: character n-grams inside words, Kiwi morphemes.

Korean attaches particles and endings to words (임종석이, 임종석은), so whole words match badly;
character n-grams inside each word (never across a space) match the shared stem, and unigrams
keep one-syllable words (산, 강, 왕) that bm25s's default splitter would drop. Text is NFC
normalised (decomposed jamo would break syllable n-grams) and only case-folded: Hangul has no
case, so `str.lower` leaves it intact, and accents are never stripped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from korqa.morphology import kiwi

_WORD = re.compile(r"\w+")
# Morpheme terms get a prefix that no n-gram can contain (n-grams are made of \w characters
# only), so the morpheme 산 and the unigram 산 stay separate terms with separate weights.
MORPHEME_PREFIX = "m:"
# Nouns, verb/adjective stems, roots, foreign words, numbers and hanja carry the content.
CONTENT_TAGS = ("NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "SL", "SN", "SH")


@dataclass(frozen=True)
class TermConfig:
    """Which terms a text yields. Saved with every index, so queries get the same terms.

    ngrams:      n-gram lengths taken inside each word; a word shorter than the smallest n is
                 kept whole, so one-syllable words are never lost.
    words:       also emit each whole word.
    morphemes:   also emit Kiwi content morphemes (slow: ~30k chars/s; fine for small corpora).
    kiwi_dictionaries: which of Kiwi's own dictionaries the morpheme analyser loads
                 (`korqa.morphology` says why none); indexes saved before this field were
                 built with them.
    """

    ngrams: tuple[int, ...] = (1, 2)
    words: bool = False
    morphemes: bool = False
    morpheme_tags: tuple[str, ...] = field(default=CONTENT_TAGS)
    kiwi_dictionaries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.ngrams and not self.words and not self.morphemes:
            raise ValueError("TermConfig: at least one of ngrams, words, morphemes is needed")
        if any(not isinstance(n, int) or n < 1 for n in self.ngrams):
            raise ValueError(f"TermConfig.ngrams: lengths must be positive integers, "
                             f"got {self.ngrams}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ngrams"] = list(self.ngrams)
        data["morpheme_tags"] = list(self.morpheme_tags)
        data["kiwi_dictionaries"] = list(self.kiwi_dictionaries)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TermConfig:
        known = {"ngrams", "words", "morphemes", "morpheme_tags", "kiwi_dictionaries",
                 "multi_words"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"TermConfig: unknown field(s) {sorted(unknown)}")
        values = dict(data)
        # Saved before kiwi_dictionaries: with every dictionary, or (for a while) all but the
        # multi-word one when multi_words was false.
        multi_words = values.pop("multi_words", True)
        values.setdefault("kiwi_dictionaries",
                          ("default", "typo", "multi") if multi_words else ("default", "typo"))
        for key in ("ngrams", "morpheme_tags", "kiwi_dictionaries"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def normalize(text: str) -> str:
    """NFC and case-folding; Hangul passes through unchanged."""
    return unicodedata.normalize("NFC", text).lower()


def words(text: str) -> list[str]:
    """Runs of word characters (Hangul, Latin, digits, CJK…) of the normalised text."""
    return _WORD.findall(normalize(text))


class TermAnalyzer:
    """Turns text into a list of terms (with repeats: counts matter for BM25 and TF-IDF)."""

    def __init__(self, config: TermConfig | None = None) -> None:
        self.config = config or TermConfig()
        self._tags = frozenset(self.config.morpheme_tags)

    def __call__(self, text: str) -> list[str]:
        return self.many([text])[0]

    def many(self, texts: list[str]) -> list[list[str]]:
        """Terms of each text; morphemes are analysed as one Kiwi batch."""
        config = self.config
        lengths = sorted(set(config.ngrams))
        shortest = lengths[0] if lengths else 0
        unigrams, bigrams = 1 in lengths, 2 in lengths
        longer = [n for n in lengths if n > 2]
        out: list[list[str]] = []
        # The hot loop of indexing (kowiki has ~10^9 n-grams): lengths 1 and 2 are inlined and
        # take C-level paths. Each word gives its n-grams of every length, shortest first, or
        # itself once when shorter than the shortest.
        for text in texts:
            terms: list[str] = []
            extend = terms.extend
            for word in words(text):
                if lengths:
                    if len(word) < shortest:
                        terms.append(word)
                    else:
                        if unigrams:
                            extend(word)
                        if bigrams:
                            extend(map(str.__add__, word, word[1:]))
                        for n in longer:
                            extend([word[i:i + n] for i in range(len(word) - n + 1)])
                if config.words:
                    terms.append(word)
            out.append(terms)
        if config.morphemes:
            analysed = kiwi(config.kiwi_dictionaries).tokenize([normalize(t) for t in texts])
            for terms, tokens in zip(out, analysed, strict=True):
                terms.extend(MORPHEME_PREFIX + tok.form for tok in tokens if tok.tag in self._tags)
        return out
