"""One tokenizer for korqa: a WordPiece `vocab.txt` or any `tokenizer.json`, with character offsets.

Everything that turns text into ids goes through `Tokenizer`, so offsets, special tokens and
pair layouts are decided in one place. Two families of special tokens are known:

    BERT   [CLS] question [SEP] context [SEP]          token types 0…0 1…1
    XLM-R  <s> question </s></s> context </s>          token types all 0

Korean needs care: text is never lower-cased and accents are never stripped (NFD would split
Hangul syllables into jamo), and every offset points into the caller's original string.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
METASPACE = "\u2581"  # SentencePiece's visible space


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens of one model family and how a sentence pair is laid out."""

    cls: str
    sep: str
    pad: str
    unk: str
    mask: str
    # Separators between the two segments: BERT uses one [SEP], XLM-R two </s>.
    pair_separators: int
    # Whether the second segment gets token type 1 (BERT) or stays 0 (XLM-R/RoBERTa).
    second_segment_type: int


BERT_SPECIALS = SpecialTokens("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", 1, 1)
XLMR_SPECIALS = SpecialTokens("<s>", "</s>", "<pad>", "<unk>", "<mask>", 2, 0)


@dataclass(frozen=True)
class Encoding:
    """Token ids of one text (no special tokens) and each token's [start, end) in that text."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    tokens: list[str]

    def __len__(self) -> int:
        return len(self.ids)


class Tokenizer:
    """A thin, typed wrapper over a `tokenizers.Tokenizer` that knows its model's special tokens."""

    def __init__(self, backend: HFTokenizer, specials: SpecialTokens | None = None) -> None:
        self.backend = backend
        self.specials = specials or _detect_specials(backend)
        ids = {}
        for field in ("cls", "sep", "pad", "unk", "mask"):
            token = getattr(self.specials, field)
            token_id = backend.token_to_id(token)
            if token_id is None and field != "mask":
                raise ValueError(f"tokenizer has no special token {token!r} ({field})")
            ids[field] = token_id
        self.cls_id: int = ids["cls"]
        self.sep_id: int = ids["sep"]
        self.pad_id: int = ids["pad"]
        self.unk_id: int = ids["unk"]
        self.mask_id: int | None = ids["mask"]
        self._piece_weights: np.ndarray | None = None
        self._install_post_processor()

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_vocab(cls, vocab_path: str | Path, max_chars_per_word: int = 100) -> Tokenizer:
        """The seed's FullTokenizer (Basic + WordPiece tokenizers), cased, no accent strip."""
        vocab = _read_vocab(Path(vocab_path))
        backend = HFTokenizer(
            WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=max_chars_per_word)
        )
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece()  # joins "##" continuations when decoding
        return cls(backend, BERT_SPECIALS)

    @classmethod
    def from_file(cls, tokenizer_json: str | Path) -> Tokenizer:
        return cls(HFTokenizer.from_file(str(tokenizer_json)))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Tokenizer:
        """Load from a directory holding `tokenizer.json` (preferred) or `vocab.txt`, or a file."""
        path = Path(path)
        if path.is_dir():
            if (path / TOKENIZER_FILE).exists():
                return cls.from_file(path / TOKENIZER_FILE)
            if (path / VOCAB_FILE).exists():
                return cls.from_vocab(path / VOCAB_FILE)
            raise FileNotFoundError(f"{path}: no {TOKENIZER_FILE} or {VOCAB_FILE} in it")
        if path.suffix == ".json":
            return cls.from_file(path)
        if path.suffix == ".txt":
            return cls.from_vocab(path)
        raise FileNotFoundError(f"{path}: not a tokenizer directory, tokenizer.json or vocab.txt")

    def save(self, directory: str | Path) -> None:
        """Write `tokenizer.json` (and `vocab.txt` for WordPiece, which BERT tools expect)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(directory / TOKENIZER_FILE))
        if isinstance(self.backend.model, WordPiece):
            by_id = sorted(self.backend.get_vocab().items(), key=lambda item: item[1])
            text = "".join(token + "\n" for token, _ in by_id)
            (directory / VOCAB_FILE).write_text(text, encoding="utf-8")
        config = {"cls_token": self.specials.cls, "sep_token": self.specials.sep,
                  "pad_token": self.specials.pad, "unk_token": self.specials.unk,
                  "mask_token": self.specials.mask}
        # What transformers' AutoTokenizer needs to rebuild the same tokenizer from the files.
        if self.specials == XLMR_SPECIALS:
            config.update(tokenizer_class="XLMRobertaTokenizerFast",
                          bos_token=self.specials.cls, eos_token=self.specials.sep)
        else:
            config.update(tokenizer_class="BertTokenizerFast", do_lower_case=False,
                          strip_accents=False, tokenize_chinese_chars=True)
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n",
                                                         encoding="utf-8")

    # ---- encoding -----------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def piece_weights(self) -> np.ndarray:
        """How telling each vocabulary id is when a question and a passage share it: a
        SentencePiece unigram model's −log p(piece) (particles such as "의" weigh ~5, names
        ~12), 1 for every piece of a WordPiece vocabulary; 0 for special tokens."""
        if self._piece_weights is None:
            model = json.loads(self.backend.to_str()).get("model", {})
            weights = np.ones(self.vocab_size, dtype=np.float32)
            if model.get("type") == "Unigram":
                for index, (_, log_prob) in enumerate(model["vocab"][: self.vocab_size]):
                    weights[index] = max(0.0, -float(log_prob))
            for token_id in (self.cls_id, self.sep_id, self.pad_id, self.unk_id, self.mask_id):
                if token_id is not None:
                    weights[token_id] = 0.0
            self._piece_weights = weights
        return self._piece_weights

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def encode(self, text: str) -> Encoding:
        """Tokens of `text` without special tokens; offsets index into `text` itself."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[Encoding]:
        raw = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [
            Encoding(list(enc.ids), _tighten_offsets(text, enc.offsets, enc.tokens),
                     list(enc.tokens))
            for text, enc in zip(texts, raw, strict=True)
        ]

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(ids, skip_special_tokens=True)

    @property
    def pair_overhead(self) -> int:
        """How many special tokens `build_pair` adds around two segments."""
        return 2 + self.specials.pair_separators

    def build_single(self, ids: list[int]) -> list[int]:
        return [self.cls_id, *ids, self.sep_id]

    def build_pair(self, first: list[int], second: list[int]) -> tuple[list[int], list[int], int]:
        """Input ids and token type ids for a pair, and the index where `second` starts."""
        head = [self.cls_id, *first, *([self.sep_id] * self.specials.pair_separators)]
        input_ids = head + list(second) + [self.sep_id]
        second_type = self.specials.second_segment_type
        token_type_ids = [0] * len(head) + [second_type] * (len(second) + 1)
        return input_ids, token_type_ids, len(head)

    def _install_post_processor(self) -> None:
        # So that `backend.encode(a, b)` (and tools reading tokenizer.json) add the same specials.
        cls_tok, sep_tok = self.specials.cls, self.specials.sep
        seps = " ".join([f"{sep_tok}:0"] * self.specials.pair_separators)
        second = self.specials.second_segment_type
        self.backend.post_processor = processors.TemplateProcessing(
            single=f"{cls_tok}:0 $A:0 {sep_tok}:0",
            pair=f"{cls_tok}:0 $A:0 {seps} $B:{second} {sep_tok}:{second}",
            special_tokens=[(cls_tok, self.cls_id), (sep_tok, self.sep_id)],
        )


