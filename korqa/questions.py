"""Question types of Korean questions by their interrogative word (누구, 언제, 몇, …).

Light on purpose (only `re`): the pipeline's confidence reads a question's type on every
`korqa ask`, and the training modules that also use it load scikit-learn.
"""

from __future__ import annotations

import re

QUESTION_TYPES = ("누구", "언제", "어디", "무엇", "몇", "어떻게", "왜", "other")

# Question types, tried in this order; the first whose pattern occurs in the question wins.
# An interrogative word decides first (왜/어떻게/몇 before 언제/어디/누구 before 무엇, so that
# "무엇 때문에" is 왜 and "몇 년에" is 몇). KorQuAD often asks without one ("…지명수배 된 날은?",
# "…설계한 인물은?"): then the noun right before the final topic marker decides.
_INTERROGATIVES: tuple[tuple[str, str], ...] = (
    ("왜", r"(?:^|\s)왜(?:\s|$|\?)|무엇 ?때문|무슨 이유"),
    ("어떻게", r"어떻게|어떤 방법|어떠한 방법"),
    ("몇", r"몇|얼마"),
    ("언제", r"언제"),
    ("어디", r"어디|어느 곳|어느 지역|어느 나라"),
    ("누구", r"누구|누가|누군"),
    ("무엇", r"무엇|무슨|뭐|무얼|어떤|어느"),
)
_HEAD_NOUNS: tuple[tuple[str, str], ...] = (
    ("왜", r"(?:이유|까닭|원인)"),
    ("어떻게", r"(?:방법|방식)"),
    # "…사람의 이름은?" is a person; a bare "…앨범의 이름은?" is not.
    ("누구", r"(?:인물|사람|선수|작가|감독|학자|주인공)(?:의 이름)?"),
    ("언제", r"(?:날|날짜|연도|년도|해|시기|때|시점|시각|시간|기간|연대)"),
    ("어디", r"(?:곳|장소|지역|나라|국가|도시|위치|지명)"),
    ("몇", r"(?:수|숫자|금액|액수|나이|인원|비율|횟수|높이|길이|거리|무게|면적)"),
)
# "…한 인물은?" / "…된 날짜는?" : head noun, topic marker, question mark at the end.
_FINAL_TOPIC = r"(?:은|는|이|가)?\s*\??\s*$"


def question_type(question: str) -> str:
    """One of QUESTION_TYPES for a Korean question; see the rule above `_INTERROGATIVES`."""
    for name, pattern in _INTERROGATIVES:
        if re.search(pattern, question):
            return name
    for name, nouns in _HEAD_NOUNS:
        if re.search(r"(?:^|\s)" + nouns + _FINAL_TOPIC, question):
            return name
    return "other"
