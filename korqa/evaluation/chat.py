"""`korqa evaluate-chat`: conversations asked three ways, F1 per kind of turn.

Each turn of each conversation is asked three ways, the report's "resolved", "alone", "full":
  - with context: through a `Conversation`, in order, so follow-ups are resolved against the
    answers korqa itself gave before them;
  - without context: alone, as typed ("그는 몇 년에 즉위했어?" with nothing before it);
  - fully specified: alone, as the question it stands for (KorQuAD's own question for the id).
Scores are KorQuAD 1.0's EM and character F1 against the gold answers, a "don't know" scoring
0; for unanswerable turns the score is the share declined.

The conversation files are JSON lines, one conversation per line:

    {"id": "dev-07", "turns": [
      {"id": "6548850-0-0", "kind": "standalone"},
      {"id": "6548853-0-1", "kind": "pronoun", "question": "그를 검거한 장소는 경희대 내 어디야?"},
      {"kind": "unanswerable", "question": "그의 고향은?", "full": "임종석의 고향은?"}]}

- "id": a question id of the SQuAD/KorQuAD file given beside the conversations: that question
  is the turn's fully specified form and its answers are the gold ones. The files hold ids and
  the follow-ups' own wording only, never the data set's text (KorQuAD is CC BY-ND).
- "kind": one of TURN_KINDS: standalone (a first question, or one naming its subject), pronoun
  (a pronoun or "그 N" for the subject), ellipsis (the subject left out), answer (a reference to
  the previous answer), shift (a new subject), unanswerable (about the subject, but the
  documents do not say).
- "question": the turn as a person types it; without it, the id's question is asked.
- "full": an unanswerable turn's fully specified form (it has no id); default its question.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korqa.corpus.formats import SquadExample, numbered_jsonl
from korqa.korquad_metric import exact_match_score, f1_score
from korqa.pipeline.answers import Answer
from korqa.pipeline.conversation import Conversation
from korqa.pipeline.qa import QAPipeline
from korqa.questions import question_type
from korqa.splits import SPLIT_NAMES, select_split, title_key

TURN_KINDS = ("standalone", "pronoun", "ellipsis", "answer", "shift", "unanswerable")
FOLLOW_UPS = ("pronoun", "ellipsis", "answer")  # the kinds a resolver has to rewrite
WAYS = ("resolved", "alone", "full")  # with context, alone as typed, fully specified


@dataclass
class ChatEvalConfig:
    """What `korqa evaluate-chat` scores; the "help" metadata is its `--help`."""

    questions: str = field(metadata={
        "help": "SQuAD/KorQuAD JSON whose question ids the conversations name (their fully "
                "specified questions and gold answers)", "metavar": "FILE"})
    data: list[str] = field(default_factory=list, metadata={
        "help": "conversation files (JSON lines; format: korqa.evaluation.chat)",
        "metavar": "FILE"})
    rule_split: str | None = field(default=None, metadata={
        "help": "also ask follow-up chains made by rule from this split's articles (the "
                "subject replaced by a pronoun or dropped)", "choices": SPLIT_NAMES})
    limit: int | None = field(default=None, metadata={
        "help": "ask only the first N conversations", "metavar": "N"})
    json: str | None = field(default=None, metadata={
        "help": "also write every turn's three answers here (JSON)", "metavar": "FILE"})


@dataclass
class ChatTurn:
    kind: str
    question: str  # as typed in the conversation
    full: str  # fully specified
    answers: list[str]  # gold; empty for unanswerable turns
    qid: str | None = None


@dataclass
class ChatConversation:
    id: str
    turns: list[ChatTurn]


@dataclass
class ChatReport:
    """Per kind and way: turns, EM, F1 (percent, "don't know" = 0) and declined (percent)."""

    rows: dict[str, dict[str, dict[str, float]]]
    counts: dict[str, int]
    conversations: int
    turns: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"conversations": self.conversations, "counts": self.counts, "rows": self.rows,
                "summary": self.summary(), "turns": self.turns}

    def summary(self) -> dict[str, float | None]:
        """The issue's three targets: follow-up F1 over fully specified F1, topic-shift F1
        with context minus fully specified, unanswerable turns declined with context."""
        follow, shift = self.rows.get("follow-ups"), self.rows.get("shift")
        unanswerable = self.rows.get("unanswerable")
        ratio = None
        if follow and follow["full"]["f1"] > 0:
            ratio = round(follow["resolved"]["f1"] / follow["full"]["f1"], 3)
        return {"follow_up_ratio": ratio,
                "shift_gap": round(shift["resolved"]["f1"] - shift["full"]["f1"], 2)
                if shift else None,
                "unanswerable_declined": unanswerable["resolved"]["declined"]
                if unanswerable else None}


# ---- reading conversations --------------------------------------------------------------------


def load_conversations(path: str | Path, examples: Sequence[SquadExample]
                       ) -> list[ChatConversation]:
    """The conversations of a JSON-lines file (module doc), their ids looked up in
    `examples`; errors name the line and turn."""
    by_id = {e.qid: e for e in examples}
    conversations = []
    for number, record in numbered_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(record, dict) or not isinstance(record.get("turns"), list) \
                or not record["turns"]:
            raise ValueError(f'{where}: a conversation is an object with a list of "turns"')
        turns = [_turn(item, by_id, f"{where}: turn {index}")
                 for index, item in enumerate(record["turns"])]
        conversations.append(ChatConversation(str(record.get("id", f"{path}:{number}")), turns))
    return conversations


def _turn(item: Any, by_id: dict[str, SquadExample], where: str) -> ChatTurn:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a turn is an object")
    kind, qid, typed = item.get("kind"), item.get("id"), item.get("question")
    if kind not in TURN_KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(TURN_KINDS)}, got {kind!r}")
    if typed is not None and (not isinstance(typed, str) or not typed.strip()):
        raise ValueError(f'{where}: "question" must be a non-empty string')
    if kind == "unanswerable":
        if qid is not None or typed is None:
            raise ValueError(f'{where}: an unanswerable turn has a "question" and no "id"')
        full = item.get("full", typed)
        if not isinstance(full, str) or not full.strip():
            raise ValueError(f'{where}: "full" must be a non-empty string')
        return ChatTurn(kind, typed.strip(), full.strip(), [])
    if qid not in by_id:
        raise ValueError(f"{where}: question id {qid!r} is not in the questions file")
    example = by_id[qid]
    full = example.question.strip()
    return ChatTurn(kind, (typed or full).strip(), full, [a.text for a in example.answers], qid)


# ---- chains made by rule ------------------------------------------------------------------------

# Title heads that name a kind of thing: such a subject is "이 사건", "이 철도" …, others "그".
_TYPE_NOUNS = {"사건", "전쟁", "선거", "철도", "사단", "회사", "내각", "대회", "올림픽", "법",
               "역사", "협정", "정부", "공화국", "운동", "혁명", "원정", "클럽", "광장", "계획",
               "게임", "대표팀", "전동차", "장성", "기타", "프로토콜"}
_PARTICLES = ("에게", "이", "가", "은", "는", "의", "을", "를", "와", "과", "도")
_AFTER_VOWEL = {"이": "가", "은": "는", "을": "를", "과": "와"}
_AFTER_CONSONANT = {v: k for k, v in _AFTER_VOWEL.items()}


def rule_conversations(examples: Sequence[SquadExample], split: str = "train+validation",
                       per_article: int = 4) -> list[ChatConversation]:
    """Follow-up chains made from `split`'s articles: per article, a question naming the
    subject (the title), then up to `per_article` - 1 more of its questions with the subject
    replaced by a pronoun and dropped in turn; two articles make a conversation, so the second
    opens with a topic shift. Deterministic: file order, one question per distinct answer."""
    by_article: dict[int, list[SquadExample]] = {}
    for example in select_split(examples, split):
        by_article.setdefault(example.article_index, []).append(example)
    chains = []
    for article in sorted(by_article):
        chain = _article_chain(by_article[article], per_article)
        if len(chain) >= 2:
            chains.append(chain)
    conversations = []
    for first, second in zip(chains[::2], chains[1::2], strict=False):
        second[0].kind = "shift"
        conversations.append(ChatConversation(f"rule-{len(conversations):03d}", first + second))
    return conversations


def _article_chain(examples: list[SquadExample], length: int) -> list[ChatTurn]:
    subject = title_key(examples[0].title).split("(")[0].strip()
    forms = [subject]
    last = subject.split()[-1]
    if " " in subject and len(last) >= 3:
        forms.append(last)  # "알렉산더 헤이그" is asked about as "헤이그" too
    pronoun = f"이 {last}" if " " in subject and last in _TYPE_NOUNS else "그"
    turns: list[ChatTurn] = []
    seen: set[str] = set()
    for example in examples:
        answer = example.answers[0].text if example.answers else ""
        if answer in seen or not answer:
            continue
        for form in forms:
            # The subject with its particle; a surname alone only opening the question (in
            # "알렉산더 메이그스 헤이그의 …" it is the tail of a longer name).
            match = re.search(rf"(?<![가-힣\w]){re.escape(form)}({'|'.join(_PARTICLES)})\s",
                              example.question)
            if match is None or (form != subject and match.start() > 0):
                continue
            golds = [a.text for a in example.answers]
            if not turns:
                turns.append(ChatTurn("standalone", example.question, example.question, golds,
                                      example.qid))
            else:
                kind = "pronoun" if len(turns) % 2 == 1 else "ellipsis"
                if question_type(turns[-1].full) == "누구":
                    kind = "ellipsis"  # after "…한 사람은?", "그" would mean that person
                typed = _replaced(example.question, match, pronoun if kind == "pronoun" else "")
                turns.append(ChatTurn(kind, typed, example.question, golds, example.qid))
            seen.add(answer)
            break
        if len(turns) == length:
            break
    return turns


def _replaced(question: str, match: re.Match[str], pronoun: str) -> str:
    """`question` with the subject `match` found replaced by `pronoun` (its particle respelled)
    or, with no pronoun, dropped with its particle."""
    if not pronoun:
        return (question[:match.start()] + question[match.end():]).strip()
    particle = match.group(1) or ""
    vowel_final = (ord(pronoun[-1]) - 0xAC00) % 28 == 0
    particle = (_AFTER_VOWEL if vowel_final else _AFTER_CONSONANT).get(particle, particle)
    return question[:match.start()] + pronoun + particle + " " + question[match.end():]


# ---- asking them -----------------------------------------------------------------------------


def evaluate_chat(pipeline: QAPipeline, conversations: Sequence[ChatConversation],
                  progress: bool = False) -> ChatReport:
    """Every turn asked the three ways (module doc); the report's rows per kind, plus
    "follow-ups" (FOLLOW_UPS together) and "answerable". Each record keeps the seconds a turn
    took with context and, the first time a question is asked alone, alone."""
    from tqdm import tqdm

    total = sum(len(c.turns) for c in conversations)
    records: list[dict[str, Any]] = []
    alone_cache: dict[str, Answer] = {}

    def timed(ask: Callable[[str], Answer], question: str) -> tuple[Answer, float]:
        start = time.perf_counter()
        answer = ask(question)
        return answer, time.perf_counter() - start

    def alone(question: str) -> tuple[Answer, float | None]:
        if question in alone_cache:
            return alone_cache[question], None
        alone_cache[question], seconds = timed(pipeline.ask, question)
        return alone_cache[question], seconds

    with tqdm(total=total, desc="turns", unit="turn", disable=not progress) as bar:
        for conversation in conversations:
            chat = Conversation(pipeline)
            for turn in conversation.turns:
                (resolved, with_context), (typed, seconds) = \
                    timed(chat.ask, turn.question), alone(turn.question)
                answers = {"resolved": resolved, "alone": typed, "full": alone(turn.full)[0]}
                record = {"conversation": conversation.id, "kind": turn.kind, "id": turn.qid,
                          "question": turn.question, "full": turn.full,
                          "resolved_question": resolved.resolved_question,
                          "resolution": chat.turns[-1].kind, "gold": turn.answers,
                          "seconds": {"resolved": with_context, "alone": seconds}}
                for way, answer in answers.items():
                    record[way] = _score(answer, turn.answers)
                records.append(record)
                bar.update()
    return summarise(records, len(conversations))


def _score(answer: Answer, golds: Sequence[str]) -> dict[str, Any]:
    text = answer.answer if answer.known else ""
    if not golds:
        return {"answer": text, "declined": not answer.known, "em": 0.0, "f1": 0.0}
    return {"answer": text, "declined": not answer.known,
            "em": max(exact_match_score(text, g) for g in golds) if text else 0.0,
            "f1": max(f1_score(text, g) for g in golds) if text else 0.0}


def summarise(records: Sequence[dict[str, Any]], conversations: int) -> ChatReport:
    """Rows per turn kind (and "follow-ups", "all") from `evaluate_chat`'s per-turn records."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["kind"], []).append(record)
    ordered = {kind: groups[kind] for kind in TURN_KINDS if kind in groups}
    follow = [r for r in records if r["kind"] in FOLLOW_UPS]
    if follow:
        ordered["follow-ups"] = follow
    answerable = [r for r in records if r["kind"] != "unanswerable"]
    if answerable:
        ordered["answerable"] = answerable
    rows = {kind: {way: _mean(group, way) for way in WAYS} for kind, group in ordered.items()}
    counts = {kind: len(group) for kind, group in ordered.items()}
    return ChatReport(rows, counts, conversations, list(records))


