"""Synthetic training questions from plain paragraphs, cloze-style (`korqa cloze`).

A declarative sentence becomes a question by putting a question word where one of its noun
phrases was and turning the final "-다." into "-는가?"/"-ㄴ가?":

    "이순신은 1545년 서울 건천동에서 태어났다."  →  "이순신은 언제 서울 건천동에서 태어났는가?"
    answer "1545년"

Answers are spans the reader must point at (dates → 언제, counted numbers → 몇 <unit>, proper
nouns → 어디 before a place particle, else 무엇), so a few thousand real KorQuAD questions
can be joined by tens of thousands of noisy but well-aligned ones (Lewis et al. 2019,
"Unsupervised Question Answering by Cloze Translation"). Kiwi gives the morphemes, their tags
and their positions; every cut is made in the original text at those positions, and every
answer is checked to be the text at its offset.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korqa.corpus.formats import iter_documents, load_corpus, read_squad_json, write_json
from korqa.corpus.paragraph import Paragraph
from korqa.morphology import kiwi
from korqa.splits import title_key

CLOZE_VERSION = "korqa-cloze-1"  # the "version" field of the SQuAD files written here
_TIME_UNITS = {"년", "월", "일", "세기", "년대", "시", "분기"}
_PLACE_PARTICLES = {"에서", "에", "으로", "로", "에서의"}
_NOUN_TAGS = {"NNP", "NNG", "SL", "SH", "SN", "NNB"}
_STEM_TAGS = {"VV", "VA", "VX", "VCP", "VCN", "XSV", "XSA"}
_DESCRIPTIVE_TAGS = {"VA", "VCP", "VCN", "XSA"}  # take -ㄴ가 rather than -는가


@dataclass(frozen=True)
class ClozeQuestion:
    question: str
    answer: str
    answer_start: int  # offset of `answer` in the paragraph


@dataclass(frozen=True)
class _Token:  # one Kiwi morpheme, positions in the sentence
    form: str
    tag: str
    start: int
    end: int


def cloze_questions(text: str, analyser: Any, per_paragraph: int = 2,
                    rng: random.Random | None = None) -> list[ClozeQuestion]:
    """Up to `per_paragraph` cloze questions over `text`, from different sentences."""
    rng = rng or random.Random(0)
    candidates: list[ClozeQuestion] = []
    for sentence in analyser.split_into_sents(text):
        if not 15 <= len(sentence.text) <= 200 or not sentence.text.endswith("다."):
            continue
        tokens = [_Token(t.form, t.tag, t.start, t.start + t.len)
                  for t in analyser.tokenize(sentence.text)]
        made = _sentence_questions(sentence.text, tokens, analyser)
        if made:
            question, answer, start = rng.choice(made)
            candidates.append(ClozeQuestion(question, answer, sentence.start + start))
    rng.shuffle(candidates)
    kept = candidates[:per_paragraph]
    for item in kept:  # never hand the trainer an answer that is not the text at its offset
        assert text[item.answer_start:item.answer_start + len(item.answer)] == item.answer
    return kept


def _sentence_questions(sentence: str, tokens: list[_Token],
                        analyser: Any) -> list[tuple[str, str, int]]:
    """(question, answer, answer offset in the sentence) for each usable noun phrase."""
    ending = _question_ending(sentence, tokens, analyser)
    if ending is None:
        return []
    body_end, tail = ending
    made = []
    for first, last in _noun_phrases(sentence, tokens):
        start, end = tokens[first].start, tokens[last].end
        answer = sentence[start:end]
        wh_word = _question_word(tokens, first, last)
        if end > body_end or wh_word is None or not 1 < len(answer) <= 25:
            continue  # past the predicate ("…풀이다"), or no natural question word
        resume = end
        gloss_end = sentence.find(")", end) if sentence.startswith("(", end) else -1
        if 0 < gloss_end - end < 40:
            resume = gloss_end + 1  # the gloss "(重積分)" would give it away
        particle = next((t for t in tokens if t.start == resume and t.tag.startswith("J")), None)
        replacement = wh_word
        if particle is not None:
            resume = particle.end
            if not (wh_word == "언제" and particle.form in ("에", "에는")):  # 1945년에 → 언제
                form = {"은": "이", "는": "이"}.get(particle.form, particle.form)
                tag = "JKS" if form == "이" else particle.tag
                *unit, head = wh_word.split()
                replacement = " ".join([*unit, analyser.join([(head, "NP"), (form, tag)])])
        question = sentence[:start] + replacement + sentence[resume:body_end] + tail
        if answer not in question:
            made.append((question, answer, start))
    return made


def _question_ending(sentence: str, tokens: list[_Token],
                     analyser: Any) -> tuple[int, str] | None:
    """Where the sentence's final predicate starts, and that predicate as a question
    ("태어났다." → "태어났는가?", "풀이다." → "풀인가?"); None for other sentence shapes."""
    if len(tokens) < 4 or tokens[-1].form != "." or tokens[-2].tag != "EF":
        return None
    stem = len(tokens) - 3
    while stem >= 0 and tokens[stem].tag == "EP":
        stem -= 1
    if stem < 1 or tokens[stem].tag not in _STEM_TAGS:
        return None
    has_tense = stem < len(tokens) - 3
    descriptive = (tokens[stem].tag in _DESCRIPTIVE_TAGS and not has_tense
                   and tokens[stem].form not in ("있", "없"))  # 있는가, 없는가
    ending = "\u11ab가" if descriptive else "는가"  # U+11AB: Kiwi's final ㄴ (-ㄴ가)
    morphemes = [(t.form, t.tag) for t in tokens[stem:-2]] + [(ending, "EF")]
    predicate_start = tokens[stem].start
    if tokens[stem].tag == "VCP" and tokens[stem].end == tokens[stem].start:
        predicate_start = tokens[stem - 1].end  # a zero copula ("학교다") joins at the noun's end
    return predicate_start, analyser.join(morphemes) + "?"


_OPENERS = " \t\"'(《〈「『“‘["


def _noun_phrases(sentence: str, tokens: list[_Token]) -> Iterator[tuple[int, int]]:
    """(first, last) token indices of noun runs that hold a proper noun or a number and stand
    as whole words: they start a word, end where a particle, copula or punctuation begins, and
    cross a space only between proper nouns or between date parts ("서울 건천동",
    "1945년 8월 15일")."""
    i = 0
    while i < len(tokens):
        if tokens[i].tag not in _NOUN_TAGS or tokens[i].tag == "NNB":
            i += 1
            continue
        j = i
        while j + 1 < len(tokens) and j - i < 4 and tokens[j + 1].tag in _NOUN_TAGS:
            gap = tokens[j + 1].start - tokens[j].end
            spaced_ok = (tokens[j].tag == tokens[j + 1].tag == "NNP"
                         or (tokens[j].form in _TIME_UNITS and tokens[j + 1].tag == "SN"))
            if gap > 1 or (gap == 1 and not spaced_ok):
                break
            j += 1
        starts_word = tokens[i].start == 0 or sentence[tokens[i].start - 1] in _OPENERS
        after = tokens[j + 1] if j + 1 < len(tokens) else None
        ends_word = (after is None or after.start > tokens[j].end
                     or after.tag.startswith(("J", "S")) or after.tag == "VCP")
        if starts_word and ends_word and any(
                tokens[k].tag in ("NNP", "SN") for k in range(i, j + 1)):
            yield i, j
        i = j + 1


def _question_word(tokens: list[_Token], first: int, last: int) -> str | None:
    tags = [t.tag for t in tokens[first:last + 1]]
    forms = [t.form for t in tokens[first:last + 1]]
    if "SN" in tags:
        unit = forms[-1] if tags[-1] in ("NNB", "NNG") else None
        if unit in _TIME_UNITS:
            return "언제"
        if unit and tags[-2] == "SN" and len(unit) <= 2:
            return f"몇 {unit}"
        return None  # a bare number or a code: no natural question word
    following = tokens[last + 1] if last + 1 < len(tokens) else None
    if following and following.tag == "JKB" and following.form in _PLACE_PARTICLES:
        return "어디"
    return "무엇"


def cloze_dataset(paragraphs: Iterable[Paragraph], analyser: Any, max_questions: int,
                  per_paragraph: int = 2, exclude_titles: Collection[str] = (),
                  min_chars: int = 150, max_chars: int = 1500, seed: int = 0) -> dict[str, Any]:
    """A SQuAD v1.1 object of cloze questions over `paragraphs`, article titles kept (so
    `korqa train` can still drop any article of the test split).

    Paragraphs of a title in `exclude_titles` are skipped: pass KorQuAD's titles so that no
    synthetic question is asked about an article the model is validated or tested on.
    """
    rng = random.Random(seed)
    excluded = {title_key(title) for title in exclude_titles}
    articles: dict[str, dict[str, Any]] = {}
    count = 0
    for paragraph in paragraphs:
        if count >= max_questions:
            break
        if (not min_chars <= len(paragraph.text) <= max_chars
                or title_key(paragraph.title) in excluded):
            continue
        made = cloze_questions(paragraph.text, analyser, per_paragraph, rng)
        if not made:
            continue
        article = articles.setdefault(paragraph.doc_id, {
            "title": paragraph.title or paragraph.doc_id, "paragraphs": []})
        qas = [{"id": f"cloze-{paragraph.id}-{n}", "question": item.question,
                "answers": [{"text": item.answer, "answer_start": item.answer_start}]}
               for n, item in enumerate(made[:max_questions - count])]
        article["paragraphs"].append({"context": paragraph.text, "qas": qas})
        count += len(qas)
    return {"version": CLOZE_VERSION, "data": list(articles.values())}


def cloze_from_corpus(paths: Sequence[str | Path], analyser: Any, max_questions: int,
                      per_paragraph: int = 2, exclude_titles: Collection[str] = (),
                      seed: int = 0) -> dict[str, Any]:
    """`cloze_dataset` over each corpus path in turn, `max_questions` shared equally between
    them (so one large shard cannot fill the quota alone), seeded per path."""
    quota, spare = divmod(max_questions, len(paths))
    data: list[dict[str, Any]] = []
    for i, path in enumerate(paths):
        part = cloze_dataset(load_corpus([path]), analyser, quota + (i < spare), per_paragraph,
                             exclude_titles, seed=seed + i)
        data += part["data"]
    return {"version": CLOZE_VERSION, "data": data}


@dataclass
class ClozeConfig:
    """What `korqa cloze` writes; the "help" metadata is its `--help` (korqa.cli_options)."""

    corpus: list[str] = field(metadata={
        "help": "kowiki .jsonl[.xz], SQuAD .json, .txt/.md or folders", "metavar": "PATH"})
    out: str = field(metadata={"help": "SQuAD JSON to write (.json.gz ok)", "metavar": "FILE"})
    max_questions: int = field(default=20_000, metadata={
        "help": "in all, shared equally between the corpus paths", "metavar": "N"})
    per_paragraph: int = field(default=2, metadata={
        "help": "questions per paragraph at most", "metavar": "N"})
    exclude: list[str] = field(default_factory=list, metadata={
        "help": "SQuAD files whose article titles are never drawn from (KorQuAD dev)",
        "metavar": "FILE"})
    seed: int = field(default=0, metadata={"help": "random seed"})


def write_cloze(config: ClozeConfig) -> dict[str, Any]:
    """Write `config.out` (`cloze_from_corpus` with Kiwi, never drawing from the articles of
    `config.exclude`), read it back as any SQuAD file is read, and count what it holds."""
    titles = [document.title for document in iter_documents(config.exclude)]
    dataset = cloze_from_corpus(config.corpus, kiwi(), config.max_questions,
                                config.per_paragraph, titles, seed=config.seed)
    write_json(dataset, config.out)
    count = len(read_squad_json(dataset, config.out))
    return {"out": config.out, "questions": count, "articles": len(dataset["data"])}
