"""Plain-text files: encodings as Korean machines save them, binary files refused, headings."""

from __future__ import annotations

import codecs
import logging
import random

import pytest

from korqa.corpus import TextReading, load_corpus
from korqa.corpus.paragraph import document_id
from korqa.corpus.text import MAX_PARAGRAPH_CHARS, UnreadableText, decode_text, text_document

JEJU = "한라산은 제주도에 있는 산이다.\n\n높이는 1,950미터이다.\n"


def paragraphs(tmp_path, name, data, reading=None):
    path = tmp_path / name
    path.write_bytes(data)
    return [(p.id, p.title, p.text) for p in load_corpus([path], reading)]


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("prefix", [b"", codecs.BOM_UTF8])
def test_utf8_with_or_without_bom_is_read_silently(tmp_path, caplog, prefix):
    got = paragraphs(tmp_path, "jeju.txt", prefix + JEJU.encode("utf-8"))
    jeju = f"file:{document_id(tmp_path / 'jeju.txt')}"
    assert got == [(f"{jeju}:0", "jeju", "한라산은 제주도에 있는 산이다."),
                   (f"{jeju}:1", "jeju", "높이는 1,950미터이다.")]
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "utf-16"])
def test_korean_windows_encodings_are_read_with_a_warning_naming_the_file(
        tmp_path, caplog, encoding):
    # CP949 (and its subset EUC-KR) is Korean Windows' default; utf-16 writes a byte-order mark,
    # as Notepad's "Unicode" does. 똠 and 햏 are CP949-only syllables, outside EUC-KR's 2,350.
    text = JEJU if encoding == "euc-kr" else JEJU + "\n똠방각하 햏자.\n"
    got = paragraphs(tmp_path, "gyeongju_cp949.txt", text.encode(encoding))
    assert [t for _, _, t in got][:2] == ["한라산은 제주도에 있는 산이다.", "높이는 1,950미터이다."]
    used = "UTF-16" if encoding == "utf-16" else "CP949"
    assert warnings_of(caplog) == [f"{tmp_path / 'gyeongju_cp949.txt'}: not UTF-8; read as {used}"]


def test_binary_files_are_refused_not_decoded_as_cp949_garbage():
    rng = random.Random(0)
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(2000))
    with pytest.raises(UnreadableText, match="NUL: a binary file"):
        decode_text(png)
    # Valid CP949 that is not Korean text: Hanja and symbols only, as random bytes decode.
    hanja = "一二三四五六七八九十※◎■".encode("cp949") * 20
    with pytest.raises(UnreadableText, match="mostly not Hangul"):
        decode_text(hanja)
    # Valid UTF-8 without NUL, but control characters throughout.
    with pytest.raises(UnreadableText, match="control characters"):
        decode_text(bytes(rng.choice([1, 2, 3, 27, 65, 66]) for _ in range(500)))
    # Random high bytes (no NUL, no controls): neither UTF-8 nor plausible CP949.
    noise = bytes(rng.randrange(0x80, 0x100) for _ in range(3000))
    with pytest.raises(UnreadableText):
        decode_text(noise)


def test_unreadable_file_is_an_error_naming_the_file_and_both_fixes(tmp_path):
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x00\x01binary\x00" * 10)
    with pytest.raises(ValueError) as error:
        list(load_corpus([path]))
    message = str(error.value)
    assert message.startswith(f"{path}: cannot be read as text: byte 0 is NUL")
    assert "--encoding NAME" in message and "--skip-bad" in message


def test_skip_bad_skips_an_unreadable_file_with_a_warning(tmp_path, caplog):
    assert paragraphs(tmp_path, "photo.txt", b"\x00\x01" * 50, TextReading(skip_bad=True)) == []
    assert warnings_of(caplog) == [
        f"{tmp_path / 'photo.txt'}: skipped, not indexed: byte 0 is NUL: a binary file, not text"]


def test_encoding_option_reads_what_detection_cannot(tmp_path, caplog):
    data = JEJU.encode("utf-16-le")  # no byte-order mark: its ASCII characters hold NUL bytes
    with pytest.raises(ValueError, match="NUL"):
        paragraphs(tmp_path, "le.txt", data)
    got = paragraphs(tmp_path, "le.txt", data, TextReading(encoding="utf-16-le"))
    assert [t for _, _, t in got] == ["한라산은 제주도에 있는 산이다.", "높이는 1,950미터이다."]
    assert warnings_of(caplog)[-1].endswith("le.txt: not UTF-8; read as UTF-16-LE")
    # UTF-8 files stay UTF-8 whatever --encoding says, so mixed folders read right.
    latin = TextReading(encoding="latin-1")
    assert paragraphs(tmp_path, "u.txt", JEJU.encode("utf-8"), latin)[0][2] == \
        "한라산은 제주도에 있는 산이다."
    with pytest.raises(ValueError, match="--encoding 'klingon': unknown encoding"):
        TextReading(encoding="klingon")


