"""SQuAD / KorQuAD parsing and validation (korqa.corpus.formats)."""

from __future__ import annotations

import copy
import json

import pytest

from korqa.corpus.formats import (
    GoldAnswer,
    load_json,
    read_squad,
    read_squad_json,
    subset_dataset,
    write_json,
)

CONTEXT = "1989년 2월 15일 여의도 농민 폭력 시위를 주도한 혐의로 임종석이 지명수배되었다."


def _dataset() -> dict:
    return {
        "version": "KorQuAD_v1.0_dev",
        "data": [
            {"title": "임종석", "paragraphs": [{"context": CONTEXT, "qas": [
                {"id": "q1", "question": "임종석이 지명수배된 날은?",
                 "answers": [{"text": "1989년 2월 15일", "answer_start": 0}]},
                {"id": "q2", "question": "시위를 주도한 혐의로 지명수배된 사람은?",
                 "answers": [{"text": "임종석", "answer_start": CONTEXT.index("임종석")}]},
            ]}]},
            {"title": "여의도", "paragraphs": [{"context": "여의도는 서울에 있다.", "qas": [
                {"id": "q3", "question": "여의도는 어디에 있나?",
                 "answers": [{"text": "서울", "answer_start": 5}]},
            ]}]},
        ],
    }


def test_parses_examples_in_file_order_with_article_index():
    examples = read_squad_json(_dataset(), "tiny")
    assert [e.qid for e in examples] == ["q1", "q2", "q3"]
    assert [e.article_index for e in examples] == [0, 0, 1]
    assert examples[1].answers == [GoldAnswer("임종석", CONTEXT.index("임종석"))]
    assert examples[1].answers[0].end == CONTEXT.index("임종석") + 3
    assert examples[0].title == "임종석" and examples[0].context == CONTEXT
    assert not examples[0].is_impossible


def test_reads_a_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(_dataset(), ensure_ascii=False), encoding="utf-8")
    assert len(read_squad(path)) == 3


def test_gzip_files_round_trip_and_a_broken_one_is_named(tmp_path):
    for name in ("plain.json", "packed.json.gz"):
        write_json(_dataset(), tmp_path / name)
        assert load_json(tmp_path / name) == _dataset()
        assert [e.qid for e in read_squad(tmp_path / name)] == ["q1", "q2", "q3"]
    assert "임종석" in (tmp_path / "plain.json").read_text(encoding="utf-8")  # not \uXXXX
    assert not list(tmp_path.glob("*.partial"))
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes((tmp_path / "packed.json.gz").read_bytes()[:40])
    with pytest.raises(ValueError, match="broken.json.gz"):
        load_json(broken)


def test_v2_unanswerable_questions_have_no_answers():
    data = _dataset()
    data["data"][1]["paragraphs"][0]["qas"].append(
        {"id": "q4", "question": "여의도의 인구는?", "answers": [], "is_impossible": True})
    example = read_squad_json(data, "v2")[-1]
    assert example.is_impossible and example.answers == []


def _error(mutate) -> str:
    data = copy.deepcopy(_dataset())
    mutate(data)
    with pytest.raises(ValueError) as error:
        read_squad_json(data, "tiny.json")
    return str(error.value)


def _qa(data: dict, article: int = 0, qa: int = 0) -> dict:
    return data["data"][article]["paragraphs"][0]["qas"][qa]


def test_missing_data_field_is_named():
    assert _error(lambda d: d.pop("data")) == "tiny.json: missing field 'data'"


def test_missing_context_names_article_and_paragraph():
    message = _error(lambda d: d["data"][1]["paragraphs"][0].pop("context"))
    assert message == "tiny.json: article 1 ('여의도'), paragraph 0: missing field 'context'"


def test_missing_question_names_the_question_id():
    message = _error(lambda d: _qa(d, 0, 1).pop("question"))
    assert message == "tiny.json: article 0 ('임종석'), question 'q2': missing field 'question'"


def test_missing_id_names_the_question_position():
    message = _error(lambda d: _qa(d).pop("id"))
    assert message == ("tiny.json: article 0 ('임종석'), paragraph 0, question 0: "
                       "missing field 'id'")


def test_wrong_type_is_named():
    message = _error(lambda d: _qa(d)["answers"][0].update(answer_start="0"))
    assert message == ("tiny.json: article 0 ('임종석'), question 'q1': answers[0]: field "
                       "'answer_start' should be int, got str")
    message = _error(lambda d: _qa(d).update(answers={"text": "x"}))
    assert "question 'q1': field 'answers' should be list, got dict" in message


def test_answer_start_out_of_range():
    message = _error(lambda d: _qa(d, 1)["answers"][0].update(answer_start=50))
    assert message == ("tiny.json: article 1 ('여의도'), question 'q3': answers[0]: field "
                       "'answer_start' 50 is out of range for a 2-character answer in a "
                       "12-character context")
    assert "out of range" in _error(lambda d: _qa(d, 1)["answers"][0].update(answer_start=-1))


def test_answer_text_must_match_the_context_at_its_start():
    message = _error(lambda d: _qa(d, 1)["answers"][0].update(answer_start=4))
    assert message == ("tiny.json: article 1 ('여의도'), question 'q3': answers[0]: field "
                       "'text' '서울' does not match the context at answer_start 4 (' 서')")


def test_duplicate_ids_are_rejected():
    message = _error(lambda d: _qa(d, 1).update(id="q1"))
    assert message == ("tiny.json: article 1 ('여의도'), question 'q1': duplicate id "
                       "(first seen in article 0)")


def test_answerable_question_needs_an_answer_and_impossible_none():
    message = _error(lambda d: _qa(d).update(answers=[]))
    assert message.endswith("question 'q1': field 'answers' is empty but 'is_impossible' is "
                            "not true")
    message = _error(lambda d: _qa(d).update(is_impossible=True))
    assert message.endswith("field 'answers' must be empty when 'is_impossible' is true")


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="file not found"):
        read_squad(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        read_squad(broken)


def test_subset_keeps_only_listed_questions_and_their_fields():
    subset = subset_dataset(_dataset(), {"q2"})
    assert [a["title"] for a in subset["data"]] == ["임종석"]
    assert [q["id"] for q in subset["data"][0]["paragraphs"][0]["qas"]] == ["q2"]
    assert subset["version"] == "KorQuAD_v1.0_dev"


def test_korquad_dev_parses_completely(korquad_dev):
    examples = read_squad(korquad_dev)
    assert len(examples) == 5774
    assert len({e.article_index for e in examples}) == 140
    # 964 paragraphs, four of them repeating another paragraph's text word for word.
    assert len({e.context for e in examples}) == 960
    assert all(e.context[a.start:a.end] == a.text for e in examples for a in e.answers)