def _mean(records: Iterable[dict[str, Any]], way: str) -> dict[str, float]:
    scored = [r[way] for r in records]
    n = len(scored)
    return {"em": round(100 * sum(s["em"] for s in scored) / n, 2),
            "f1": round(100 * sum(s["f1"] for s in scored) / n, 2),
            "declined": round(100 * sum(s["declined"] for s in scored) / n, 2)}


def format_chat_report(report: ChatReport) -> str:
    """The table `korqa evaluate-chat` prints: F1 per kind three ways (for unanswerable turns
    the share declined), the share declined with context, then the targets' summary."""
    turns = report.counts.get("answerable", 0) + report.counts.get("unanswerable", 0)
    lines = [f"{report.conversations} conversations, {turns} turns; F1 (unanswerable: % declined)",
             f"{'turn kind':<14}{'turns':>6}  {'with context':>12}  {'without':>9}  "
             f"{'fully specified':>15}  {'declined % with context':>23}"]
    for kind, row in report.rows.items():
        key = "declined" if kind == "unanswerable" else "f1"
        lines.append(f"{kind:<14}{report.counts[kind]:>6}  {row['resolved'][key]:>12.2f}  "
                     f"{row['alone'][key]:>9.2f}  {row['full'][key]:>15.2f}  "
                     f"{row['resolved']['declined']:>23.2f}")
    summary = report.summary()
    if summary["follow_up_ratio"] is not None:
        lines.append(f"follow-ups with context / fully specified: "
                     f"{summary['follow_up_ratio']:.3f} (target ≥ 0.90)")
    if summary["shift_gap"] is not None:
        lines.append(f"topic shifts with context − fully specified: "
                     f"{summary['shift_gap']:+.2f} F1 (target ≥ −2)")
    if summary["unanswerable_declined"] is not None:
        lines.append(f"unanswerable follow-ups declined: {summary['unanswerable_declined']:.1f} % "
                     "(target ≥ 70)")
    return "\n".join(lines)


def run_chat_evaluation(config: ChatEvalConfig, pipeline: QAPipeline,
                        progress: bool = False) -> ChatReport:
    """`korqa evaluate-chat`'s whole job: read the questions and conversations (and make the
    rule chains), ask them, write the JSON when asked; returns the report."""
    from korqa.corpus.formats import read_squad

    examples = read_squad(config.questions)
    conversations = [c for path in config.data for c in load_conversations(path, examples)]
    if config.rule_split:
        conversations += rule_conversations(examples, config.rule_split)
    if config.limit is not None:
        conversations = conversations[:config.limit]
    if not conversations:
        raise ValueError("no conversations to ask: give --data files or --rule-split")
    report = evaluate_chat(pipeline, conversations, progress)
    if config.json:
        Path(config.json).write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1)
                                     + "\n", encoding="utf-8")
    return report
