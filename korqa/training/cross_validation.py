"""The cross-validation family over KorQuAD's non-test articles, and `korqa split`'s files.

What the split names mean (the test rule, the validation fold) is `korqa.splits`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold

from korqa.corpus.formats import SquadExample, load_json, read_squad_json, subset_dataset
from korqa.questions import question_type
from korqa.splits import group_folds, korquad_split
from korqa.training.config import Scheme, SplitConfig, SplitFormat

SCHEMES: tuple[str, ...] = get_args(Scheme)
FORMATS: tuple[str, ...] = get_args(SplitFormat)


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
    if scheme == "group-kfold":
        yield from group_folds(examples, folds, seed)
        return
    indices = np.arange(len(examples))
    if scheme == "kfold":
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


def write_splits(config: SplitConfig) -> dict[str, Any]:
    """Write the splits of the SQuAD file `config.data` as id lists or SQuAD files; returns
    what was written.

    Every scheme holds the KorQuAD test articles out (OUT/test). "korquad" writes the rest as
    OUT/train_validation; the CV schemes split the rest into OUT/fold{i}/train and
    OUT/fold{i}/validation for every fold (or only `config.fold`). File names end in .ids.json
    (a JSON list of question ids, in file order) or .json (the SQuAD file cut down to those
    questions).
    """
    data, scheme, folds, fold, seed = (config.data, config.scheme, config.folds, config.fold,
                                       config.seed)
    file_format = config.file_format
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

    out = Path(config.out)
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
