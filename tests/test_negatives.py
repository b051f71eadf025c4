"""Unanswerable training questions (korqa.training.negatives, `korqa negatives`)."""

from __future__ import annotations

import json

from tiny import make_tiny_reader

from korqa.cli import main
from korqa.corpus.formats import read_squad
from korqa.evaluation.open_domain import build_open_sets
from korqa.faq import load_faq
from korqa.reader.config import ReaderConfig
from korqa.reader.features import convert_examples_to_features
from korqa.splits import is_test_article, select_split
from korqa.tokenization import Tokenizer


def test_questions_meet_other_articles_of_their_own_split_and_small_talk_stays_out_of_the_sets(
        tmp_path, capsys, korquad_dev):
    chitchat = tmp_path / "chat.csv"
    chitchat.write_text("Q,A,label\n" + "".join(f"잡담 질문 {i}번?,답,0\n" for i in range(1200)),
                        encoding="utf-8")
    out = tmp_path / "negatives.json.gz"
    assert main(["negatives", "--data", str(korquad_dev), "--out", str(out), "--per-question",
                 "2", "--chitchat", str(chitchat), "--chitchat-count", "20"]) == 0
    summary = json.loads(capsys.readouterr().out)

    negatives = read_squad(out)
    train = select_split(read_squad(korquad_dev), "train")
    by_qid = {example.qid: example for example in train}
    train_contexts = {example.context: example.title for example in train}
    assert summary["questions"] == len(negatives) == 2 * len(train) + 20
    assert all(n.is_impossible and not n.answers for n in negatives)
    for negative in negatives:
        # Only training-fold paragraphs, titled by the article they come from.
        assert train_contexts[negative.context] == negative.title
        if negative.qid.startswith("negative-smalltalk-"):
            continue
        asked = by_qid[negative.qid.removeprefix("negative-").rsplit("-", 1)[0]]
        assert negative.question == asked.question and negative.title != asked.title

    small_talk = {n.question for n in negatives if n.qid.startswith("negative-smalltalk-")}
    test_rows = {e.question for e in load_faq(chitchat) if is_test_article(e.id)}
    validation = {q.question for q in build_open_sets(korquad_dev, chitchat, "validation")
                  if q.kind == "offtopic"}
    assert len(small_talk) == 20 and not small_talk & (test_rows | validation)


def test_an_unanswerable_question_trains_every_window_towards_the_null_span(tmp_path,
                                                                           korquad_dev):
    negatives = tmp_path / "negatives.json"
    assert main(["negatives", "--data", str(korquad_dev), "--out", str(negatives)]) == 0
    longest = max(read_squad(negatives), key=lambda example: len(example.context))
    tokenizer = Tokenizer.from_pretrained(make_tiny_reader(tmp_path / "reader"))
    windows = convert_examples_to_features([longest], tokenizer,
                                           ReaderConfig(max_seq_length=64, doc_stride=32),
                                           is_training=True)
    assert len(windows) > 1
    assert {(w.start_position, w.end_position) for w in windows} == {(0, 0)}


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
