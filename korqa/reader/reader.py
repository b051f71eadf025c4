"""`Reader`: a loaded reader (engine, tokenizer, config) that answers one question over some
paragraphs. `korqa.reader.directory.ReaderDir.load` makes one from a model directory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from korqa.modeling.engines import ReaderEngine, as_engine
from korqa.reader.config import ReaderConfig
from korqa.reader.features import question_windows
from korqa.reader.predict import Candidate, decode_windows, read_logits
from korqa.tokenization import Encoding, Tokenizer

if TYPE_CHECKING:
    import torch


class CachingTokenizer(Tokenizer):
    """A `Tokenizer` that remembers the encodings of recent texts.

    A reader tokenises every paragraph it reads; popular paragraphs come back question after
    question, and the window cutting accepts any Tokenizer, so remembering encodings here saves
    that work. Encodings are never mutated downstream (windows slice them).
    """

    def __init__(self, base: Tokenizer, max_entries: int = 4096) -> None:
        super().__init__(base.backend, base.specials)
        self.max_entries = max_entries
        self._cache: OrderedDict[str, Encoding] = OrderedDict()

    def encode_batch(self, texts: list[str]) -> list[Encoding]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for text, encoding in zip(missing, super().encode_batch(missing), strict=True):
                self._cache[text] = encoding
        out = []
        for text in texts:
            self._cache.move_to_end(text)
            out.append(self._cache[text])
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return out


class Reader:
    """A span reader: an engine (`korqa.modeling.engines`; a bare torch model is read by a
    `TorchEngine`), its tokenizer and its `ReaderConfig`, loaded once.

    Windows are cut as the config says, but never longer than the engine reads
    (`ReaderConfig.fitted`). A paragraph longer than one window is read most promising window
    first, up to the first confident one (`korqa.reader.predict.read_logits`), unless the
    config's stop_confidence is None.
    """

    def __init__(self, engine: ReaderEngine | torch.nn.Module, tokenizer: Tokenizer,
                 config: ReaderConfig | None = None, directory: Path | None = None) -> None:
        self.engine = as_engine(engine)
        self.tokenizer = tokenizer if isinstance(tokenizer, CachingTokenizer) \
            else CachingTokenizer(tokenizer)
        self.config = (config or ReaderConfig()).fitted(self.engine.max_length)
        self.directory = directory  # where it was loaded from, when it was

    def read(self, question: str, contexts: Sequence[str], n_best: int | None = None,
             max_answer_length: int | None = None) -> list[list[Candidate]]:
        """The n-best `Candidate`s for each of `contexts`, best first, all windows read in one
        pass (at most the config's `max_windows` of them); `n_best` and `max_answer_length`
        replace the config's for this question."""
        if not contexts:
            return []
        config = replace(self.config,
                         n_best=self.config.n_best if n_best is None else n_best,
                         max_answer_length=self.config.max_answer_length
                         if max_answer_length is None else max_answer_length)
        features = question_windows(question, contexts, self.tokenizer, config)
        logits = read_logits(self.engine, features, self.tokenizer, config,
                             budget=config.max_windows)
        nbest = decode_windows(list(contexts), features, logits, config)
        # "" is what the reader answers when no span qualifies: no answer to offer.
        return [[c for c in candidates if c.text] for candidates in nbest]
