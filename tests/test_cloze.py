"""Cloze questions from plain paragraphs (korqa.training.cloze, `korqa cloze`), read by Kiwi."""

from __future__ import annotations

import json
import random

import pytest

from korqa.cli import main
from korqa.corpus.formats import load_json, read_squad
from korqa.corpus.paragraph import Paragraph
from korqa.morphology import kiwi
from korqa.training.cloze import cloze_dataset, cloze_questions

BIRTH = "이순신은 1545년 서울 건천동에서 태어났다."
PARAGRAPH = ("한라산은 제주도에 있는 화산이다. "
             "세종대왕은 집현전 학자들과 함께 1443년에 훈민정음을 창제하였다. "
             "독도는 동도와 서도 두 개의 큰 섬으로 이루어져 있다. 이 문장은 묻지 않는다!")


def all_questions(text: str) -> set[tuple[str, str]]:
    """Every (question, answer) the generator can draw from `text`, over many seeds."""
    made = set()
    for seed in range(40):
        for item in cloze_questions(text, kiwi(), per_paragraph=5, rng=random.Random(seed)):
            made.add((item.question, item.answer))
    return made


def test_each_kind_of_answer_gets_its_question_word():
    made = all_questions(BIRTH)
    assert ("이순신은 언제 서울 건천동에서 태어났는가?", "1545년") in made
    assert ("이순신은 1545년 어디에서 태어났는가?", "서울 건천동") in made
    assert ("무엇이 1545년 서울 건천동에서 태어났는가?", "이순신") in made


def test_copula_and_particles_agree_with_the_question_word():
    made = all_questions(PARAGRAPH)
    assert ("한라산은 어디에 있는 화산인가?", "제주도") in made
    assert ("세종대왕은 집현전 학자들과 함께 1443년에 무엇을 창제했는가?", "훈민정음") in made
    assert ("세종대왕은 집현전 학자들과 함께 언제 훈민정음을 창제했는가?", "1443년") in made


def test_answers_sit_at_their_offsets_and_never_in_the_question():
    for item in cloze_questions(PARAGRAPH, kiwi(), per_paragraph=10):
        assert PARAGRAPH[item.answer_start:item.answer_start + len(item.answer)] == item.answer
        assert item.answer not in item.question
        assert item.question.endswith("가?")
    # One question per sentence at most, and the exclamation is not a statement.
    assert len(cloze_questions(PARAGRAPH, kiwi(), per_paragraph=10)) <= 3


def test_words_are_never_cut_in_the_middle():
    # "조선전기" must not yield the half-word "조선", nor "2차원" a bare "2".
    text = "이 지도는 조선전기의 대표적인 지도라고 할 수 있다. 극좌표는 2차원에서 쓰인다."
    for _, answer in all_questions(text):
        assert answer in ("조선전기", "2차원", "극좌표")


def test_dataset_excludes_titles_caps_the_count_and_reads_back(tmp_path):
    paragraphs = [Paragraph(f"kowiki:{i}:0", title, PARAGRAPH + " " * i, str(i))
                  for i, title in enumerate(["한라산", "노아의 방주", "독도"] * 3)]
    dataset = cloze_dataset(paragraphs, kiwi(), max_questions=5, per_paragraph=2,
                            exclude_titles=["노아의_방주"], min_chars=10)
    titles = [article["title"] for article in dataset["data"]]
    assert "노아의 방주" not in titles and titles
    path = tmp_path / "cloze.json"
    path.write_text(json.dumps(dataset, ensure_ascii=False), encoding="utf-8")
    examples = read_squad(path)  # validates every answer against its context
    assert len(examples) == 5
    assert len({example.qid for example in examples}) == 5


@pytest.mark.slow
def test_cloze_command_over_kowiki(tmp_path, capsys, korquad_dev):
    kowiki = korquad_dev.parents[1] / "kowiki" / "kowiki_00.jsonl.xz"
    out = tmp_path / "cloze.json.gz"
    assert main(["cloze", "--corpus", str(kowiki), "--out", str(out), "--max-questions", "30",
                 "--exclude", str(korquad_dev)]) == 0
    assert json.loads(capsys.readouterr().out)["questions"] == 30
    assert len(read_squad(out)) == 30
    korquad_titles = {a["title"].replace("_", " ") for a in load_json(korquad_dev)["data"]}
    assert not {a["title"] for a in load_json(out)["data"]} & korquad_titles
