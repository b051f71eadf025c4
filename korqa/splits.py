"""The KorQuAD split rules, defined once for training, evaluation and retrieval alike: which
articles are test, what each split name means, and how titles match.

  test              the articles whose index in the file's `data` list is 4 mod 5; nothing is
                    ever trained, tuned or selected on them
  validation        group-k-fold fold 0 (5 folds of whole articles, seed 0) of the other
                    articles: what `korqa train` validates on and what is tuned on
  train             the rest of the non-test articles
  train+validation  every non-test article
  all               every question

Neither torch nor scikit-learn here; numpy is imported only when a validation fold is cut.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import numpy as np

TEST_MODULUS = 5
TEST_REMAINDER = 4
SPLIT_NAMES = ("train", "validation", "train+validation", "test", "all")
TRAINING_SPLITS = ("train", "train+validation")  # what `korqa train` may fit a reader on
EVALUATION_SPLITS = ("test", "validation", "all")  # what `korqa evaluate` scores
FOLDS = 5
VALIDATION_FOLD = 0
SEED = 0


class _OfAnArticle(Protocol):
    """What the rules read of a question (`korqa.corpus.formats.SquadExample` is one)."""

    article_index: int  # its article's index in the file's `data` list


Example = TypeVar("Example", bound=_OfAnArticle)


def is_test_article(article_index: int) -> bool:
    return article_index % TEST_MODULUS == TEST_REMAINDER


def title_key(title: str) -> str:
    """A title as both KorQuAD ("노아의_방주") and Wikipedia dumps ("노아의 방주") spell it."""
    return " ".join(title.replace("_", " ").split())


def korquad_split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(train/validation examples, test examples) by the fixed article rule."""
    rest = [e for e in examples if not is_test_article(e.article_index)]
    test = [e for e in examples if is_test_article(e.article_index)]
    return rest, test


def group_folds(
    examples: Sequence[Example], folds: int = FOLDS, seed: int = SEED
) -> Iterator[tuple[list[Example], list[Example]]]:
    """(train, validation) pairs of `folds` folds of whole articles (questions on one article
    share its paragraphs, so splitting an article would leak answers into validation)."""
    import numpy as np

    if not examples:
        raise ValueError("no examples to split")
    articles = sorted({e.article_index for e in examples})
    if folds > len(articles):
        raise ValueError(f"{folds} folds need at least {folds} articles, got {len(articles)}")
    # Balancing question counts takes no seed; giving the articles seeded random labels lets
    # the seed choose among the equally balanced assignments.
    labels = dict(zip(articles, np.random.default_rng(seed).permutation(len(articles)),
                      strict=True))
    fold_of = balanced_group_folds(np.array([labels[e.article_index] for e in examples]), folds)
    for fold in range(folds):
        yield ([e for e, f in zip(examples, fold_of, strict=True) if f != fold],
               [e for e, f in zip(examples, fold_of, strict=True) if f == fold])


def balanced_group_folds(groups: np.ndarray, folds: int) -> np.ndarray:
    """Each sample's fold: groups placed largest first, each in the fold with the fewest
    samples so far. This is scikit-learn's GroupKFold (without shuffling), step for step and
    with the same numpy calls, so the folds, and every split named after them, are the ones
    korqa chose with scikit-learn (a test checks)."""
    import numpy as np  # noqa: F811 (the TYPE_CHECKING import names the type only)

    unique, group_of = np.unique(groups, return_inverse=True)
    sizes = np.bincount(group_of)
    order = np.argsort(sizes, kind="stable")[::-1]
    per_fold = np.zeros(folds)
    fold_of_group = np.zeros(len(unique))
    for group, size in zip(order, sizes[order], strict=True):
        lightest = np.argmin(per_fold)
        per_fold[lightest] += size
        fold_of_group[group] = lightest
    return fold_of_group[group_of]


def train_validation_test(
    examples: Sequence[Example], validation_fold: int = VALIDATION_FOLD, folds: int = FOLDS,
    seed: int = SEED,
) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, validation, test): test by the KorQuAD rule, validation = one group-k-fold fold
    of the remaining articles, train = the rest of them."""
    if not 0 <= validation_fold < folds:
        raise ValueError(f"validation_fold must be in 0..{folds - 1}, got {validation_fold}")
    rest, test = korquad_split(examples)
    for index, (train, validation) in enumerate(group_folds(rest, folds, seed)):
        if index == validation_fold:
            return train, validation, test
    raise AssertionError("unreachable: group_folds yields exactly `folds` pairs")


def select_split(
    examples: Sequence[Example], name: str, validation_fold: int = VALIDATION_FOLD,
    folds: int = FOLDS, seed: int = SEED,
) -> list[Example]:
    """The examples of one named split (see the module docstring), in file order."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
    if name == "all":
        return list(examples)
    rest, test = korquad_split(examples)
    if name in ("test", "train+validation"):
        return test if name == "test" else rest
    train, validation, _ = train_validation_test(examples, validation_fold, folds, seed)
    return train if name == "train" else validation


def sample_split(examples: Sequence[Example], limit: int | None,
                 seed: int = 0) -> list[Example]:
    """`limit` of `examples` drawn at random with `seed`, so the same seed draws the same
    questions (all of them, in order, when `limit` is None or not smaller)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise ValueError(f"the sample must hold at least one question, got {limit}")
    import random

    return random.Random(seed).sample(list(examples), limit)
