"""Conversations: the follow-up resolver on Korean examples, the Conversation API and the
stateless history form (caps, malformed histories, a follow-up with nothing before it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import build_tiny_index, tiny_pipeline

from korqa.corpus.paragraph import Paragraph
from korqa.pipeline.conversation import (
    MAX_HISTORY_CHARS,
    MAX_HISTORY_TURNS,
    MAX_TURN_CHARS,
    Conversation,
    HistoryError,
    Turn,
    _unless_unsupported,
    ask,
    parse_history,
    prefer_document,
    resolve,
    topic_of,
)
from korqa.pipeline.qa import Answer, QAPipeline, RetrievedParagraph

pytestmark = pytest.mark.usefixtures("one_thread")


def turn(question: str, answer: str, title: str = "", document: str = "doc") -> Turn:
    """A turn as Conversation.ask records it (its topic from the question, title, answer)."""
    return Turn(question, question, answer, document, None, title, "standalone",
                topic_of(question, title, answer))


SEJONG_BORN = turn("세종대왕은 언제 태어났나?", "1397년 5월 15일", "세종대왕")
SEJONG_FATHER = turn("세종대왕의 아버지는 누구야?", "태종", "세종대왕")
BUSAN_FOOD = turn("부산의 대표 음식은?", "돼지국밥", "부산")


@pytest.mark.parametrize("before, question, resolved, kind", [
    # a pronoun for the topic, its particle respelled for the name
    (SEJONG_BORN, "그는 몇 년에 죽었어?", "세종대왕은 몇 년에 죽었어?", "reference"),
    (SEJONG_BORN, "그가 만든 글자는?", "세종대왕이 만든 글자는?", "reference"),
    (BUSAN_FOOD, "거기 인구는?", "부산 인구는?", "reference"),
    (BUSAN_FOOD, "거기서 가장 높은 산은?", "부산에서 가장 높은 산은?", "reference"),
    (turn("천안함 침몰 사건이 일어난 날은?", "2010년 3월 26일", "천안함_침몰_사건"),
     "이 사건으로 사망한 장병은?", "천안함 침몰 사건으로 사망한 장병은?", "reference"),
    (turn("갤럭시 S8의 배터리 용량은?", "3,000 mAh", "삼성_갤럭시_S8"),
     "그건 언제 나왔어?", "갤럭시 S8은 언제 나왔어?", "reference"),
    # the previous answer, when the reference is of the kind that was asked for
    (SEJONG_FATHER, "그는 몇 년에 즉위했어?", "태종은 몇 년에 즉위했어?", "answer"),
    (SEJONG_FATHER, "그 사람의 아내는?", "태종의 아내는?", "answer"),
    (SEJONG_BORN, "그때 수도는?", "1397년 5월 15일 수도는?", "answer"),
    (turn("반기문이 보좌관을 지낸 정부는?", "참여정부", "반기문"), "그 정부의 대통령은?",
     "참여정부의 대통령은?", "answer"),
    # a dropped subject: the topic as owner of a noun, or as a verb's subject
    (SEJONG_FATHER, "어머니는?", "세종대왕의 어머니는?", "ellipsis"),
    (SEJONG_BORN, "몇 년에 죽었어?", "세종대왕은 몇 년에 죽었어?", "ellipsis"),
    (turn("갤럭시 S8의 배터리 용량은?", "3,000 mAh", "삼성_갤럭시_S8"), "후면은요?",
     "갤럭시 S8의 후면은요?", "ellipsis"),
    # a question that names its subject is read as typed
    (SEJONG_BORN, "한라산의 높이는?", "한라산의 높이는?", "standalone"),
    (SEJONG_BORN, "세종대왕은 그의 아버지를 존경했나?", "세종대왕은 그의 아버지를 존경했나?",
     "standalone"),
    (turn("신라를 건국한 사람은?", "박혁거세", "신라"), "신라를 세운 사람은 누구인가?",
     "신라를 세운 사람은 누구인가?", "standalone"),
])
def test_follow_ups_become_standalone_questions(before: Turn, question: str, resolved: str,
                                               kind: str) -> None:
    resolution = resolve(question, [before])
    assert (resolution.question, resolution.kind) == (resolved, kind)
    assert resolution.document == "doc"  # retrieval leans toward the topic's document


def test_a_noun_the_previous_question_asked_for_points_at_its_answer() -> None:
    # "그 음반" after "…음반은 언제 나왔어?" is the album (the topic), not the date answered
    album = turn("푸시캣 돌스의 첫 정규 음반은 언제 나왔어?", "2005년 9월 13일", "푸시캣_돌스")
    assert resolve("그 음반은 몇 장 팔렸어?", [album]).question == \
        "푸시캣 돌스 음반은 몇 장 팔렸어?"
    airport = turn("김정남은 어느 공항에서 살해됐어?", "쿠알라룸푸르 국제공항", "김정남")
    assert resolve("그 공항은 어느 나라에 있어?", [airport]).question == \
        "쿠알라룸푸르 국제공항은 어느 나라에 있어?"
    # a plural is not the one person answered
    single = turn("그룹의 리더는 누구야?", "RM", "방탄소년단")
    assert resolve("그들의 데뷔 연도는?", [single]).antecedent != "RM"


def test_two_references_take_the_answer_once_and_the_topic_for_the_other() -> None:
    before = turn("마리 앙투아네트는 누구와 결혼했어?", "루이 16세", "마리_앙투아네트")
    assert resolve("그가 그녀에게 선물한 궁전은?", [before]).question == \
        "루이 16세가 마리 앙투아네트에게 선물한 궁전은?"


def test_the_topic_is_the_phrase_the_document_is_titled_by() -> None:
    assert topic_of("임종석이 여의도 농민 폭력 시위를 주도한 혐의로 지명수배 된 날은?",
                    "임종석", "1989년 2월 15일") == "임종석"
    # the answer is the subject when the document is titled by it
    assert topic_of("로널드 레이건 밑에서 일한 국무 장관은 누구인가?", "알렉산더_헤이그",
                    "알렉산더 헤이그") == "알렉산더 헤이그"
    assert topic_of("Who founded Silla?", "", "") is None  # another language: no topic


def test_a_reference_with_nothing_before_it_is_not_guessed() -> None:
    resolution = resolve("그는 누구야?", [])
    assert resolution.kind == "unresolved"
    assert "'그'" in resolution.hint and "이름" in resolution.hint
    # nor after a history that names no one (another language)
    english = Turn("Who is he?", "Who is he?", "", None, None, "", "standalone", None)
    assert resolve("그녀의 나이는?", [english]).kind == "unresolved"


def search_over(paragraphs: list[Paragraph]):  # noqa: ANN201 - a SearchFunction
    """Scores: how many of the query's two-character pieces each paragraph holds."""

    def search(query: str, k: int) -> list[tuple[Paragraph, float]]:
        pieces = {query[i:i + 2] for i in range(len(query) - 1)} - {"? "}
        scored = [(p, float(sum(piece in p.text for piece in pieces))) for p in paragraphs]
        return sorted([hit for hit in scored if hit[1] > 0], key=lambda hit: -hit[1])[:k]

    return search


