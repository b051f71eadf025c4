"""Pre-training data, streamed: documents → sentences → sentence pairs → masked instances."""

from __future__ import annotations

import itertools
import random
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from korqa.corpus.formats import corpus_files, file_documents
from korqa.pretraining.config import PairConfig
from korqa.tokenization import Tokenizer


@dataclass
class TrainingInstance:
    """[CLS] A [SEP] B [SEP] with some tokens replaced, and what the heads must predict."""

    input_ids: list[int]
    token_type_ids: list[int]
    masked_positions: list[int]  # ascending
    masked_labels: list[int]  # the original id at each masked position
    is_random_next: bool  # NSP: B is from another document; SOP: A and B are swapped
    a_doc: int
    b_doc: int


# ---- reading documents ---------------------------------------------------------------------


def read_documents(files: Iterable[Path], max_docs_per_file: int | None = None,
                   ) -> Iterator[list[str]]:
    """Each document's paragraphs, streamed file by file (a shard is never held whole); files
    are read as `korqa.corpus.formats` says (a .txt/.md file is one document)."""
    for path in files:
        for document in itertools.islice(file_documents(path), max_docs_per_file):
            yield [paragraph.text for paragraph in document.paragraphs]


# ---- sentences -----------------------------------------------------------------------------

# A run of sentence-final punctuation, any closing quotes or brackets, then whitespace.
_END = re.compile(r"([.?!…]+)[\"'”’)\]」』]*\s+")


def split_sentences(text: str) -> list[str]:
    """Split a paragraph after Korean sentence ends ("…다. ", "…요. ", "? ", "! ").

    A period ends a sentence only after a Hangul syllable or a closing bracket, or between a
    lowercase word and a capital: "1. ", "U.S. " and "3.5" stay whole. Over-splitting would
    cost little (segments are concatenated again), but it would make NSP pairs less natural.
    """
    sentences, start = [], 0
    for match in _END.finditer(text):
        mark = match.group(1)[0]
        before = text[match.start() - 1] if match.start() else ""
        after = text[match.end()] if match.end() < len(text) else ""
        if mark == "." and not (_is_hangul(before) or before in ")]"
                                or (before.islower() and after.isupper())):
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [sentence for sentence in sentences if sentence]


def _is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


# ---- sentence pairs ------------------------------------------------------------------------


def truncate_pair(tokens_a: list[int], tokens_b: list[int], max_tokens: int,
                  rng: random.Random) -> None:
    """Trim the longer segment, from the front or the back at random, until the pair fits.

    Always cutting the end would teach the model that a segment never starts mid-sentence.
    """
    while len(tokens_a) + len(tokens_b) > max_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def create_pairs(document: list[list[int]], doc_id: int,
                 others: list[tuple[int, list[list[int]]]], config: PairConfig,
                 rng: random.Random) -> Iterator[tuple[list[int], list[int], bool, int]]:
    """(tokens_a, tokens_b, is_random_next, b_doc) pairs from one tokenized document.

    As BERT's create_instances_from_document: sentences are gathered until a target length,
    A takes the first 1..n-1 of them and B the rest (the actual next) or, half of the time, a
    random stretch of another document from `others`, whose unused sentences are then put
    back. One deviation: a chunk of a single sentence is cut in two at a random token, where
    BERT forces a random B; Wikipedia's many one-sentence stubs would otherwise pull IsNext
    well below 50 %. With `config.sop` the random case swaps A and B instead (ALBERT).
    """
    max_tokens = config.max_seq_length - 3  # [CLS], [SEP], [SEP]
    target = max_tokens
    if rng.random() < config.short_seq_prob:
        target = rng.randint(2, max_tokens)
    chunk: list[list[int]] = []
    length, i = 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            split = False
            if len(chunk) == 1:
                sentence = chunk[0]
                if len(sentence) < 2:
                    chunk, length, i = [], 0, i + 1
                    continue
                cut = rng.randint(1, len(sentence) - 1)
                chunk, split = [sentence[:cut], sentence[cut:]], True
            a_end = rng.randint(1, len(chunk) - 1)
            tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
            random_next = rng.random() < 0.5
            b_doc = doc_id
            if random_next and config.sop:
                tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
                tokens_a, tokens_b = tokens_b, tokens_a
            elif random_next and (picked := _other_document(others, doc_id, rng)):
                b_doc, other = picked
                target_b = target - len(tokens_a)
                tokens_b = []
                for sentence in other[rng.randrange(len(other)):]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target_b:
                        break
                if not split:  # the sentences B did not use start the next chunk
                    i -= len(chunk) - a_end
            else:
                random_next = False  # also when no other document is at hand
                tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
            truncate_pair(tokens_a, tokens_b, max_tokens, rng)
            yield tokens_a, tokens_b, random_next, b_doc
            chunk, length = [], 0
        i += 1


