"""What one question may cost, the same for `korqa ask`, `korqa chat` and `korqa serve`.

- A question holds at most MAX_QUESTION_CHARS characters; a longer one is refused with a
  one-line error (the CLI exits 2, the server answers 422), never cut silently.
- The reader reads its first `max_query_length` tokens (64 by default; the reader's
  reader_config.json may say less): longer questions are cut to that many tokens.
- At most MAX_TOP_K paragraphs are retrieved for one question (`--top-k`, the API's `top_k`).
- At most `korqa.reader.predict.MAX_WINDOWS` (6) windows are read for one question, over all
  of its paragraphs, most promising first (`read_logits`; defined with the reader, which the
  pipeline loads only with its first use).

So an over-long question with the most paragraphs costs at most about five normal ones
(bench/question_cost.py measures it).
"""

from __future__ import annotations

MAX_QUESTION_CHARS = 500
MAX_TOP_K = 20


def check_question(question: str) -> None:
    """ValueError for a question over MAX_QUESTION_CHARS characters."""
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"the question has {len(question)} characters; at most "
                         f"{MAX_QUESTION_CHARS} are read")


def check_top_k(top_k: int) -> None:
    """ValueError for a paragraph count outside 1 … MAX_TOP_K."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be from 1 to {MAX_TOP_K}, got {top_k}")
