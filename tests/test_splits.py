"""KorQuAD splits (korqa.splits) and the cross-validation family (korqa.training.cross_validation,
`korqa split`)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from korqa.cli import main
from korqa.corpus.formats import GoldAnswer, SquadExample, read_squad
from korqa.questions import question_type
from korqa.splits import SPLIT_NAMES, korquad_split, select_split, title_key, train_validation_test
from korqa.training.cross_validation import cv_folds


@pytest.mark.parametrize(("question", "kind"), [
    ("성 베드로 광장을 설계한 인물은 누구인가?", "누구"),
    ("임종석을 검거한 것은 누가 주도했나?", "누구"),
    ("반기문이 유엔 사무총장에 당선되었던 날은 언제인가?", "언제"),
    ("임종석이 여의도 농민 폭력 시위를 주도한 혐의로 지명수배 된 날은?", "언제"),
    ("이명박은 고등학교 졸업 후 어디로 이사하였는가?", "어디"),
    ("페니키아인들이 해상무역을 통해 교류했던 지역은?", "어디"),
    ("차범근이 독일에서 활약할 당시 애칭은 무엇인가?", "무엇"),
    ("금강산은 어느 계절에 특히 '금강산'이라고 불리는가?", "무엇"),
    ("천사는 몇 등급으로 나뉘는가?", "몇"),
    ("2010년의 한국 정부의 채무는 얼마인가?", "몇"),
    ("일제강점기 당시 일본인들은 거제도를 어떻게 명명했는가?", "어떻게"),
    ("이명박이 군대 입대 후 훈련소에서 강제 퇴소 당한 이유는?", "왜"),
    ("왜 그는 사임했나?", "왜"),
    ("천안함 침몰 사건이 무엇때문에 일어났다고 발표했는가?", "왜"),
    ("조선이 일본에게 갑신정변에 대한 배상을 해주기로 한 조약은?", "other"),
    ("임진왜란을 일으킨 나라의 수도는?", "other"),  # 왜 inside 임진왜란 is no "why"
])
def test_question_type_rule(question, kind):
    assert question_type(question) == kind


def _examples(articles: int = 10, per_article: int = 4) -> list[SquadExample]:
    questions = ["누가 했나?", "언제인가?", "어디인가?", "무엇인가?"]
    return [
        SquadExample(f"a{a}-q{q}", questions[q % 4], "가나다", f"t{a}", a, [GoldAnswer("나", 1)])
        for a in range(articles) for q in range(per_article)
    ]


def test_title_key_reads_korquad_and_wikipedia_titles_alike():
    assert title_key("노아의_방주") == title_key(" 노아의  방주 ") == "노아의 방주"
    assert title_key("김정남_(조선민주주의인민공화국)") == "김정남 (조선민주주의인민공화국)"


def test_korquad_rule_on_tiny_data():
    rest, test = korquad_split(_examples())
    assert {e.article_index for e in test} == {4, 9}
    assert {e.article_index for e in rest} == {0, 1, 2, 3, 5, 6, 7, 8}


@pytest.mark.parametrize("scheme", ["group-kfold", "kfold", "stratified", "shuffle"])
def test_cv_schemes_are_deterministic_and_disjoint(scheme):
    examples = _examples()
    first = [([e.qid for e in t], [e.qid for e in v]) for t, v in cv_folds(examples, scheme, 4, 7)]
    again = [([e.qid for e in t], [e.qid for e in v]) for t, v in cv_folds(examples, scheme, 4, 7)]
    assert first == again and len(first) == 4
    for train, validation in first:
        assert not set(train) & set(validation)
        assert len(train) + len(validation) == len(examples)
    if scheme != "shuffle":  # k-fold schemes: each question validates exactly once
        assert sorted(q for _, v in first for q in v) == sorted(e.qid for e in examples)


def test_group_kfold_keeps_articles_together_and_seed_matters():
    examples = _examples(articles=20, per_article=3)
    by_seed = {}
    for seed in (0, 1):
        folds = list(cv_folds(examples, "group-kfold", 5, seed))
        for train, validation in folds:
            assert not {e.article_index for e in train} & {e.article_index for e in validation}
            assert len(validation) == 12  # equal-sized articles: 4 per fold
        by_seed[seed] = [sorted({e.article_index for e in v}) for _, v in folds]
    assert by_seed[0] != by_seed[1]


def test_stratified_keeps_question_type_mix():
    examples = _examples(articles=10, per_article=4)  # 10 of each of 4 types
    for _, validation in cv_folds(examples, "stratified", 5, 0):
        assert Counter(question_type(e.question) for e in validation) == {
            "누구": 2, "언제": 2, "어디": 2, "무엇": 2}


def test_bad_scheme_and_folds_are_clear_errors():
    with pytest.raises(ValueError, match="unknown cross-validation scheme 'loo'"):
        list(cv_folds(_examples(), "loo"))
    with pytest.raises(ValueError, match="folds must be at least 2"):
        list(cv_folds(_examples(), "kfold", 1))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        select_split(_examples(), "dev")


def test_train_validation_test_on_tiny_data():
    examples = _examples()
    train, validation, test = train_validation_test(examples, validation_fold=1, folds=4)
    assert {e.article_index for e in test} == {4, 9}
    assert len({e.article_index for e in validation}) == 2
    assert len(train) + len(validation) + len(test) == len(examples)
    assert select_split(examples, "validation", validation_fold=1, folds=4) == validation
    assert select_split(examples, "all") == examples


def test_each_split_name_has_one_meaning():
    examples = _examples()
    train, validation, test = train_validation_test(examples)
    split = {name: select_split(examples, name) for name in SPLIT_NAMES}
    assert split["test"] == test == [e for e in examples if e.article_index % 5 == 4]
    assert split["validation"] == validation and split["train"] == train
    # Every non-test question, in file order: what train and validation hold together.
    assert split["train+validation"] == sorted(train + validation, key=examples.index)
    assert split["all"] == examples


@pytest.mark.slow
def test_korquad_dev_split_rule_and_folds(korquad_dev):
    examples = read_squad(korquad_dev)
    train, validation, test = train_validation_test(examples)
    assert len({e.article_index for e in test}) == 28 and len(test) == 1387
    assert all(e.article_index % 5 == 4 for e in test)
    assert (len(train), len(validation)) == (3512, 875)
    assert len(select_split(examples, "train+validation")) == 4387
    assert not {e.article_index for e in train} & {e.article_index for e in validation}
    folds = list(cv_folds(korquad_split(examples)[0], "group-kfold", 5, 0))
    sizes = [len(v) for _, v in folds]
    assert sum(sizes) == 4387 and max(sizes) - min(sizes) < 10  # balanced by question count
    assert [e.qid for e in validation] == [e.qid for e in folds[0][1]]


def _write_tiny(tmp_path) -> str:
    data = {"version": "tiny", "data": [
        {"title": f"t{a}", "paragraphs": [{"context": "가나다", "qas": [
            {"id": f"a{a}-q{q}", "question": "무엇?",
             "answers": [{"text": "나", "answer_start": 1}]}
            for q in range(2)]}]}
        for a in range(10)]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_split_command_writes_id_lists(tmp_path, capsys):
    data = _write_tiny(tmp_path)
    out = tmp_path / "ids"
    assert main(["split", "--data", data, "--out", str(out)]) == 0
    assert json.loads((out / "test.ids.json").read_text()) == ["a4-q0", "a4-q1", "a9-q0", "a9-q1"]
    assert len(json.loads((out / "train_validation.ids.json").read_text())) == 16
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"][str(out / "test.ids.json")] == {"questions": 4, "articles": 2}


def test_split_command_writes_squad_folds(tmp_path):
    data = _write_tiny(tmp_path)
    out = tmp_path / "squad"
    args = ["split", "--data", data, "--out", str(out), "--scheme", "group-kfold",
            "--folds", "4", "--format", "squad"]
    assert main(args) == 0
    validation = read_squad(out / "fold0" / "validation.json")
    train = read_squad(out / "fold0" / "train.json")
    assert len(validation) == 4 and len(train) == 12
    assert not {e.title for e in validation} & {e.title for e in train}
    assert json.loads((out / "splits.json").read_text())["scheme"] == "group-kfold"
    assert main(args[:-2] + ["--fold", "3", "--out", str(tmp_path / "one")]) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [
        "fold3", "splits.json", "test.ids.json"]


def test_split_command_bad_input_is_one_line(tmp_path, capsys):
    assert main(["split", "--data", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("none.json: file not found")
