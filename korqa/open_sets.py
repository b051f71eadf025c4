"""The three question sets of korqa's open-domain evaluation, defined once for
`korqa calibrate-confidence` and `korqa evaluate-open` (korqa.evaluation.open_domain) and for
the small talk `korqa negatives` must keep out of training (korqa.training.negatives):

- answerable: KorQuAD questions, their article indexed;
- unanswerable: the same questions asked without their article;
- offtopic: small talk (ChatbotData).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from korqa.corpus.formats import read_squad
from korqa.faq import load_faq
from korqa.splits import is_test_article, select_split

SET_KINDS = ("answerable", "unanswerable", "offtopic")


@dataclass
class OpenQuestion:
    """One question of a set; `exclude_title` is the article the index must not hold."""

    kind: str
    qid: str
    question: str
    answers: list[str]
    group: str  # questions of one group are never split between fitting folds
    exclude_title: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.qid}"


def build_open_sets(data: str | Path, chitchat: str | Path, split: str,
                    answerable: int | None = None, offtopic: int | None = None,
                    seed: int = 0) -> list[OpenQuestion]:
    """The three sets over `split`: "test" (KorQuAD test articles, chitchat rows ≡ 4 mod 5) or
    "validation" (the reader's held-out fold 0 of the other articles, the other chitchat
    rows). `answerable` questions are drawn (seeded; None: all), the unanswerable set asks the
    same ones, and `offtopic` small-talk questions (None: half as many as answerable).
    """
    if split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    rng = random.Random(seed)
    examples = select_split(read_squad(data), split)
    if answerable is not None and answerable < len(examples):
        examples = sorted(rng.sample(examples, answerable), key=examples.index)
    # ChatbotData rows split by KorQuAD's article rule: rows 4 mod 5 are the test questions.
    entries = [e for e in load_faq(chitchat) if is_test_article(e.id) == (split == "test")]
    # Repeated small-talk questions ("…싶다" in many spellings) would count twice.
    entries = list({e.question: e for e in entries}.values())
    count = len(examples) // 2 if offtopic is None else offtopic
    entries = rng.sample(entries, min(count, len(entries)))
    sets = [OpenQuestion("answerable", e.qid, e.question, [a.text for a in e.answers], e.title)
            for e in examples]
    # Gold answers stay with the unanswerable twin: a guess from another article can still be
    # right (another article may say the same), and the confidence is P(right).
    sets += [OpenQuestion("unanswerable", e.qid, e.question, [a.text for a in e.answers],
                          e.title, e.title) for e in examples]
    sets += [OpenQuestion("offtopic", f"chitchat-{e.id}", e.question, [], f"chitchat-{e.id}")
             for e in entries]
    return sets


def write_sets(questions: Sequence[OpenQuestion], path: str | Path) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(asdict(q), ensure_ascii=False) + "\n" for q in questions),
                    encoding="utf-8")
    return path