def _detect_specials(backend: HFTokenizer) -> SpecialTokens:
    if backend.token_to_id("[CLS]") is not None:
        return BERT_SPECIALS
    if backend.token_to_id("<s>") is not None:
        return XLMR_SPECIALS
    raise ValueError("tokenizer has neither [CLS] nor <s>: unknown special-token family")


def _read_vocab(path: Path) -> dict[str, int]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: vocabulary file not found")
    vocab: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        token = line.rstrip("\n")
        if token and token not in vocab:
            vocab[token] = len(vocab)
    if "[UNK]" not in vocab:
        raise ValueError(f"{path}: a WordPiece vocabulary needs an [UNK] token")
    return vocab


def _tighten_offsets(
    text: str, offsets: list[tuple[int, int]], tokens: list[str]
) -> list[tuple[int, int]]:
    """Drop leading blanks from each span; a bare "▁" token gets an empty span.

    A SentencePiece token such as "▁임" stands for " 임"; depending on the pre-tokenizer the
    backend reports the space inside its span. Answers are read from offsets, so spans must
    cover only the characters the token really spells. Blanks include the invisible controls
    and format characters (ZWSP, LRM, BOM) that normalisers turn into spaces or remove. A lone
    "▁" spells nothing; the backend may even point it at the next word's first character when
    the "▁" was prepended to the text, so it is pinned to an empty span where it stands.
    """
    tight = []
    for (start, end), token in zip(offsets, tokens, strict=True):
        while start < end and _is_blank(text[start]):
            start += 1
        if token == METASPACE:
            end = start
        tight.append((start, end))
    return tight


def _is_blank(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf")
