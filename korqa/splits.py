"""The KorQuAD split rule and title matching: defined once, read by training, evaluation and
retrieval alike (no torch, no scikit-learn here).

Test = the articles whose index in the file's `data` list is 4 mod 5. Nothing is ever
trained, tuned or selected on them.
"""

from __future__ import annotations

TEST_MODULUS = 5
TEST_REMAINDER = 4


def is_test_article(article_index: int) -> bool:
    return article_index % TEST_MODULUS == TEST_REMAINDER


def title_key(title: str) -> str:
    """A title as both KorQuAD ("노아의_방주") and Wikipedia dumps ("노아의 방주") spell it."""
    return " ".join(title.replace("_", " ").split())
