"""Extra training data made ready (korqa.training.extra_data, `korqa clean-squad`)."""

from __future__ import annotations

import json

from korqa.cli import main
from korqa.corpus.formats import read_squad
from korqa.splits import select_split


def test_clean_squad_cuts_markup_moves_answers_and_drops_test_articles(tmp_path, capsys,
                                                                      korquad_dev):
    test_title = select_split(read_squad(korquad_dev), "test")[0].title
    context = "임진왜란</b>은 <b data-x='{\"a\":[1,2]}'>1592년</b>에 시작되었다."
    raw = {"data": [
        {"title": "임진왜란", "paragraphs": [{"context": context, "qas": [
            {"id": "q1", "question": "임진왜란은 언제 시작되었나?",
             "answers": [{"text": "1592년", "answer_start": context.index("1592년")}]},
            # An answer that starts inside a tag keeps what is left of its span.
            {"id": "q2", "question": "무엇이 시작되었나?",
             "answers": [{"text": "b>은", "answer_start": context.index("b>은")}]}]}]},
        {"title": test_title.replace(" ", "_"), "paragraphs": [{"context": "시험 문단.", "qas": [
            {"id": "q3", "question": "무엇?", "answers": [{"text": "시험", "answer_start": 0}]}]}]},
    ]}
    source, out = tmp_path / "tydi.json", tmp_path / "clean.json.gz"
    source.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert main(["clean-squad", "--data", str(source), "--out", str(out),
                 "--drop-test-of", str(korquad_dev)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["questions"], summary["articles_dropped"], summary["contexts_cleaned"]) \
        == (2, 1, 1)
    first, second = read_squad(out)
    assert first.context == "임진왜란은 1592년에 시작되었다."
    assert [(a.text, a.start) for a in first.answers] == [("1592년", 6)]
    assert [(a.text, a.start) for a in second.answers] == [("은", 4)]
