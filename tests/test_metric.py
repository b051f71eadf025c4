"""KorQuAD 1.0 and SQuAD v1.1 metrics (korqa.korquad_metric, `korqa score`)."""

from __future__ import annotations

import json

import pytest

from korqa.cli import main
from korqa.corpus.formats import GoldAnswer, SquadExample
from korqa.korquad_metric import (
    evaluate_predictions,
    exact_match_score,
    f1_score,
    normalize_answer,
    squad_f1_score,
)


def test_particle_costs_exact_match_and_a_little_f1():
    # 10 gold characters, 11 predicted, 10 shared: F1 = 2 * (10/11) * 1 / (10/11 + 1) = 20/21.
    assert exact_match_score("1989년 2월 15일에", "1989년 2월 15일") == 0.0
    assert f1_score("1989년 2월 15일에", "1989년 2월 15일") == pytest.approx(20 / 21)
    assert round(100 * f1_score("1989년 2월 15일에", "1989년 2월 15일"), 1) == 95.2


def test_character_f1_hand_computed():
    # "임종석" vs "임수경": one shared character of three each -> P = R = 1/3.
    assert f1_score("임수경", "임종석") == pytest.approx(1 / 3)
    # Spaces do not count: "서울 대학교" vs "서울대학교" is a perfect character match.
    assert f1_score("서울 대학교", "서울대학교") == 1.0
    assert exact_match_score("서울 대학교", "서울대학교") == 0.0
    # Multiset: "가가" vs "가" -> 1 shared of 2 predicted: P 1/2, R 1, F1 2/3.
    assert f1_score("가가", "가") == pytest.approx(2 / 3)
    assert f1_score("", "임종석") == 0.0


def test_normalisation_follows_korquad():
    assert normalize_answer("《소나기》") == "소나기"
    assert normalize_answer("‘평화의 노래’") == "평화의 노래"
    assert normalize_answer("〈UN〉 (북한인권)  결의안.") == "un 북한인권 결의안"
    assert normalize_answer("The G.O.O.D. Music!") == "the good music"  # articles stay
    assert exact_match_score("《소나기》", "소나기") == 1.0
    # Hangul is left exactly as it is: no case, no decomposition.
    assert normalize_answer("한글") == "한글" and len(normalize_answer("한글")) == 2


def test_squad_metric_uses_tokens_and_drops_articles():
    assert squad_f1_score("the red car", "a red bus") == pytest.approx(0.5)
    assert squad_f1_score("1989년 2월 15일에", "1989년 2월 15일") == pytest.approx(2 / 3)


def _examples() -> list[SquadExample]:
    return [
        SquadExample("q1", "언제?", "1989년 2월 15일에", "t", 0,
                     [GoldAnswer("1989년 2월 15일", 0), GoldAnswer("1989년", 0)]),
        SquadExample("q2", "누구?", "임종석이", "t", 0, [GoldAnswer("임종석", 0)]),
        SquadExample("q3", "누구?", "임수경", "t", 1, [GoldAnswer("임수경", 0)]),
    ]


def test_evaluate_takes_best_gold_and_zero_for_missing():
    result = evaluate_predictions(_examples(), {"q1": "1989년", "q2": "임종석이"})
    # q1 exact (second gold); q2 F1 2*(3/4)*1/(3/4+1) = 6/7; q3 missing -> 0.
    assert result["total"] == 3
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 6 / 7) / 3)
    squad = evaluate_predictions(_examples(), {"q1": "1989년", "q2": "임종석이"}, metric="squad")
    assert squad["exact_match"] == pytest.approx(100 / 3) and squad["f1"] == pytest.approx(100 / 3)


def test_evaluate_accepts_a_dataset_object_and_rejects_bad_input():
    dataset = {"data": [{"title": "t", "paragraphs": [{"context": "임종석이", "qas": [
        {"id": "q", "question": "누구?", "answers": [{"text": "임종석", "answer_start": 0}]}]}]}]}
    assert evaluate_predictions(dataset, {"q": "임종석"}) == {
        "exact_match": 100.0, "f1": 100.0, "total": 1}
    with pytest.raises(ValueError, match="prediction for question 'q' should be a string"):
        evaluate_predictions(dataset, {"q": ["임종석"]})
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        evaluate_predictions(dataset, {}, metric="bleu")


def test_unanswerable_question_is_right_only_when_abstaining():
    example = SquadExample("q", "?", "가나", "t", 0, [], is_impossible=True)
    assert evaluate_predictions([example], {"q": ""})["f1"] == 100.0
    assert evaluate_predictions([example], {"q": "가"})["exact_match"] == 0.0


def test_score_command_prints_json(tmp_path, capsys):
    data = tmp_path / "gold.json"
    data.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "1989년 2월 15일에 지명수배", "qas": [
            {"id": "q1", "question": "언제?", "answers": [{"text": "1989년 2월 15일",
                                                          "answer_start": 0}]},
            {"id": "q2", "question": "무엇?", "answers": [{"text": "지명수배",
                                                          "answer_start": 14}]}]}]}]},
        ensure_ascii=False), encoding="utf-8")
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps({"q1": "1989년 2월 15일에", "q2": "지명수배"},
                                      ensure_ascii=False), encoding="utf-8")
    assert main(["score", "--data", str(data), "--predictions", str(predictions), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"exact_match": 50.0, "f1": pytest.approx(100 * (20 / 21 + 1) / 2),
                      "total": 2}
    predictions.write_text("[1, 2]", encoding="utf-8")
    assert main(["score", "--data", str(data), "--predictions", str(predictions)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err
