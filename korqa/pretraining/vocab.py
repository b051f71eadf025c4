"""Train a cased Korean WordPiece vocabulary (`korqa vocab`) and measure it on KorQuAD text."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer

from korqa.corpus.formats import corpus_files, iter_documents, read_squad
from korqa.pretraining.data import read_documents
from korqa.tokenization import VOCAB_FILE, Tokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
KORQUAD_DEV = Path("data") / "korquad" / "KorQuAD_v1.0_dev.json"


@dataclass
class VocabConfig:
    """One vocabulary; the defaults suit Korean Wikipedia and a BERT-base-sized vocabulary."""

    # The "help" metadata is each knob's `korqa vocab` help (korqa.cli_options).
    corpus: list[str] = field(metadata={
        "help": "kowiki .jsonl[.xz], SQuAD .json[.gz], .txt/.md files, or folders",
        "metavar": "PATH"})  # as `korqa.corpus.formats` reads them
    out: str = field(metadata={"help": "directory to write", "metavar": "DIR"})
    size: int = field(default=32_000, metadata={"help": "vocabulary size", "metavar": "N"})
    max_docs: int | None = field(default=None, metadata={
        "help": "read N documents in all, spread evenly over the corpus files", "metavar": "N"})
    # A merge seen once is noise (typos, one-off names).
    min_frequency: int = field(default=2, metadata={
        "help": "pairs seen fewer times are never merged into one piece", "metavar": "N"})
    # Hangul alone has 11,172 syllables, and Wikipedia adds Hanja, kana and symbols. Characters
    # outside the alphabet turn their whole word into [UNK], so keep the common few thousand.
    limit_alphabet: int = field(default=6_000, metadata={
        "help": "most frequent characters kept as the initial alphabet", "metavar": "N"})
    # SQuAD files to report [UNK]/pieces on; `korqa vocab` defaults to `default_eval_data()`.
    eval_data: list[str] = field(default_factory=list, metadata={
        "help": "SQuAD-format files to measure on (default: shared KorQuAD dev)",
        "metavar": "FILE"})
    progress: bool = field(default=True, metadata={"help": "hide the progress bars",
                                                   "flag": "--no-progress"})


def iter_corpus(paths: Iterable[str | Path], max_docs: int | None = None) -> Iterator[str]:
    """Titles aside, every paragraph of the corpus (`korqa.corpus.formats`)."""
    files = corpus_files(paths)
    per_file = math.ceil(max_docs / len(files)) if max_docs else None
    for paragraphs in read_documents(files, per_file):
        yield from paragraphs


def eval_texts(path: str | Path) -> list[str]:
    """The questions and the distinct contexts of a SQuAD-format file."""
    questions = [example.question for example in read_squad(path)]
    return questions + [paragraph.text for document in iter_documents([path])
                        for paragraph in document.paragraphs]


def default_eval_data() -> list[str]:
    """The shared KorQuAD dev file when it is there ($KORQA_SHARED or the checkout's sibling)."""
    shared = Path(os.environ.get("KORQA_SHARED", Path(__file__).resolve().parents[2].parent
                                 / "shared"))
    path = shared / KORQUAD_DEV
    return [str(path)] if path.is_file() else []


def new_backend() -> HFTokenizer:
    """An untrained WordPiece with BERT's cased pipeline: no lower-casing, no accent stripping
    (NFD would break Hangul syllables into jamo), Chinese characters split one by one."""
    backend = HFTokenizer(WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return backend


def train_vocab(texts: Iterable[str], size: int = 32_000, min_frequency: int = 2,
                limit_alphabet: int | None = 6_000, progress: bool = False) -> list[str]:
    """The WordPiece vocabulary of `texts`, specials first ([PAD] = 0), in id order."""
    backend = new_backend()
    trainer = WordPieceTrainer(vocab_size=size, min_frequency=min_frequency,
                               special_tokens=SPECIAL_TOKENS, limit_alphabet=limit_alphabet,
                               continuing_subword_prefix="##", show_progress=progress)
    backend.train_from_iterator(texts, trainer)
    by_id = sorted(backend.get_vocab().items(), key=lambda item: item[1])
    return [token for token, _ in by_id]


def vocab_stats(tokenizer: Tokenizer, texts: list[str], batch: int = 1024) -> dict[str, float]:
    """[UNK] share (of pieces and of words) and mean pieces per word; words are what BERT's
    pre-tokenizer sees (whitespace-separated, each punctuation mark its own word)."""
    pieces = words = unk_pieces = unk_words = 0
    for start in range(0, len(texts), batch):
        for encoding in tokenizer.backend.encode_batch(texts[start:start + batch],
                                                       add_special_tokens=False):
            ids, word_ids = encoding.ids, encoding.word_ids
            pieces += len(ids)
            words += len(set(word_ids))
            unk = {w for token, w in zip(ids, word_ids, strict=True)
                   if token == tokenizer.unk_id}
            unk_pieces += sum(token == tokenizer.unk_id for token in ids)
            unk_words += len(unk)
    return {"texts": len(texts), "words": words, "pieces": pieces,
            "unk_share": unk_pieces / max(1, pieces), "unk_word_share": unk_words / max(1, words),
            "pieces_per_word": pieces / max(1, words)}


def write_vocab(config: VocabConfig) -> dict:
    """`korqa vocab`: `build_vocab`, measured on the shared KorQuAD dev file when no
    --eval-data is given (`default_eval_data`)."""
    return build_vocab(replace(config, eval_data=config.eval_data or default_eval_data()))


def build_vocab(config: VocabConfig) -> dict:
    """Train, write `vocab.txt` + `tokenizer.json` (+ tokenizer_config.json) and report."""
    started = time.perf_counter()
    out = Path(config.out)
    texts = _CountingTexts(iter_corpus(config.corpus, config.max_docs))
    vocab = train_vocab(texts, config.size, config.min_frequency, config.limit_alphabet,
                        config.progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / VOCAB_FILE).write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    # Rebuilt through korqa's own loader, so the saved tokenizer.json is exactly what
    # `Tokenizer.from_vocab` makes of this vocab.txt (offsets, decoder, post-processor).
    tokenizer = Tokenizer.from_vocab(out / VOCAB_FILE)
    tokenizer.save(out)
    hangul = sum(1 for token in vocab if any("\uac00" <= c <= "\ud7a3" for c in token))
    report = {"out": str(out), "vocab_size": tokenizer.vocab_size,
              "paragraphs": texts.count, "characters": texts.characters,
              "hangul_tokens": hangul,
              "train_seconds": round(time.perf_counter() - started, 1)}
    for path in config.eval_data:
        report[f"eval:{Path(path).name}"] = vocab_stats(tokenizer, eval_texts(path))
    (out / "vocab_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")
    return report


class _CountingTexts:
    """Passes texts through while counting them (the trainer consumes the iterator)."""

    def __init__(self, texts: Iterator[str]) -> None:
        self.texts, self.count, self.characters = texts, 0, 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            self.count += 1
            self.characters += len(text)
            yield text
