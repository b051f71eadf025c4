"""The follow-up resolver: a question that leans on the turns before it, written out in full.

Korean rules over Kiwi's part-of-speech tags (korqa.morphology's shared analyser), no generative
model. korqa.pipeline.conversation is the concept's home and uses this module; see its docstring
for what is resolved and how retrieval leans on the result.

- References: pronouns (그, 그녀, 그들, 거기, 그곳, 여기, 그때, 당시, 그것 …) and a determiner
  with a noun (그 사람, 그 회사, 이 사건) are replaced by their antecedent, and the particle after
  them is respelled to fit it (그는 → 태종은, 이 사건으로 → 천안함 침몰 사건으로).
- The antecedent is the previous answer when the reference is of the kind that answer was asked
  for (그 after a 누구 question, 거기 after 어디, 그때 after 언제, "그 회사" after "어느 회사…"),
  else the conversation's topic.
- Ellipsis: a question naming no subject of its own gets the topic, as a verb's subject or a
  noun's owner ("몇 년에 죽었어?" → "세종대왕은 몇 년에 죽었어?", "어머니는?" → "세종대왕의
  어머니는?").
- Topic shift: a question with more content than two words whose own search ranks the topic's
  document under SHIFT_RATIO of the top score, or a two-word one whose search does not find it
  at all, is read as typed, and retrieval stops leaning toward the old document.
- The topic a turn leaves: the noun phrase of its question that the answer's document is titled
  by; else the topic before it, while the conversation stays in the same document; else the
  question's first named noun phrase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from korqa.pipeline.qa import SearchFunction
from korqa.questions import question_type
from korqa.splits import title_key

# Tuned on the development conversations (non-test KorQuAD articles; bench/conversations.py).
SHIFT_RATIO = 0.5  # the topic document's best score under this share of the top: a new topic
PRIOR_DEPTH = 30  # hits searched to find the topic document's paragraphs
CONTEXT_TURNS = 6  # how far back a follow-up's topic is looked for

PERSON, PLACE, TIME, THING = "person", "place", "time", "thing"
_PRONOUNS = {"그": PERSON, "그녀": PERSON, "그이": PERSON, "걔": PERSON, "얘": PERSON,
             "쟤": PERSON, "거기": PLACE, "여기": PLACE, "저기": PLACE, "그곳": PLACE,
             "이곳": PLACE, "저곳": PLACE, "그것": THING, "이것": THING, "저것": THING,
             "그거": THING, "이거": THING, "저거": THING}
_TIME_WORDS = {"그때", "이때", "당시", "그해", "그날", "그무렵"}
_DETERMINERS = {"그", "이", "저"}
# After a determiner these say "after/besides that", not "that thing": the question still
# needs its subject, which ellipsis gives it.
_RELATIVE_NOUNS = {"후", "뒤", "다음", "전", "이후", "이전", "외", "밖", "중", "동안", "결과",
                   "때문", "정도", "이상", "이하", "위", "아래", "사이", "와중", "무렵"}
_NOUN_KINDS = {
    PERSON: {"사람", "인물", "분", "남자", "여자", "선수", "가수", "배우", "작가", "감독", "왕",
             "왕비", "황제", "대통령", "총리", "장관", "의원", "교수", "학자", "화가", "아이",
             "소년", "소녀", "친구", "부부", "멤버", "주인공", "후보", "장군", "여성", "남성"},
    PLACE: {"곳", "장소", "도시", "나라", "국가", "지역", "마을", "섬", "산", "강", "건물", "궁전",
            "공항", "항구", "동네", "지방", "고장", "대륙", "바다"},
    TIME: {"때", "당시", "해", "날", "시기", "시절", "시대", "무렵", "연도", "년도", "순간",
           "날짜"},
}
_QUESTION_KINDS = {"누구": PERSON, "어디": PLACE, "언제": TIME, "무엇": THING}
_INTERROGATIVES = {"누구", "무엇", "어디", "언제", "얼마", "몇", "뭐", "무슨", "어느", "어떤",
                   "왜", "어떻게", "누가", "무얼"}
_ASKING_DETERMINERS = {"어느", "무슨", "어떤", "몇"}  # "어느 공항": the answer is a 공항
# Nouns too general to be anyone's subject ("…한 사람의 이름은?").
_GENERIC = {"사람", "인물", "이름", "것", "곳", "때", "해", "날", "수", "등", "중", "명", "개",
            "번", "이유", "방법", "경우", "정도", "내용", "종류", "다음", "처음", "무엇", "당시",
            "년", "월", "일", "시", "분", "가지", "어디", "누구", "언제"}
_NOUNS = {"NNG", "NNP", "SL", "SH", "SN", "NR", "XSN", "XPN", "XR"}
_NAMES = {"NNP", "SL", "SH"}
_PREDICATES = {"VV", "VA", "XSV", "XSA"}
_CONTENT = {"NNG", "NNP", "SL", "SH", "XR", "VV", "VA"}
# Particles whose spelling follows the word before them: (after a vowel, after a consonant).
_ALLOMORPHS = {"는": ("는", "은"), "은": ("는", "은"), "ᆫ": ("는", "은"), "가": ("가", "이"),
               "이": ("가", "이"), "를": ("를", "을"), "을": ("를", "을"), "ᆯ": ("를", "을"),
               "와": ("와", "과"), "과": ("와", "과"), "로": ("로", "으로"),
               "으로": ("로", "으로"), "랑": ("랑", "이랑"), "이랑": ("랑", "이랑"),
               "나": ("나", "이나"), "이나": ("나", "이나"), "서": ("에서", "에서")}
TOPIC_WORDS = 4  # a topic without a title to trim it to is at most this many words
HINT = ("'{word}'이(가) 누구인지, 무엇인지 앞선 질문이 없어 알 수 없어요. "
        "이름을 넣어 다시 물어봐 주세요.")


class PastTurn(Protocol):
    """What the resolver reads of a turn (korqa.pipeline.conversation.Turn)."""

    resolved_question: str
    answer: str  # "" when there was none
    document: str | None
    topic: str | None


@dataclass(frozen=True)
class Resolution:
    """A follow-up as a standalone question.

    kind: "standalone" (read as typed), "reference" (a pronoun replaced by the topic),
    "answer" (by the previous answer), "ellipsis" (the topic added), "shift" (a new topic,
    read as typed without the prior) or "unresolved" (a reference to nothing: not read).
    """

    question: str
    kind: str
    document: str | None = None  # retrieval leans toward this document; None: no prior
    antecedent: str | None = None
    hint: str | None = None
    replaced: tuple[tuple[int, int], ...] = ()  # the typed question's characters replaced


@dataclass(frozen=True)
class _Token:
    form: str
    tag: str
    start: int
    end: int


@dataclass(frozen=True)
class _Reference:
    start: int  # the characters replaced, particles included
    end: int
    kind: str
    word: str  # as typed, for the hint
    head: str | None  # the noun after a determiner ("회사" of "그 회사")
    particles: tuple[str, ...]
    plural: bool


@dataclass(frozen=True)
class _Context:
    topic: str | None
    document: str | None
    answer: str | None  # the previous turn's answer, when it had one
    answer_kind: str | None  # what the previous question asked for (PERSON, PLACE …)
    asked_nouns: frozenset[str]  # the nouns it asked for: "공항" of "어느 공항에서 …?"


def analyse(text: str) -> list[_Token]:
    from korqa.morphology import kiwi

    return [_Token(t.form, t.tag, t.start, t.start + t.len) for t in kiwi().tokenize(text)]


def resolve(question: str, turns: Sequence[PastTurn], search: SearchFunction | None = None,
            ) -> Resolution:
    """`question` as a standalone question given the `turns` before it (oldest first); `search`
    (an index's, without any prior) lets the topic-shift check compare documents."""
    question = question.strip()
    tokens = analyse(question)
    context = _context(turns)
    named = _names_subject(tokens)
    references = _references(question, tokens)
    if references and context is not None and (context.topic or context.answer):
        return _replace_references(question, references, context)
    if references and not named:
        return Resolution(question, "unresolved", hint=HINT.format(word=references[0].word))
    if context is None or context.topic is None:
        return Resolution(question, "standalone", context.document if context else None)
    content = [t for t in tokens if t.tag in _CONTENT and t.form not in _GENERIC
               and t.form not in _INTERROGATIVES]
    if context.topic.replace(" ", "") in question.replace(" ", ""):
        return Resolution(question, "standalone", context.document)  # "신라를 세운 사람은?"
    if not named and len(content) <= 1:
        return _ellipsis(question, tokens, context)
    ratio = _topic_ratio(question, context.document, search)
    if ratio is not None and (ratio < SHIFT_RATIO if len(content) > 2 else ratio == 0.0):
        return Resolution(question, "shift")
    if named:
        return Resolution(question, "standalone", context.document)
    return _ellipsis(question, tokens, context)


def asked_words(question: str, resolution: Resolution) -> list[str]:
    """The content words a person typed (nouns, verb and adjective stems), less the references
    the resolver replaced: what the paragraph that answers must speak of."""
    return [t.form for t in analyse(question) if t.tag in _CONTENT
            and t.form not in _GENERIC and t.form not in _INTERROGATIVES
            and not any(start <= t.start < end for start, end in resolution.replaced)]


def _names_subject(tokens: list[_Token]) -> bool:
    """Whether a name (NNP, a foreign or Chinese word) is the question's subject or topic, or,
    before any verb, its owner ("한라산의 높이는?", not "…속해 있던 김완선의 백밴드는?")."""
    predicate = False
    for i, token in enumerate(tokens):
        predicate = predicate or token.tag in _PREDICATES
        if token.tag in _NAMES:
            after = _particle_after(tokens, i)
            if after in ("JKS", "JX") or (after == "JKG" and not predicate):
                return True
    return False


def _context(turns: Sequence[PastTurn]) -> _Context | None:
    """The topic and previous answer the next question may refer to; None without turns."""
    recent = list(turns)[-CONTEXT_TURNS:]
    if not recent:
        return None
    last = recent[-1]
    with_topic = next((t for t in reversed(recent) if t.topic), None)
    document = last.document if last.document else (with_topic.document if with_topic else None)
    tokens = analyse(last.resolved_question)
    return _Context(with_topic.topic if with_topic else None, document, last.answer or None,
                    _asked_for(last.resolved_question, tokens), _asked_nouns(tokens))


def _asked_nouns(tokens: list[_Token]) -> frozenset[str]:
    """The nouns a question asks for: its closing noun phrase ("…만든 회사는?", "…회사는
    어디야?", not "…음반은 언제 나왔어?") and a noun after 어느, 무슨 … ("어느 공항에서 …")."""
    asked: set[str] = set()
    run: list[str] = []
    closing = True  # nothing since the run but particles, the copula or a question word
    for previous, token in zip([None, *tokens], tokens, strict=False):
        if token.tag in _NOUNS | {"NNB"} and token.form not in _INTERROGATIVES:
            joined = previous is not None and previous.tag in _NOUNS | {"NNB"}
            run = [*run, token.form] if joined else [token.form]
            closing = True
            if previous is not None and previous.form in _ASKING_DETERMINERS:
                asked.add(token.form)
        elif not (token.tag.startswith(("J", "S", "E", "VCP")) or token.form in _INTERROGATIVES):
            closing = False
    return frozenset(asked | (set(run) if closing else set()))


def _asked_for(question: str, tokens: list[_Token]) -> str | None:
    """What kind of thing a question's answer is (None: a number, a reason, a manner …)."""
    head = None
    for token in tokens:  # the last common noun before the final particle or copula
        if token.tag in ("NNG", "NNB") and token.form not in _INTERROGATIVES:
            head = token.form
    asked = question_type(question)
    kind = _QUESTION_KINDS.get(asked)
    if head is not None and asked in ("무엇", "other"):
        kind = next((k for k, nouns in _NOUN_KINDS.items() if head in nouns), kind)
    return kind


def _references(question: str, tokens: list[_Token]) -> list[_Reference]:
    found: list[_Reference] = []
    subject_before = False  # a named subject earlier in the question is the pronoun's antecedent
    for i, token in enumerate(tokens):
        if token.tag in _NAMES and _particle_after(tokens, i) in ("JX", "JKS"):
            subject_before = True
        if subject_before or (found and token.start < found[-1].end):
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        kind = head = None
        end, plural = token.end, False
        if token.tag == "NP" and (token.form in _PRONOUNS or token.form == "이") and \
                nxt is not None and nxt.form == "들" and nxt.tag == "XSN":
            kind, end, plural = PERSON, nxt.end, True  # 그들, 이들, 그녀들
        elif token.tag == "NP" and token.form in _PRONOUNS:
            kind = _PRONOUNS[token.form]
        elif token.tag in ("NNG", "NP") and token.form in _TIME_WORDS:
            # "2005년 당시", "전쟁 당시": the time is named right before it
            if not (token.form == "당시" and i > 0 and tokens[i - 1].tag in _NOUNS | {"NNB"}):
                kind = TIME
        # Kiwi sometimes tags the determiner 그 as an interjection ("그 정부의 …").
        elif (token.tag in ("MM", "IC") and token.form in _DETERMINERS and nxt is not None
              and nxt.tag in ("NNG", "NNB") and nxt.form not in _RELATIVE_NOUNS
              and all(t.form != nxt.form for t in tokens[:i])):  # "단편 소설인데 … 이 소설"
            head, end = nxt.form, nxt.end
            kind = next((k for k, nouns in _NOUN_KINDS.items() if head in nouns), THING)
        if kind is None:
            continue
        word_end = end
        particles = []
        for later in tokens[i + 1:]:
            if later.tag.startswith("J") and later.start <= end:  # "그건": 그거 + ᆫ, overlapping
                particles.append(later.form)
                end = max(end, later.end)
            elif later.end > word_end:  # not the head noun or plural suffix taken above
                break
        found.append(_Reference(token.start, end, kind, question[token.start:word_end], head,
                                tuple(particles), plural))
    return found


def _particle_after(tokens: list[_Token], i: int) -> str | None:
    for later in tokens[i + 1:]:
        if later.tag in _NOUNS:
            continue
        return later.tag if later.tag.startswith("J") else None
    return None


def _refers_to_answer(ref: _Reference, context: _Context) -> bool:
    """Whether `ref` means the previous answer rather than the topic."""
    if context.answer is None:
        return False
    if context.topic is None:
        return True
    if ref.plural or (ref.head is not None and ref.head in context.topic):
        return False  # "그들" is rarely one answer; "이 사건" of "천안함 침몰 사건" is the topic
    if ref.head is not None and ref.head in context.asked_nouns:
        return True  # "그 회사" after "…만든 회사는?"
    # "이 게임" after a 무엇 question names a kind of its own: only its noun can tell
    return ref.kind == context.answer_kind and (ref.kind != THING or ref.head is None)


def _replace_references(question: str, references: list[_Reference],
                        context: _Context) -> Resolution:
    pieces, position, kind, antecedent = [], 0, "reference", context.topic
    answer_taken = False  # "그가 그녀에게 …": one reference is the answer, the other the topic
    for ref in references:
        use_answer = not answer_taken and _refers_to_answer(ref, context)
        answer_taken = answer_taken or use_answer
        antecedent = context.answer if use_answer else (context.topic or context.answer)
        assert antecedent is not None
        kind = "answer" if use_answer else kind
        pieces += [question[position:ref.start], _render(antecedent, ref, use_answer, context)]
        position = ref.end
    pieces.append(question[position:])
    return Resolution("".join(pieces), kind, context.document, antecedent,
                      replaced=tuple((ref.start, ref.end) for ref in references))


def _render(antecedent: str, ref: _Reference, is_answer: bool, context: _Context) -> str:
    word = antecedent
    if ref.kind == THING and ref.head is not None and not is_answer \
            and ref.head not in antecedent:
        word = f"{antecedent} {ref.head}"  # "이 게임의 판매량" of 바이오쇼크: "바이오쇼크 게임의 …"
    elif ref.kind == TIME:
        is_time = is_answer and context.answer_kind == TIME
        if "당시" in ref.word:
            word = f"{antecedent} 당시"
        elif not is_time:
            word = f"{antecedent} 때"
    return word + "".join(_respell(p, word) for p in ref.particles)


def _respell(particle: str, word: str) -> str:
    forms = _ALLOMORPHS.get(particle)
    if forms is None:
        return particle
    final = _final_consonant(word)
    if particle in ("로", "으로") and final == "ㄹ":
        return "로"
    return forms[1] if final else forms[0]


def _final_consonant(word: str) -> str | None:
    """The last syllable's final consonant as it is read ("ㄹ", another one, or None)."""
    word = word.rstrip()
    if not word:
        return None
    last = word[-1]
    if "가" <= last <= "힣":
        final = (ord(last) - 0xAC00) % 28
        return None if final == 0 else ("ㄹ" if final == 8 else "other")
    if last.isdigit():  # 영/공 일 이 삼 사 오 육 칠 팔 구
        return {"1": "ㄹ", "7": "ㄹ", "8": "ㄹ", "0": "other", "3": "other",
                "6": "other"}.get(last)
    if last.lower() in "lr":
        return "ㄹ"
    return "other" if last.lower() in "mn" else None


def _ellipsis(question: str, tokens: list[_Token], context: _Context) -> Resolution:
    """The topic added as the question's subject (a verb's) or owner (a noun's)."""
    topic = context.topic
    assert topic is not None
    first = next((t for t in tokens if t.tag not in ("SF", "SP", "SS")), None)
    particle = "의"
    if first is not None and first.form in _INTERROGATIVES:
        particle = _respell("는", topic)  # "몇 살이야?" → "세종대왕은 몇 살이야?"
    for i, token in enumerate(tokens):
        if token.tag in _PREDICATES:
            relative = i + 1 < len(tokens) and tokens[i + 1].tag == "ETM"
            if relative and (token.tag in ("VA", "XSA") or token.form in ("있", "없")):
                continue  # "가장 높은 봉우리", "꼭대기에 있는 호수": the noun is the subject
            particle = _respell("가" if relative else "는", topic)
            break
    return Resolution(f"{topic}{particle} {question}", "ellipsis", context.document, topic)


def _topic_ratio(question: str, document: str | None, search: SearchFunction | None,
                 ) -> float | None:
    """The topic document's best score for `question` over the best score of all (0 when it is
    not among the first PRIOR_DEPTH); None when there is nothing to compare."""
    if document is None or search is None:
        return None
    hits = search(question, PRIOR_DEPTH)
    if not hits or hits[0][1] <= 0:
        return None
    best = max((score for paragraph, score in hits if paragraph.doc_id == document), default=0.0)
    return best / hits[0][1]


# ---- the topic a turn leaves ---------------------------------------------------------------------


def topic_of(question: str, title: str = "", answer: str = "",
             previous: str | None = None) -> str | None:
    """The subject a follow-up to (resolved) `question` refers to: the noun phrase matching
    its answer's document title (or the answer, when the title names it); else `previous`, the
    topic before it (give it only while the conversation stays in the same document); else the
    question's first named noun phrase, else its first with a subject, topic or possessive
    particle."""
    if not any("가" <= c <= "힣" for c in question):
        return None  # another language: nothing this resolver can refer back to
    phrases = _noun_phrases(question, analyse(question))
    title_words = _title_words(title)
    for text, _, _ in phrases:
        if _matches_title(text, title_words):
            return _trim_to_title(text, title)
    if answer and _matches_title(answer, title_words):
        return answer
    if previous:
        return previous
    best, best_score = None, 0.0
    for position, (text, tags, particle) in enumerate(phrases):
        score = (0.5 if position == 0 else 0.0) + (2.0 if tags & _NAMES else 0.0) + \
            (1.0 if particle in ("JX", "JKS", "JKG") else 0.0)
        if score > best_score:
            best, best_score = text, score
    return " ".join(best.split()[-TOPIC_WORDS:]) if best else None


def _noun_phrases(question: str, tokens: list[_Token]) -> list[tuple[str, set[str], str | None]]:
    """(text, tags, the particle tag after it) of each run of nouns (spaces inside allowed),
    from its first name on when it has one ("예술고등학교 시절 유아인" → "유아인")."""
    phrases = []
    run: list[_Token] = []

    def close(after: _Token | None) -> None:
        words = [t for t in run if t.tag in ("NNG", "NNP", "SL", "SH", "XR")]
        if words and not all(t.form in _GENERIC or t.form in _INTERROGATIVES for t in words):
            first_name = next((i for i, t in enumerate(run) if t.tag in _NAMES), 0)
            kept = run[first_name:]
            particle = after.tag if after is not None and after.tag.startswith("J") else None
            phrases.append((question[kept[0].start:kept[-1].end], {t.tag for t in kept},
                            particle))
        run.clear()

    for token in tokens:
        joined = run and token.start - run[-1].end <= 1 and \
            question[run[-1].end:token.start].strip() == ""
        if token.tag in _NOUNS and token.form not in _INTERROGATIVES and (joined or not run):
            run.append(token)
            continue
        if run:
            close(token)
        if token.tag in _NOUNS and token.form not in _INTERROGATIVES:
            run.append(token)
    if run:
        close(None)
    return phrases


def _title_words(title: str) -> list[str]:
    """The words of a document title that name it: "김정남_(조선민주주의인민공화국)" → ["김정남"],
    "한라산 › 등산로" → ["한라산"]; one-letter words ("성 베드로 광장"'s 성) say too little."""
    return [word for word in _title_head(title).split() if len(word) >= 2]


def _title_head(title: str) -> str:
    return title_key(title).split("›")[0].split("(")[0].strip()


def _matches_title(text: str, words: list[str]) -> bool:
    compact = text.replace(" ", "")
    title = "".join(words)
    return bool(words) and (any(w in compact for w in words) or
                            (len(compact) >= 2 and compact in title))


def _trim_to_title(text: str, title: str) -> str:
    """The first run of `text`'s words that belong to the title ("성 베드로 광장 양편" → "성 베드로
    광장", "러시아 원정 당시 러시아군" → "러시아 원정")."""
    head = _title_head(title)
    compact = head.replace(" ", "")
    words = text.split()
    inside = [word in head.split() or (len(word) >= 2 and word in compact)
              or any(len(w) >= 2 and w in word for w in head.split()) for word in words]
    if not any(inside):
        return text
    first = inside.index(True)
    last = first
    while last + 1 < len(words) and inside[last + 1]:  # the first block of title words only
        last += 1
    return " ".join(words[first:last + 1])
