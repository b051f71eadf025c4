"""The shipped small talk: how korqa/data/small_talk.json is made, and that it changes no
KorQuAD answer.

    python3 bench/small_talk.py --write            # rewrite korqa/data/small_talk.json
    python3 bench/small_talk.py                    # KorQuAD test questions, with and without

The file holds korqa's own pairs (greetings that say what korqa does, who it is, thanks, help;
several wordings of each) and the pairs of ChatbotData (songys/Chatbot_data, MIT; at
../shared/data/chitchat) that a rule picks: its question, without end punctuation, is a whole
greeting, thanks or farewell (`RULE`); its label is not 1 (the set's break-up talk); its
answer does not speak as ChatbotData's own persona, the comforting robot (`PERSONA`); and
korqa's own pairs do not already ask it. Small talk is matched word for word
(korqa.faq.question_key), so it can change an answer only when a question is small talk.

The measurement asks every question of a KorQuAD split (default: the test articles) through
the pipeline over the dev paragraphs (BM25, the shipped reader and calibration) with the small
talk and without it, and counts the answers that differ (text, known, source, paragraph). The
two pipelines share one reader whose readings are remembered per question and paragraphs, so
each question is read once: the reader is deterministic and the same object either way, and
what is compared is everything the small talk could change, which comes before reading.
It also counts the questions the same pairs would have taken had they been matched by
similarity at the FAQ threshold, as a --faq file's pairs are.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from korqa.faq import SMALL_TALK, question_key

if TYPE_CHECKING:
    from korqa.reader.reader import Reader

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CHATBOT_DATA = SHARED / "chitchat" / "ChatbotData.csv.gz"
KORQUAD_DEV = SHARED / "korquad" / "KorQuAD_v1.0_dev.json"
CHATBOT_SOURCE = "ChatbotData (songys/Chatbot_data, MIT)"

WHAT_KORQA_DOES = ("색인한 문서에서 질문의 답을 찾아, 답이 나온 문단과 함께 보여 드려요. "
                   "문서에 대해 궁금한 것을 한국어로 물어보세요.")
KORQA_PAIRS: list[tuple[tuple[str, ...], str]] = [
    (("안녕", "안녕하세요", "안녕하십니까", "하이", "헬로", "hi", "hello"),
     f"안녕하세요! 저는 korqa예요. {WHAT_KORQA_DOES}"),
    (("넌 누구야?", "너 누구야?", "너는 누구니?", "누구세요?", "넌 뭐야?", "너 뭐야?",
      "이름이 뭐야?", "이름이 뭐예요?", "당신은 누구인가요?"),
     f"저는 korqa, 한국어 질의응답 도우미예요. {WHAT_KORQA_DOES}"),
    (("뭘 할 수 있어?", "뭐 할 수 있어?", "무엇을 할 수 있나요?", "뭐 할 줄 알아?", "도와줘",
      "도움말", "사용법", "어떻게 써?", "어떻게 사용해?", "어떻게 물어봐?"),
     f"{WHAT_KORQA_DOES} 예를 들어 '신청 마감일은 언제인가요?'처럼 물어보세요."),
    (("고마워", "고마워요", "고맙습니다", "감사합니다", "감사해요", "땡큐", "thanks",
      "thank you"),
     "천만에요! 또 궁금한 것이 있으면 물어보세요."),
]

# A whole greeting, thanks or farewell, as ChatbotData spells them.
RULE = re.compile(r"(안녕(하세요|안녕)?|반가워(요)?( 반갑구만)?|반갑습니다|굿모닝|좋은 ?아침|"
                  r"잘 ?지냈어|오랜만이네|고마워|고맙다|감사(합니다|해요)?|잘 ?가|잘 ?자|"
                  r"먼저 잘게 잘자|다음에 ?봐|축하해|미안해)")
PERSONA = re.compile(r"위로|로봇|봇")
END_PUNCTUATION = " ?.!~"


def chatbot_pairs(path: Path) -> list[dict[str, str]]:
    """The ChatbotData pairs the rule picks (module docstring), first of each question."""
    rows = csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode("utf-8-sig")))
    taken = {question_key(q) for questions, _ in KORQA_PAIRS for q in questions}
    pairs = []
    for row in rows:
        question, answer = row["Q"].strip(), row["A"].strip()
        if (row["label"] != "1" and RULE.fullmatch(question.strip(END_PUNCTUATION))
                and not PERSONA.search(answer) and question_key(question) not in taken):
            taken.add(question_key(question))
            pairs.append({"question": question, "answer": answer, "source": CHATBOT_SOURCE})
    return pairs


def write(path: Path) -> list[dict[str, str]]:
    pairs = [{"question": question, "answer": answer, "source": "korqa"}
             for questions, answer in KORQA_PAIRS for question in questions]
    pairs += chatbot_pairs(CHATBOT_DATA)
    path.write_text(json.dumps(pairs, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return pairs


def remember_readings(reader: Reader) -> Reader:
    """`reader`, its readings remembered by question and paragraphs (module docstring)."""
    seen: dict[tuple[str, tuple[str, ...]], list] = {}
    read = reader.read

    def remembered(question: str, contexts: list[str], **options: object) -> list:
        key = (question, tuple(contexts))
        if key not in seen:
            seen[key] = read(question, contexts, **options)
        return seen[key]

    reader.read = remembered  # type: ignore[method-assign]
    return reader


def measure(data: Path, split: str, limit: int | None) -> dict[str, object]:
    from tqdm import tqdm

    from korqa.corpus.formats import read_squad
    from korqa.faq import FAQIndex, small_talk_entries
    from korqa.pipeline import PipelineConfig, QAPipeline, load_reader
    from korqa.pipeline.sources import cached_index
    from korqa.retrieval.index import Index
    from korqa.splits import sample_split, select_split

    questions = sample_split(select_split(read_squad(data), split), limit)
    index = Index(cached_index([data], progress=True))
    reader = remember_readings(load_reader())
    config = PipelineConfig()
    with_small_talk = QAPipeline(index, reader, FAQIndex(small_talk_entries()), config)
    without = QAPipeline(index, reader, None, config)
    changed, from_small_talk = [], 0
    start = time.perf_counter()
    for example in tqdm(questions, desc=f"{split} questions", unit="q"):
        a = with_small_talk.ask(example.question)
        b = without.ask(example.question)
        from_small_talk += a.source == "faq"
        if (a.answer, a.known, a.source, a.paragraph_id) != \
                (b.answer, b.known, b.source, b.paragraph_id):
            changed.append({"question": example.question, "with": a.answer,
                            "without": b.answer})
    # The same pairs matched by similarity, as a --faq file is: what word-for-word matching
    # keeps from happening.
    similar = FAQIndex([replace(entry, exact=False) for entry in small_talk_entries()])
    taken_by_similarity = sum(similar.match(e.question, config.faq_threshold) is not None
                              for e in questions)
    return {"split": split, "questions": len(questions), "answers_changed": len(changed),
            "answered_from_small_talk": from_small_talk, "changed": changed[:20],
            "taken_if_matched_by_similarity": taken_by_similarity,
            "small_talk_pairs": len(small_talk_entries()),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {SMALL_TALK}")
    parser.add_argument("--data", type=Path, default=KORQUAD_DEV)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="a sample of this many questions")
    args = parser.parse_args()
    if args.write:
        pairs = write(SMALL_TALK)
        print(f"{SMALL_TALK}: {len(pairs)} pairs, "
              f"{sum(p['source'] == CHATBOT_SOURCE for p in pairs)} from ChatbotData")
        return 0
    json.dump(measure(args.data, args.split, args.limit), sys.stdout, ensure_ascii=False,
              indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