# ---- headings -----------------------------------------------------------------------------


def parse(text, markdown=True, stem="파일"):
    return text_document(text, stem, markdown)[1]


def test_markdown_headings_title_the_paragraphs_under_them():
    text = ("# 한라산\n\n한라산은 제주도에 있다.\n\n## 등산로\n\n성판악 코스가 길다.\n\n"
            "### 성판악\n\n8시간 걸린다.\n\n## 날씨\n\n바람이 세다.\n")
    assert parse(text) == [
        (1, "한라산", "한라산은 제주도에 있다."),
        (3, "한라산 › 등산로", "성판악 코스가 길다."),
        (5, "한라산 › 등산로 › 성판악", "8시간 걸린다."),
        (7, "한라산 › 날씨", "바람이 세다."),
    ]


def test_heading_lines_are_never_paragraphs_even_inside_a_block():
    text = "머리말이다.\n\n# 한라산 #\n한라산은 높다.\n## 등산로\n길다.\n"
    assert parse(text) == [(0, "한라산", "머리말이다."),
                           (2, "한라산", "한라산은 높다."),
                           (4, "한라산 › 등산로", "길다.")]
    # A heading-only file has no paragraph at all.
    assert parse("# 한라산\n\n## 등산로\n") == []


def test_setext_headings_and_the_stem_when_there_is_no_heading():
    assert parse("부산\n===\n\n항구 도시이다.\n\n음식\n---\n\n국밥이 있다.") == [
        (1, "부산", "항구 도시이다."), (3, "부산 › 음식", "국밥이 있다.")]
    assert parse("항구 도시이다.\n\n국밥이 있다.", stem="busan") == [
        (0, "busan", "항구 도시이다."), (1, "busan", "국밥이 있다.")]


def test_code_fences_hold_no_headings():
    text = "# 설치\n\n```\n# 주석이다\npip install korqa\n```\n"
    assert parse(text) == [(1, "설치", "```\n# 주석이다\npip install korqa\n```")]


def test_short_title_lines_of_plain_text_are_headings():
    text = ("한라산\n\n한라산은 제주도에 있다.\n\n등산로\n\n성판악 코스가 길다.\n\n"
            "겨울 산행\n준비물\n\n아이젠이 필요하다.\n")
    assert parse(text, markdown=False) == [
        (1, "한라산", "한라산은 제주도에 있다."),
        (3, "한라산 › 등산로", "성판악 코스가 길다."),
        (4, "한라산 › 등산로", "겨울 산행\n준비물"),  # two lines: a paragraph
        (5, "한라산 › 등산로", "아이젠이 필요하다."),
    ]
    # Title and section in a row.
    assert parse("한라산\n\n등산로\n\n길다.", markdown=False) == [(2, "한라산 › 등산로", "길다.")]


@pytest.mark.parametrize("text", [
    "한라산은 높다\n\n길다.",               # ends like a sentence (다)
    "정말 높을까?\n\n길다.",                # ends with punctuation
    "- 아이젠\n\n길다.",                    # a list item
    "백록담\n\n성판악\n\n관음사\n\n길다.",  # three short lines in a row: a poem, an address
    "본문이다.\n\n끝",                       # followed by no paragraph
    "가" * 31 + "\n\n길다.",                 # too long for a title
])
def test_short_line_rule_is_conservative(text):
    blocks = text.split("\n\n")
    got = parse(text, markdown=False, stem="s")
    assert [t for _, _, t in got] == blocks
    assert {title for _, title, _ in got} == {"s"}


def test_markdown_has_no_plain_title_lines():
    assert parse("한라산\n\n길다.", markdown=True, stem="s") == [
        (0, "s", "한라산"), (1, "s", "길다.")]


def test_a_block_over_the_paragraph_limit_is_cut_at_sentence_ends_into_blocks_of_its_own():
    sentence = "가나다라마바사 아자차카타파하. "
    long_block = (sentence * (MAX_PARAGRAPH_CHARS // len(sentence) * 3)).strip()
    got = parse(f"# 긴 글\n\n{long_block}\n\n짧은 문단이다.")
    assert [number for number, _, _ in got] == [1, 2, 3, 4]  # the pieces count as blocks
    assert all(len(text) <= MAX_PARAGRAPH_CHARS and text.endswith(".") for _, _, text in got)
    assert " ".join(text for _, _, text in got[:-1]) == long_block
    assert got[-1] == (4, "긴 글", "짧은 문단이다.")
