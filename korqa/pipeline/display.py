"""Answers as text for people: the answer, its scores and source, marked inside its paragraph."""

from __future__ import annotations

from korqa.pipeline.answers import Answer, AnswerCandidate

# Bold yellow on a terminal; brackets that survive copy-paste and pipes everywhere else.
ANSI_ON, ANSI_OFF = "\x1b[1;33m", "\x1b[0m"
PLAIN_ON, PLAIN_OFF = "【", "】"
# Paragraphs of a wiki corpus run to thousands of characters; show this much either side.
EXCERPT_RADIUS = 160
DONT_KNOW = "모르겠어요."


def highlight(context: str, start: int, end: int, color: bool = False,
              radius: int | None = EXCERPT_RADIUS) -> str:
    """`context` with [start, end) marked, cut to `radius` characters around it (None: whole)."""
    if not 0 <= start <= end <= len(context):
        raise ValueError(f"span [{start}, {end}) is outside a {len(context)}-character paragraph")
    on, off = (ANSI_ON, ANSI_OFF) if color else (PLAIN_ON, PLAIN_OFF)
    left, right = 0, len(context)
    if radius is not None:
        left, right = max(0, start - radius), min(len(context), end + radius)
    head = ("…" if left > 0 else "") + context[left:start]
    tail = context[end:right] + ("…" if right < len(context) else "")
    return f"{head}{on}{context[start:end]}{off}{tail}"


def excerpt(text: str, limit: int = 2 * EXCERPT_RADIUS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def format_answer(answer: Answer, color: bool = False) -> str:
    """What `korqa ask` and `korqa chat` print for one answer."""
    if answer.source == "faq":
        return (f"{answer.answer}\n"
                f"  score {answer.score:.2f} · FAQ, similar question: {answer.faq_question}")
    if not answer.known:
        if not answer.context:
            return f"{DONT_KNOW} (no paragraph matched the question)"
        guess = ""
        if answer.candidates:
            # The don't-know's own score, under every answer korqa gives, not the guess's rank.
            guess = f"; best guess {answer.candidates[0].answer!r}, confidence {answer.score:.2f}"
        return (f"{DONT_KNOW} (not sure enough to answer{guess})\n"
                f"  closest paragraph · {_where(answer.title, answer.paragraph_id)}\n"
                f"  {excerpt(answer.context)}")
    assert answer.start is not None and answer.end is not None
    return (f"{answer.answer}\n"
            f"  confidence {answer.score:.2f} · {_where(answer.title, answer.paragraph_id)}\n"
            f"  {highlight(answer.context, answer.start, answer.end, color)}")


def format_sources(answer: Answer, color: bool = False) -> str:
    """The n-best answers across paragraphs and every paragraph read, for `:sources`."""
    lines = []
    if answer.candidates:
        lines.append("answers (confidence; reader, retrieval):")
        for rank, c in enumerate(answer.candidates, start=1):
            lines.append(f"  {rank}. {c.answer}  {c.score:.2f} ({_num(c.reader_score)}, "
                         f"{c.retrieval_score:.2f}) · {_where(c.title, c.paragraph_id)}")
    if answer.paragraphs:
        lines.append("paragraphs read (retrieval score, normalised):")
        best_in = _best_per_paragraph(answer.candidates)
        for rank, item in enumerate(answer.paragraphs, start=1):
            p = item.paragraph
            lines.append(f"  [{rank}] {_where(p.title, p.id)}  {item.retrieval_raw:.3f} "
                         f"({item.retrieval_score:.2f})")
            span = best_in.get(p.id)
            text = highlight(p.text, span.start, span.end, color) if span else excerpt(p.text)
            lines.append(f"      {text}")
    return "\n".join(lines) if lines else "(no sources: nothing was retrieved)"


def _best_per_paragraph(candidates: list[AnswerCandidate]) -> dict[str, AnswerCandidate]:
    best: dict[str, AnswerCandidate] = {}
    for candidate in candidates:  # already best first
        best.setdefault(candidate.paragraph_id, candidate)
    return best


def _where(title: str, paragraph_id: str) -> str:
    return f"{title} [{paragraph_id}]" if title else f"[{paragraph_id}]"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
