"""The issue's small folder, asked as a new user would: paraphrases and follow-ups, BM25 against
the BM25 + e5 hybrid in the same run.

    python3 bench/paraphrase.py --encoder DIR      # DIR from `korqa import-e5 --out DIR`
    python3 bench/paraphrase.py                    # BM25 only

Eight short documents written for this script (a kingdom, a king, two cities, a mountain, a
food, the planets, a company's FAQ); its 신라 document says 박혁거세 "건국하였다", never "세웠다",
while the FAQ tells visitors where to "세우다" (park) their cars. Each question is asked in a
`Conversation`, in order, so the follow-ups are resolved against the answers before them.
Prints, per retriever and question: how it was understood, the paragraph ranked first, the
answer and its confidence.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from korqa.pipeline import PipelineConfig, QAPipeline, load_reader
from korqa.pipeline.conversation import Conversation
from korqa.retrieval.index import Index, build_index, make_retriever

DOCUMENTS = {
    "silla.txt": "# 신라\n\n신라는 기원전 57년 박혁거세가 경주 지역에 건국하였다. 처음 이름은 "
                 "서라벌이었으며, 7세기에 당나라와 손잡고 백제와 고구려를 무너뜨려 삼국을 "
                 "통일하였다. 935년 경순왕이 고려에 나라를 넘기며 막을 내렸다.",
    "sejong.txt": "# 세종대왕\n\n세종대왕은 1397년 5월 15일 한양에서 태어났다. 아버지는 "
                  "태종이고 어머니는 원경왕후이다. 1418년 조선의 제4대 임금으로 즉위하였고 "
                  "1443년 훈민정음을 만들었다. 1450년에 세상을 떠났다.\n\n태종은 조선의 제3대 "
                  "임금으로 1400년에 즉위하였다. 당시 조선의 수도는 한양이었다.",
    "busan.txt": "# 부산\n\n부산은 대한민국 동남쪽의 항구 도시로, 인구는 약 330만 명이다. 부산의 "
                 "대표 음식은 돼지국밥과 밀면이며, 해운대 해수욕장이 널리 알려져 있다.",
    "seoul.txt": "# 서울\n\n서울은 대한민국의 수도로, 인구는 약 940만 명이다. 한강이 도시 가운데를 "
                 "흐르며 조선 시대에는 한양이라고 불렸다.",
    "halla.txt": "# 한라산\n\n한라산은 제주도 가운데에 있는 화산으로 높이는 1,947미터이다. "
                 "꼭대기에는 백록담이라는 화구호가 있다.",
    "kimchi.txt": "# 김치\n\n김치는 배추나 무를 소금에 절인 뒤 고춧가루와 젓갈로 양념하여 발효시킨 "
                  "음식이다. 겨울을 나기 위해 김치를 한꺼번에 담그는 일을 김장이라고 한다.",
    "planets.txt": "# 태양계\n\n태양계에서 가장 큰 행성은 목성이고, 태양에서 가장 가까운 행성은 "
                   "수성이다. 지구는 태양에서 세 번째 행성이다.",
    "faq.txt": "# 회사 안내\n\n방문객의 차는 본관 지하 2층 주차장에 세우면 된다. 주차권은 안내 "
               "데스크에서 받을 수 있으며, 방문한 사람은 누구나 2시간까지 무료이다.\n\n"
               "근무 시간은 평일 오전 9시부터 오후 6시까지이다.",
}
CONVERSATIONS = [
    ["신라를 건국한 사람은?", "신라를 세운 사람은 누구인가?"],
    ["세종대왕은 언제 태어났나?", "그때 수도는?"],
    ["부산의 대표 음식은?", "거기 인구는?"],
    ["세종대왕의 아버지는 누구야?", "그는 몇 년에 즉위했어?"],
]


def ask_all(pipeline: QAPipeline, name: str) -> None:
    for questions in CONVERSATIONS:
        chat = Conversation(pipeline)
        for question in questions:
            answer = chat.ask(question)
            first = answer.paragraphs[0].paragraph.title if answer.paragraphs else "-"
            guess = answer.candidates[0].answer if answer.candidates else ""
            shown = answer.answer if answer.known else f"모르겠어요 (best guess {guess!r})"
            print(f"{name:<7} | {question} → {answer.resolved_question} | first: {first} | "
                  f"{shown} ({answer.score:.2f})", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", help="an e5 encoder directory: also ask the hybrid")
    parser.add_argument("--model", help="reader directory (default: korqa.paths)")
    args = parser.parse_args()
    reader = load_reader(args.model, PipelineConfig())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        for name, text in DOCUMENTS.items():
            (folder / name).write_text(text + "\n", encoding="utf-8")
        kinds = [("bm25", None)] + ([("hybrid", args.encoder)] if args.encoder else [])
        for kind, encoder in kinds:
            out = Path(tmp) / kind
            build_index(out, [folder], make_retriever(kind, encoder), progress=False)
            with Index(out) as index:
                ask_all(QAPipeline(index, reader), kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
