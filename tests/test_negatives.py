"""Unanswerable training questions (korqa.training.negatives, `korqa negatives`)."""

from __future__ import annotations

import json

from tiny import make_tiny_reader

from korqa.cli import main
from korqa.corpus.formats import read_squad
from korqa.faq import load_faq
from korqa.open_sets import build_open_sets
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