PLANETS = Paragraph("d:sun:0", "태양계", "태양계에서 가장 큰 행성은 목성이다.", "sun")
HALLA = Paragraph("d:halla:0", "한라산", "한라산은 남한에서 가장 높은 산이다. 백록담이 있다.",
                  "halla")


def test_a_question_about_another_document_shifts_the_topic() -> None:
    search = search_over([PLANETS, HALLA])
    before = turn("한라산은 어디에 있어?", "제주도", "한라산", document="halla")
    shifted = resolve("태양계에서 가장 큰 행성은?", [before], search)
    assert (shifted.question, shifted.kind, shifted.document) == \
        ("태양계에서 가장 큰 행성은?", "shift", None)
    # a follow-up its own document answers keeps the topic
    kept = resolve("가장 높은 곳에 있는 호수는?", [before], search)
    assert kept.kind == "ellipsis" and kept.question.startswith("한라산")


def test_prefer_document_lifts_the_topic_document_over_the_others() -> None:
    search = search_over([PLANETS, HALLA])
    assert [p.doc_id for p, _ in search("가장 큰 산", 2)] == ["sun", "halla"]
    leaning = prefer_document(search, "halla", prior=1.0)
    hits = leaning("가장 큰 산", 2)
    assert [p.doc_id for p, _ in hits] == ["halla", "sun"]
    assert hits[0][1] == 2 * dict((p.doc_id, s) for p, s in search("가장 큰 산", 2))["halla"]


# ---- the API over a tiny index and reader ---------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, tiny_reader_dir: Path) -> QAPipeline:
    index_dir = build_tiny_index(tmp_path_factory.mktemp("conv") / "index")
    return tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0)()


def test_a_conversation_carries_the_topic_and_starts_over(pipeline: QAPipeline) -> None:
    chat = Conversation(pipeline)
    first = chat.ask("한라산의 높이는 얼마인가?")
    assert first.resolved_question == "한라산의 높이는 얼마인가?" and first.title == "한라산"
    follow = chat.ask("그곳에 있는 호수는?")
    assert follow.question == "그곳에 있는 호수는?"
    assert follow.resolved_question == "한라산에 있는 호수는?"
    assert follow.to_json()["resolved_question"] == "한라산에 있는 호수는?"
    assert follow.paragraphs[0].paragraph.doc_id.endswith("#halla")
    assert [(t.question, t.kind, t.document.rsplit("#", 1)[-1]) for t in chat.turns] == [
        ("한라산의 높이는 얼마인가?", "standalone", "halla"),
        ("그곳에 있는 호수는?", "reference", "halla")]
    chat.reset()
    assert chat.turns == []
    again = chat.ask("그곳에 있는 호수는?")
    assert not again.known and again.hint and again.paragraphs == []


