"""The reader's examples: validated SQuAD records, read and defined in `korqa.corpus.formats`
(named here for the reader modules that take them)."""

from korqa.corpus.formats import SquadExample

__all__ = ["SquadExample"]