def _other_document(others: list[tuple[int, list[list[int]]]], doc_id: int,
                    rng: random.Random) -> tuple[int, list[list[int]]] | None:
    """A random document of `others` that is not `doc_id`, or None if there is none."""
    for _ in range(10):  # nearly always the first draw: `doc_id` is one of many
        if others and (other := others[rng.randrange(len(others))])[0] != doc_id:
            return other
    rest = [other for other in others if other[0] != doc_id]
    return rest[rng.randrange(len(rest))] if rest else None


# ---- masking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """What masking needs to know about the vocabulary."""

    size: int
    mask_id: int
    special_ids: frozenset[int]
    continuation_ids: frozenset[int]  # "##" pieces: they extend the word before them

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> Vocabulary:
        if tokenizer.mask_id is None:
            raise ValueError("the tokenizer has no [MASK] token: it cannot pre-train an MLM")
        vocab = tokenizer.backend.get_vocab()
        specials = {tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.unk_id,
                    tokenizer.mask_id}
        return cls(size=tokenizer.vocab_size, mask_id=tokenizer.mask_id,
                   special_ids=frozenset(specials),
                   continuation_ids=frozenset(i for t, i in vocab.items() if t.startswith("##")))


def mask_tokens(input_ids: list[int], vocab: Vocabulary, config: PairConfig,
                rng: random.Random) -> tuple[list[int], list[int], list[int]]:
    """BERT's masking: pick ~mask_prob of the non-special tokens (whole words with
    `whole_word_mask`); of those, 80 % become [MASK], 10 % a random token, 10 % stay.

    Returns (masked input ids, the picked positions ascending, their original ids).
    """
    words: list[list[int]] = []
    for position, token in enumerate(input_ids):
        if token in vocab.special_ids:
            continue  # [CLS]/[SEP] carry no text, and predicting [UNK] would teach nothing
        if config.whole_word_mask and words and token in vocab.continuation_ids \
                and words[-1][-1] == position - 1:
            words[-1].append(position)
        else:
            words.append([position])
    candidates = sum(len(word) for word in words)
    budget = min(config.predictions_per_sequence,
                 max(1, round(candidates * config.mask_prob)))
    rng.shuffle(words)
    picked: list[int] = []
    for word in words:
        if len(picked) >= budget:
            break
        if len(picked) + len(word) > budget:
            continue  # a whole word or nothing
        picked.extend(word)
    picked.sort()
    output = list(input_ids)
    for position in picked:
        draw = rng.random()
        if draw < 0.8:
            output[position] = vocab.mask_id
        elif draw >= 0.9:
            output[position] = _random_token(vocab, rng)
        # else: kept as is, so the model cannot assume an unmasked token is always right
    return output, picked, [input_ids[position] for position in picked]


def _random_token(vocab: Vocabulary, rng: random.Random) -> int:
    while True:
        token = rng.randrange(vocab.size)
        if token not in vocab.special_ids:
            return token


def build_instance(tokens_a: list[int], tokens_b: list[int], is_random_next: bool,
                   a_doc: int, b_doc: int, tokenizer: Tokenizer, vocab: Vocabulary,
                   config: PairConfig, rng: random.Random) -> TrainingInstance:
    input_ids, token_type_ids, _ = tokenizer.build_pair(tokens_a, tokens_b)
    masked, positions, labels = mask_tokens(input_ids, vocab, config, rng)
    return TrainingInstance(masked, token_type_ids, positions, labels, is_random_next,
                            a_doc, b_doc)


# ---- the stream ----------------------------------------------------------------------------


