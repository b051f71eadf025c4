"""Tiny corpora and readers the tests share: constants and plain helpers.

conftest.py wraps the common ones as fixtures (`tiny_reader_dir`, `one_thread`,
`trained_reader`). Test modules import this module (and server_support, faults), never each
other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from korqa.corpus.paragraph import document_id
from korqa.modeling import BertConfig, BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model, save_pretrained
from korqa.pipeline import PipelineConfig, QAPipeline
from korqa.reader.config import ReaderConfig
from korqa.reader.directory import ReaderDir
from korqa.reader.reader import Reader
from korqa.retrieval.index import Index, build_index
from korqa.retrieval.registry import make_retriever
from korqa.tokenization import Tokenizer

# ---- the four-document corpus -------------------------------------------------------------

DOCS = [
    ("hangul", "한글", ["한글은 세종이 1443년에 만든 글자이다. 1446년에 훈민정음이라는 책으로 "
                        "백성에게 알려졌다. 한글날은 10월 9일이다."]),
    ("halla", "한라산", ["한라산은 제주도 가운데에 있는 화산으로 높이는 1947미터이다. 남한에서 "
                         "가장 높은 산이며 꼭대기에는 백록담이라는 호수가 있다."]),
    ("kimchi", "김치", ["김치는 배추와 무를 소금에 절여 양념한 뒤 발효시킨 음식이다. 겨울을 "
                        "나려고 김치를 한꺼번에 담그는 일을 김장이라고 한다."]),
    ("sun", "태양계", ["태양계에서 가장 큰 행성은 목성이다. 지구는 태양에서 세 번째로 가까운 "
                       "행성이며 달이라는 위성 하나를 가지고 있다."]),
]
QUESTIONS = ["한라산의 높이는 얼마인가?", "한글은 누가 만들었나?", "김장이란 무엇인가?",
             "가장 큰 행성은?", "오늘 너무 힘들다", "정말 너무 힘들어요"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_corpus(path: Path, docs: list = DOCS) -> Path:
    lines = [json.dumps({"id": i, "title": t, "paragraphs": ps}, ensure_ascii=False)
             for i, t, ps in docs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def char_vocab(texts: Iterable[str], directory: Path) -> Tokenizer:
    """A character-level WordPiece vocab.txt in `directory`: every character of `texts` alone
    and as a continuation."""
    chars = sorted({c for text in texts for c in text if not c.isspace()})
    vocab = SPECIALS + chars + ["##" + c for c in chars]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(directory / "vocab.txt")


def tiny_encoder(directory: Path, texts: Iterable[str], hidden_size: int = 32,
                 layers: int = 1, intermediate_size: int = 64,
                 max_positions: int = 256) -> Path:
    """A random BertModel (seed 0) with a character vocabulary of `texts` and of e5's
    "query: "/"passage: " prefixes, saved as an encoder directory for dense retrieval."""
    from korqa.modeling import BertModel

    tokenizer = char_vocab([*texts, "query: passage:"], directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden_size,
                        num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=intermediate_size,
                        max_position_embeddings=max_positions)
    save_pretrained(BertModel(config), directory)
    return directory


def make_tiny_reader(directory: Path, seed: int = 0) -> Path:
    """A random 1-layer BERT QA model and a syllable WordPiece vocab, saved as a model dir."""
    texts = [p for _, t, ps in DOCS for p in [t, *ps]] + QUESTIONS
    tokenizer = char_vocab(texts, directory)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    save_pretrained(BertForQuestionAnswering(config), directory)
    return directory


def build_tiny_index(directory: Path) -> Path:
    """The four-document test corpus indexed with BM25 over character n-grams (no Kiwi: fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(directory.parent / f"{directory.name}-corpus.jsonl")
    build_index(directory, [corpus], make_retriever("bm25", morphemes=False), progress=False)
    return directory


def tiny_paragraph_id(index_dir: Path, name: str, number: int = 0) -> str:
    """The id `build_tiny_index(index_dir)` gives paragraph `number` of document `name`."""
    corpus = index_dir.parent / f"{index_dir.name}-corpus.jsonl"
    return f"kowiki:{document_id(corpus, name)}:{number}"


def tiny_pipeline(index_dir: Path, model_dir: Path, **config: object) -> Callable[[], QAPipeline]:
    """A function opening a pipeline over `index_dir` with the tiny reader (particle trimming
    off: it loads Kiwi, seconds these tests do not need)."""

    def open_pipeline() -> QAPipeline:
        model = load_model(BertForQuestionAnswering, model_dir)
        reader = Reader(model, Tokenizer.from_pretrained(model_dir),
                        ReaderConfig(trim_particles=False))
        return QAPipeline(Index(index_dir), reader, config=PipelineConfig(**config))

    return open_pipeline


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a while: with the cores busy (a training run beside the tests),
    two threads make each tiny forward pass dozens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- readers to average and prune ---------------------------------------------------------

SMALL_SHAPE = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=64)


def make_reader(directory: Path, seed: int, chars: str = "가나다라마") -> BertForQuestionAnswering:
    """A random reader over a vocabulary of `chars`, with its tokenizer and windows saved."""
    directory.mkdir(parents=True)
    vocab = [*SPECIALS, *chars]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = Tokenizer.from_vocab(directory / "vocab.txt")
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(BertConfig(vocab_size=len(vocab), **SMALL_SHAPE))
    save_pretrained(model, directory)
    tokenizer.save(directory)
    ReaderDir(directory).save_config(ReaderConfig(max_seq_length=48, doc_stride=16))
    return model


# ---- a reader trained on one question -----------------------------------------------------

CONTEXT = "숭례문 화재는 2008년 2월 10일 발생하였으며 소방차 32대가 출동하였다."
QUESTION, ANSWER = "숭례문 화재가 난 날은?", "2008년 2월 10일"


def train_tiny_reader(directory: Path) -> tuple[Path, Path]:
    """A tiny reader trained a little on one question, so its best answer is stable; returns
    its directory and a SQuAD file of that question in ten articles."""
    tokenizer = char_vocab([CONTEXT, QUESTION], directory)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    question = tokenizer.encode(QUESTION)
    context = tokenizer.encode(CONTEXT)
    ids, types, offset = tokenizer.build_pair(question.ids, context.ids)
    start_char = CONTEXT.index(ANSWER)
    start = offset + next(i for i, (s, _) in enumerate(context.offsets) if s == start_char)
    end = offset + next(i for i, (_, e) in enumerate(context.offsets)
                        if e == start_char + len(ANSWER))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = {"input_ids": torch.tensor([ids]), "token_type_ids": torch.tensor([types]),
             "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    model.train()
    for _ in range(60):
        loss = model(**batch, start_positions=torch.tensor([start]),
                     end_positions=torch.tensor([end]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_pretrained(model, directory)
    tokenizer.save(directory)
    articles = [{"title": f"a{i}", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": f"q{i}", "question": QUESTION,
         "answers": [{"text": ANSWER, "answer_start": start_char}]}]}]} for i in range(10)]
    data = directory / "data.json"
    data.write_text(json.dumps({"version": "1.1", "data": articles}, ensure_ascii=False),
                    encoding="utf-8")
    return directory, data
