"""Extra training data made ready for `korqa train --extra-data`: markup cut out of contexts
(TyDi QA keeps Wikipedia's `</b>` tags, and a tag in a window is noise the reader must learn to
skip), and the articles of KorQuAD's test split dropped, so that no test article is trained on
under another dataset's name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from korqa.corpus.formats import load_json, read_squad, read_squad_json, without_markup, write_json
from korqa.splits import select_split


@dataclass
class CleanConfig:
    """What `korqa clean-squad` writes; the "help" metadata is its `--help` (korqa.cli_options)."""

    data: str = field(metadata={"help": "SQuAD-format JSON to clean (.json.gz ok)",
                                "metavar": "FILE"})
    out: str = field(metadata={"help": "SQuAD JSON to write (.json.gz ok)", "metavar": "FILE"})
    drop_test_of: list[str] = field(default_factory=list, metadata={
        "help": "KorQuAD files whose test-split article titles are dropped", "metavar": "FILE"})


def write_clean(config: CleanConfig) -> dict[str, Any]:
    """Write `config.out` (`without_markup`, test articles dropped), read it back as any SQuAD
    file is read, and count what changed."""
    test_titles = {example.title for path in config.drop_test_of
                   for example in select_split(read_squad(path), "test")}
    cleaned, counts = without_markup(load_json(config.data), test_titles, config.data)
    write_json(cleaned, config.out)
    return {"out": config.out, "questions": len(read_squad_json(cleaned, config.out)), **counts}