class InstanceStream:
    """An endless, reproducible stream of training instances over a corpus.

    Nothing is materialised: documents are read lazily through a bounded shuffle buffer,
    tokenized, cut into pairs and masked on the fly, and the instances pass through a second
    shuffle buffer. Every random choice comes from one generator seeded by `seed`, so the
    stream is a function of (corpus, tokenizer, config, seed) and a resumed run finds its
    place by skipping the instances it already trained on. Each pass over the corpus visits
    the files in a new order and draws new pairs and masks (RoBERTa's dynamic masking).
    """

    def __init__(self, paths: Iterable[str | Path], tokenizer: Tokenizer, config: PairConfig,
                 seed: int = 0, max_docs_per_file: int | None = None) -> None:
        self.files = corpus_files(paths)
        self.tokenizer = tokenizer
        self.vocab = Vocabulary.from_tokenizer(tokenizer)
        self.config = config
        self.seed = seed
        self.max_docs_per_file = max_docs_per_file
        self.passes = 0

    def __iter__(self) -> Iterator[TrainingInstance]:
        rng = random.Random(self.seed)
        for self.passes in itertools.count(1):
            produced = 0
            for instance in self._one_pass(rng):
                produced += 1
                yield instance
            if not produced:
                raise ValueError("the corpus yields no training instance (too little text?)")

    def _one_pass(self, rng: random.Random) -> Iterator[TrainingInstance]:
        files = list(self.files)
        rng.shuffle(files)
        # Random B segments come from the documents read most recently (a window, not the
        # whole corpus as in BERT, which holds every document in memory).
        recent: deque[tuple[int, list[list[int]]]] = deque(maxlen=self.config.doc_buffer)
        waiting: list[tuple[int, list[list[int]]]] = []
        instances: list[TrainingInstance] = []
        documents = read_documents(files, self.max_docs_per_file)
        for doc_id, paragraphs in enumerate(documents):
            sentences = [s for paragraph in paragraphs for s in split_sentences(paragraph)]
            if not sentences:
                continue
            tokenized = [e.ids for e in self.tokenizer.encode_batch(sentences) if e.ids]
            if not tokenized:
                continue
            recent.append((doc_id, tokenized))
            waiting.append((doc_id, tokenized))
            if len(waiting) < self.config.doc_buffer:
                continue
            instances.extend(self._instances(_pop_random(waiting, rng), list(recent), rng))
            while len(instances) > self.config.instance_buffer:
                yield _pop_random(instances, rng)
        others = list(recent)
        while waiting:
            instances.extend(self._instances(_pop_random(waiting, rng), others, rng))
        while instances:
            yield _pop_random(instances, rng)

    def _instances(self, document: tuple[int, list[list[int]]],
                   others: list[tuple[int, list[list[int]]]],
                   rng: random.Random) -> Iterator[TrainingInstance]:
        doc_id, sentences = document
        for tokens_a, tokens_b, is_random, b_doc in create_pairs(sentences, doc_id, others,
                                                                 self.config, rng):
            yield build_instance(tokens_a, tokens_b, is_random, doc_id, b_doc, self.tokenizer,
                                 self.vocab, self.config, rng)


def _pop_random(items: list, rng: random.Random):
    # Swap the drawn item to the end: O(1), and the buffer's order stays random anyway.
    index = rng.randrange(len(items))
    items[index], items[-1] = items[-1], items[index]
    return items.pop()


# ---- batches -------------------------------------------------------------------------------


def collate(instances: list[TrainingInstance], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest instance. The MLM targets are kept sparse, as in BERT's TF code:
    (row, column) of each masked token and its label, so only those rows reach the vocabulary
    projection, the largest matrix product of the model."""
    length = max(len(instance.input_ids) for instance in instances)
    input_ids = torch.full((len(instances), length), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(instances), length), dtype=torch.long)
    attention_mask = torch.zeros((len(instances), length), dtype=torch.long)
    rows, columns, labels = [], [], []
    for row, instance in enumerate(instances):
        n = len(instance.input_ids)
        input_ids[row, :n] = torch.tensor(instance.input_ids)
        token_type_ids[row, :n] = torch.tensor(instance.token_type_ids)
        attention_mask[row, :n] = 1
        rows.extend([row] * len(instance.masked_positions))
        columns.extend(instance.masked_positions)
        labels.extend(instance.masked_labels)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "mlm_rows": torch.tensor(rows, dtype=torch.long),
        "mlm_columns": torch.tensor(columns, dtype=torch.long),
        "mlm_labels": torch.tensor(labels, dtype=torch.long),
        "nsp_labels": torch.tensor([int(i.is_random_next) for i in instances], dtype=torch.long),
    }