def test_a_follow_up_whose_paragraph_never_speaks_of_it_is_declined(
        pipeline: QAPipeline) -> None:
    chat = Conversation(pipeline)
    chat.ask("한라산의 높이는 얼마인가?")
    answer = chat.ask("그곳의 기온은?")  # the reader (threshold 0) would answer anything
    assert answer.resolved_question == "한라산의 기온은?"
    assert (answer.known, answer.answer) == (False, "")
    assert "기온" in answer.hint and answer.candidates  # the guess is still shown
    assert chat.turns[-1].answer == "" and chat.turns[-1].document.endswith("#halla")


def test_support_is_any_retrieved_paragraph_holding_the_answer() -> None:
    born = Paragraph("s:0", "세종대왕", "세종대왕은 1397년 한양에서 태어났다.", "sejong")
    capital = Paragraph("s:1", "세종대왕", "당시 조선의 수도는 한양이었다.", "sejong")
    answer = Answer("그때 수도는?", "한양", 0.6, True, "세종대왕", "s:0", born.text, 10, 12,
                    paragraphs=[RetrievedParagraph(born, 2.0, 1.0),
                                RetrievedParagraph(capital, 1.0, 0.5)])
    resolution = resolve("그때 수도는?", [SEJONG_BORN])
    assert _unless_unsupported("그때 수도는?", resolution, answer).known
    answer.paragraphs = answer.paragraphs[:1]  # only the birth paragraph: 수도 is nowhere
    declined = _unless_unsupported("그때 수도는?", resolution, answer)
    assert not declined.known and "수도" in declined.hint


def test_a_first_question_that_refers_back_is_answered_with_a_hint(
        pipeline: QAPipeline) -> None:
    answer = Conversation(pipeline).ask("그는 누구야?")
    assert (answer.known, answer.answer, answer.source) == (False, "", "none")
    data = answer.to_json()
    assert data["hint"] == answer.hint and "이름" in answer.hint
    assert data["resolved_question"] == "그는 누구야?"


def test_the_stateless_form_understands_a_follow_up_as_the_conversation_does(
        pipeline: QAPipeline) -> None:
    chat = Conversation(pipeline)
    first = chat.ask("한글은 누가 만들었나?")
    kept = chat.ask("언제 만들었어?")
    history = [{"question": "한글은 누가 만들었나?", "answer": first.answer}]
    stateless = ask(pipeline, "언제 만들었어?", history=history)
    assert stateless.resolved_question == kept.resolved_question
    assert stateless.resolved_question.startswith("한글")
    assert stateless.answer == kept.answer
    # the same question without history is read as typed, and after a history in another
    # language (documented: it gives no topic)
    assert ask(pipeline, "언제 만들었어?").resolved_question == "언제 만들었어?"
    english = [{"question": "Who made Hangul?", "answer": "Sejong"}]
    assert ask(pipeline, "언제 만들었어?", history=english).resolved_question == "언제 만들었어?"


@pytest.mark.parametrize("history, message", [
    ({"question": "q"}, "must be a list"),
    (["한라산은?"], "history[0] must be an object"),
    ([{"answer": "1947미터"}], 'history[0]["question"] must be a non-empty string'),
    ([{"question": "   "}], 'history[0]["question"]'),
    ([{"question": "한라산은?", "answer": 1947}], 'history[0]["answer"] must be a string'),
    ([{"question": "한라산은?"}] * (MAX_HISTORY_TURNS + 1), f"at most {MAX_HISTORY_TURNS}"),
    ([{"question": "가" * (MAX_TURN_CHARS + 1)}], f"at most {MAX_TURN_CHARS} each"),
    ([{"question": "가" * 900, "answer": "나" * 900}] * 12, f"more than {MAX_HISTORY_CHARS}"),
])
def test_a_malformed_or_oversized_history_is_a_clear_error(history: object,
                                                           message: str) -> None:
    with pytest.raises(HistoryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_history(history)


def test_a_history_tolerates_missing_answers_and_extra_keys() -> None:
    history = [{"question": " 한라산의 높이는? ", "answer": None, "score": 0.9},
               {"question": "그곳의 호수는?"},
               {"question": "김치는?", "answer": "모르겠어요. (not sure enough)"}]
    assert parse_history(history) == [("한라산의 높이는?", ""), ("그곳의 호수는?", ""),
                                      ("김치는?", "")]


def test_a_ten_thousand_turn_history_is_refused_before_any_work(pipeline: QAPipeline) -> None:
    with pytest.raises(HistoryError, match="10000 turns"):
        ask(pipeline, "그곳의 호수는?", history=[{"question": "한라산은?"}] * 10_000)
