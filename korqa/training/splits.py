"""Train/validation/test splits of KorQuAD: the fixed test rule and the cross-validation family."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, KFold, ShuffleSplit, StratifiedKFold

from korqa.questions import QUESTION_TYPES, question_type  # noqa: F401 (re-exported)
from korqa.reader.squad import SquadExample, load_json, read_squad_json, subset_dataset

SCHEMES = ("korquad", "group-kfold", "kfold", "stratified", "shuffle")
SPLIT_NAMES = ("train", "validation", "test", "all")
FORMATS = ("ids", "squad")

# The fixed KorQuAD rule: articles whose index in `data` is 4 mod 5 are the test set.
TEST_MODULUS = 5
TEST_REMAINDER = 4


def title_key(title: str) -> str:
    """A title as both KorQuAD ("노아의_방주") and Wikipedia dumps ("노아의 방주") spell it."""
    return " ".join(title.replace("_", " ").split())


def is_test_article(article_index: int) -> bool:
    return article_index % TEST_MODULUS == TEST_REMAINDER


def korquad_split(
    examples: list[SquadExample],
) -> tuple[list[SquadExample], list[SquadExample]]:
    """(train/validation examples, test examples) by the fixed article rule."""
    rest = [e for e in examples if not is_test_article(e.article_index)]
    test = [e for e in examples if is_test_article(e.article_index)]
    return rest, test


def cv_folds(
    examples: list[SquadExample], scheme: str = "group-kfold", folds: int = 5, seed: int = 0
) -> Iterator[tuple[list[SquadExample], list[SquadExample]]]:
    """(train, validation) pairs of a cross-validation scheme over `examples`, fold by fold.

    group-kfold  whole articles per fold (the default: questions on one article share its
                 paragraphs, so splitting an article leaks answers into validation)
    kfold        questions shuffled into `folds` folds
    stratified   as kfold, keeping each fold's mix of `question_type`s
    shuffle      `folds` independent random splits, each holding out 1/`folds` of the questions
    """
    if scheme not in SCHEMES or scheme == "korquad":
        choices = ", ".join(s for s in SCHEMES if s != "korquad")
        raise ValueError(f"unknown cross-validation scheme {scheme!r}; choose one of {choices}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if not examples:
        raise ValueError("no examples to split")
    indices = np.arange(len(examples))
    if scheme == "group-kfold":
        articles = sorted({e.article_index for e in examples})
        if folds > len(articles):
            raise ValueError(f"{folds} folds need at least {folds} articles, got {len(articles)}")
        # GroupKFold balances question counts per fold but takes no seed; giving the articles
        # seeded random labels lets the seed choose among the equally balanced assignments
        # (groups of the same size are placed in label order) on every scikit-learn version.
        labels = dict(zip(articles, np.random.default_rng(seed).permutation(len(articles)),
                          strict=True))
        groups = [labels[e.article_index] for e in examples]
        splits = GroupKFold(n_splits=folds).split(indices, groups=groups)
    elif scheme == "kfold":
        splits = KFold(n_splits=folds, shuffle=True, random_state=seed).split(indices)
    elif scheme == "stratified":
        types = [question_type(e.question) for e in examples]
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            indices, types
        )
    else:
        splits = ShuffleSplit(n_splits=folds, test_size=1 / folds, random_state=seed).split(
            indices
        )
    for train_index, validation_index in splits:
        yield ([examples[i] for i in sorted(train_index)],
               [examples[i] for i in sorted(validation_index)])


def train_validation_test(
    examples: list[SquadExample], validation_fold: int = 0, folds: int = 5, seed: int = 0
) -> tuple[list[SquadExample], list[SquadExample], list[SquadExample]]:
    """(train, validation, test): test by the KorQuAD rule, validation = one group-k-fold fold
    of the remaining articles, train = the rest of them."""
    if not 0 <= validation_fold < folds:
        raise ValueError(f"validation_fold must be in 0..{folds - 1}, got {validation_fold}")
    rest, test = korquad_split(examples)
    for index, (train, validation) in enumerate(cv_folds(rest, "group-kfold", folds, seed)):
        if index == validation_fold:
            return train, validation, test
    raise AssertionError("unreachable: cv_folds yields exactly `folds` pairs")


def select_split(
    examples: list[SquadExample],
    name: str,
    validation_fold: int = 0,
    folds: int = 5,
    seed: int = 0,
) -> list[SquadExample]:
    """The examples of one named split: "train" | "validation" | "test" | "all"."""
    if name == "all":
        return list(examples)
    if name not in SPLIT_NAMES:
        raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
    if name == "test":
        return korquad_split(examples)[1]
    train, validation, test = train_validation_test(examples, validation_fold, folds, seed)
    return {"train": train, "validation": validation, "test": test}[name]


def write_splits(
    data: str | Path,
    out: str | Path,
    scheme: str = "korquad",
    folds: int = 5,
    fold: int | None = None,
    seed: int = 0,
    file_format: str = "ids",
) -> dict[str, Any]:
    """Write the splits of a SQuAD file as id lists or SQuAD files; returns what was written.

    Every scheme holds the KorQuAD test articles out (OUT/test). "korquad" writes the rest as
    OUT/train_validation; the CV schemes split the rest into OUT/fold{i}/train and
    OUT/fold{i}/validation for every fold (or only `fold`). File names end in .ids.json (a JSON
    list of question ids, in file order) or .json (the SQuAD file cut down to those questions).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; choose one of {', '.join(FORMATS)}")
    if fold is not None and not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
    obj = load_json(data)
    examples = read_squad_json(obj, source=str(data))
    rest, test = korquad_split(examples)
    parts: dict[str, list[SquadExample]] = {"test": test}
    if scheme == "korquad":
        parts["train_validation"] = rest
    else:
        for index, (train, validation) in enumerate(cv_folds(rest, scheme, folds, seed)):
            if fold is None or index == fold:
                parts[f"fold{index}/train"] = train
                parts[f"fold{index}/validation"] = validation

    out = Path(out)
    suffix = ".ids.json" if file_format == "ids" else ".json"
    files = {}
    for name, part in parts.items():
        path = out / f"{name}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = [example.qid for example in part]
        content = ids if file_format == "ids" else subset_dataset(obj, set(ids))
        path.write_text(json.dumps(content, ensure_ascii=False, indent=1) + "\n",
                        encoding="utf-8")
        files[str(path)] = {"questions": len(part),
                            "articles": len({example.article_index for example in part})}
    summary = {"data": str(data), "scheme": scheme, "folds": folds, "fold": fold, "seed": seed,
               "format": file_format, "files": files}
    (out / "splits.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                                     encoding="utf-8")
    return summary
