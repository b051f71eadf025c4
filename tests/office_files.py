"""Korean test documents in every format korqa reads, written here from one outline so that a
test (or bench/documents.py) knows exactly what text each file holds.

An outline is a list of blocks: ("h1" | "h2" | "h3", heading), ("p", paragraph) or ("table",
rows of cells). Writers: PDF (reportlab, Korean glyphs from Debian's fonts-nanum when present,
else Adobe's Korean CID font), DOCX (python-docx), HWPX (zip + XML by hand), HWP 5 (an OLE
compound file of zlib-compressed records, by hand: `compound_file`), HTML and Markdown by hand.
Nothing here is copied from ../shared.
"""

from __future__ import annotations

import html
import struct
import zipfile
import zlib
from pathlib import Path

Block = tuple[str, object]
Outline = list[Block]

NANUM = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
NANUM_BOLD = Path("/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf")

# ---- what the files say (written for these tests) ------------------------------------------

LIBRARY: Outline = [
    ("h1", "한빛시립도서관 이용 안내"),
    ("p", "한빛시립도서관은 1987년에 문을 열었으며, 시민 누구나 회원증 없이 열람실을 이용할 "
          "수 있다. 대출을 하려면 신분증을 가지고 1층 안내데스크에서 회원 가입을 해야 한다."),
    ("h2", "대출과 반납"),
    ("p", "한 사람이 한 번에 빌릴 수 있는 책은 다섯 권이며, 대출 기간은 14일이다. 반납이 늦으면 "
          "늦은 날수만큼 대출이 정지된다."),
    ("p", "무인 반납기는 도서관 정문 옆에 있고, 휴관일에도 24시간 이용할 수 있다."),
    ("h2", "운영 시간"),
    ("table", [["구분", "평일", "주말"], ["종합자료실", "09:00~21:00", "09:00~17:00"],
               ["어린이자료실", "09:00~18:00", "09:00~17:00"]]),
    ("p", "정기 휴관일은 매월 첫째 주와 셋째 주 월요일이며, 법정 공휴일에도 문을 닫는다."),
]
TRAVEL: Outline = [
    ("h1", "사내 출장 규정"),
    ("p", "이 규정은 임직원이 업무를 위해 출장을 갈 때 필요한 절차와 비용 기준을 정한다."),
    ("h2", "출장 신청"),
    ("p", "출장을 가려는 직원은 출발 사흘 전까지 전자결재로 출장 신청서를 올려 팀장의 승인을 "
          "받아야 한다."),
    ("h2", "여비 기준"),
    ("p", "국내 출장 일비는 하루 3만 원이고, 숙박비는 1박에 7만 원까지 실비로 정산한다."),
    ("table", [["항목", "국내", "해외"], ["일비", "3만 원", "50달러"],
               ["숙박비", "7만 원", "150달러"]]),
    ("h3", "정산"),
    ("p", "출장에서 돌아온 직원은 일주일 안에 영수증을 붙여 재무팀에 여비 정산서를 내야 한다."),
]
FESTIVAL: Outline = [
    ("h1", "바람골 봄꽃 축제"),
    ("p", "바람골 봄꽃 축제는 해마다 4월 둘째 주 토요일에 개막하여 아흐레 동안 열린다. 축제장은 "
          "바람골 저수지 둘레길 3킬로미터 구간이다."),
    ("h2", "주요 행사"),
    ("p", "개막식 날 저녁에는 저수지 위에서 등불 띄우기 행사가 열리고, 주말마다 지역 농산물 "
          "장터가 선다."),
    ("table", [["행사", "장소", "시간"], ["등불 띄우기", "저수지 선착장", "19:30"],
               ["농산물 장터", "주차장 광장", "10:00"]]),
    ("h2", "찾아오는 길"),
    ("p", "축제 기간에는 바람골역에서 축제장까지 셔틀버스가 20분 간격으로 다닌다."),
]
SCHOLARSHIP: Outline = [
    ("h1", "2024학년도 희망장학금 안내"),
    ("p", "희망장학금은 성적이 우수하고 가정 형편이 어려운 재학생에게 한 학기 등록금 전액을 "
          "지원하는 장학금이다."),
    ("h2", "신청 방법"),
    ("p", "장학금 신청 마감일은 3월 15일이며, 학생지원센터 누리집에서 신청서를 내려받아 "
          "전자우편으로 제출한다."),
    ("table", [["서류", "발급처"], ["성적증명서", "학사지원팀"], ["소득증명서", "주민센터"]]),
    ("h2", "선발"),
    ("p", "선발 결과는 4월 첫째 주 금요일에 학과 사무실 게시판과 문자로 알린다."),
]
LIGHTHOUSE: Outline = [
    ("h1", "솔섬 등대 이야기"),
    ("p", "솔섬 등대는 1908년에 세워진 하얀 원통형 등대로, 높이는 26미터이다. 지금은 등대 "
          "박물관으로 쓰이며 누구나 무료로 들어갈 수 있다."),
    ("h2", "등대지기의 하루"),
    ("p", "등대지기는 해가 지기 삼십 분 전에 등불을 켜고, 밤새 두 시간마다 렌즈와 기계를 "
          "살폈다."),
    ("p", "안개가 짙은 날에는 무적이라 불리는 나팔을 울려 배들에게 등대의 위치를 알렸다."),
]
KIMCHI: Outline = [
    ("h1", "배추김치 담그기"),
    ("p", "배추는 반으로 갈라 소금물에 여덟 시간 동안 절인 뒤 찬물에 세 번 헹군다."),
    ("h2", "양념"),
    ("p", "양념은 고춧가루, 다진 마늘, 생강, 멸치액젓과 찹쌀풀을 섞어 만든다."),
]

# The folder test: each file, and a question it alone answers.
QUESTIONS = {
    "library.pdf": ("한빛시립도서관은 몇 년에 문을 열었나?", "1987년"),
    "travel.docx": ("국내 출장 일비는 하루 얼마인가?", "3만 원"),
    "festival.hwpx": ("바람골 봄꽃 축제는 언제 개막하나?", "4월 둘째 주 토요일"),
    "scholarship.hwp": ("희망장학금 신청 마감일은 언제인가?", "3월 15일"),
    "lighthouse.html": ("솔섬 등대는 몇 년에 세워졌나?", "1908년"),
    "kimchi.md": ("배추는 소금물에 몇 시간 동안 절이나?", "여덟 시간"),
}
OUTLINES = {"library.pdf": LIBRARY, "travel.docx": TRAVEL, "festival.hwpx": FESTIVAL,
            "scholarship.hwp": SCHOLARSHIP, "lighthouse.html": LIGHTHOUSE, "kimchi.md": KIMCHI}


def write(path: Path, outline: Outline, **options: object) -> Path:
    """Write `outline` to `path` in the format its suffix names."""
    writer = {".pdf": write_pdf, ".docx": write_docx, ".hwpx": write_hwpx, ".hwp": write_hwp,
              ".html": write_html, ".md": write_markdown}[path.suffix.lower()]
    writer(path, outline, **options)
    return path


def write_folder(folder: Path) -> Path:
    """One file of each format, as `QUESTIONS` names them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, outline in OUTLINES.items():
        write(folder / name, outline)
    return folder


def plain_text(outline: Outline) -> str:
    """Every text of an outline, a block a line (table rows as cells separated by spaces)."""
    lines = []
    for kind, value in outline:
        if kind == "table":
            lines.extend(" ".join(row) for row in value)  # type: ignore[union-attr]
        else:
            lines.append(str(value))
    return "\n".join(lines)


# ---- Markdown and HTML ----------------------------------------------------------------------


def write_markdown(path: Path, outline: Outline) -> None:
    parts = []
    for kind, value in outline:
        if kind == "table":
            rows = [" | ".join(row) for row in value]  # type: ignore[union-attr]
            parts.append("\n".join(rows))
        elif kind.startswith("h"):
            parts.append("#" * int(kind[1]) + " " + str(value))
        else:
            parts.append(str(value))
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")


NAVIGATION = ["홈", "기관 소개", "알림마당", "정보공개", "고객센터", "사이트맵", "로그인"]
FOOTER = ("(우) 12345 바닷가시 등대로 1 · 대표전화 000-123-4567 · "
          "Copyright © 솔섬문화재단. All rights reserved.")


def write_html(path: Path, outline: Outline, encoding: str = "utf-8",
               semantic: bool = True) -> None:
    """A saved web page: navigation, a sidebar and a footer around the article, in HTML5's
    own elements, or (`semantic=False`) in <div>s named by class as many Korean sites do."""
    esc = html.escape
    body = []
    for kind, value in outline:
        if kind == "table":
            rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                           for row in value)  # type: ignore[union-attr]
            body.append(f"<table>{rows}</table>")
        elif kind.startswith("h"):
            body.append(f"<{kind}>{esc(str(value))}</{kind}>")
        else:
            body.append(f"<p>{esc(str(value))}</p>")
    nav = "".join(f'<li><a href="/m{i}">{esc(item)}</a></li>' for i, item in enumerate(NAVIGATION))
    side = "".join(f'<li><a href="/n{i}">공지 {i}: 누리집 점검 안내</a></li>' for i in range(5))
    title = f"{esc(str(outline[0][1]))} | 솔섬문화재단"
    page = f"""<!DOCTYPE html>
<html lang="ko"><head><meta charset="{encoding}"><title>{title}</title>
<style>body {{ font-family: sans-serif; }}</style><script>var tracker = "분석 스크립트";</script>
</head><body>
<header><div class="logo">솔섬문화재단</div><nav><ul>{nav}</ul></nav></header>
<div class="wrap"><aside class="sidebar"><h3>최근 공지</h3><ul>{side}</ul></aside>
<main><article>{"".join(body)}</article>
<div class="share">공유하기: 페이스북 · 트위터 · 카카오톡</div></main></div>
<footer><p>{esc(FOOTER)}</p></footer>
</body></html>"""
    if not semantic:
        for tag, name in (("header", "top"), ("nav", "gnb"), ("aside", "lnb"), ("main", "cont"),
                          ("article", "view"), ("footer", "foot")):
            page = page.replace(f"<{tag}>", f'<div class="{name}">').replace(
                f"<{tag} class=", "<div class=").replace(f"</{tag}>", "</div>")
    path.write_bytes(page.encode(encoding, "xmlcharrefreplace"))


# ---- PDF ------------------------------------------------------------------------------------


def _pdf_fonts() -> tuple[str, str]:
    from reportlab.pdfbase import pdfmetrics

    if NANUM.exists() and NANUM_BOLD.exists():
        from reportlab.pdfbase.ttfonts import TTFont

        pdfmetrics.registerFont(TTFont("Nanum", str(NANUM)))
        pdfmetrics.registerFont(TTFont("NanumBold", str(NANUM_BOLD)))
        return "Nanum", "NanumBold"
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont("HYSMyeongJo-Medium"))
    return "HYSMyeongJo-Medium", "HYSMyeongJo-Medium"


def write_pdf(path: Path, outline: Outline, header: str | None = "사내 배포용 — 무단 복제 금지",
              repeat: int = 1, password: str | None = None, scanned: bool = False) -> None:
    """A laid-out PDF: wrapped paragraphs, headings in larger type, a table, a running header
    and "- N -" page numbers on every page. `repeat` writes the outline that many times (a long
    file); `password` encrypts it; `scanned` draws only pictures, no text layer."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    if scanned:
        canvas = Canvas(str(path), pagesize=A4)
        for page in range(2):
            for line in range(30):  # grey bars where a scanner would have drawn the lines
                canvas.setFillColor(colors.grey)
                canvas.rect(70, 760 - line * 22 - page * 5, 450 - (line % 4) * 40, 9, stroke=0,
                            fill=1)
            canvas.showPage()
        canvas.save()
        return
    regular, bold = _pdf_fonts()
    # Lines wrap between words (어절), as Hangul and Word wrap Korean by default.
    body = ParagraphStyle("body", fontName=regular, fontSize=11, leading=16, spaceAfter=9)
    sizes = {"h1": 20, "h2": 15, "h3": 13}
    story: list[object] = []
    for _ in range(repeat):
        for kind, value in outline:
            if kind == "table":
                table = Table(value, hAlign="LEFT")
                table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), regular),
                                           ("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
                story += [table, Spacer(1, 9)]
            elif kind in sizes:
                size = sizes[kind]
                story.append(Paragraph(html.escape(str(value)), ParagraphStyle(
                    kind, fontName=bold, fontSize=size, leading=size * 1.3, spaceBefore=8,
                    spaceAfter=8)))
            else:
                story.append(Paragraph(html.escape(str(value)), body))

    def decorate(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont(regular, 9)
        if header:
            canvas.drawString(72, A4[1] - 40, header)
        canvas.drawCentredString(A4[0] / 2, 30, f"- {document.page} -")
        canvas.restoreState()

    encrypt = None
    if password is not None:
        from reportlab.lib.pdfencrypt import StandardEncryption

        encrypt = StandardEncryption(password, canPrint=0)
    SimpleDocTemplate(str(path), pagesize=A4, encrypt=encrypt, title="").build(
        story, onFirstPage=decorate, onLaterPages=decorate)


# ---- DOCX -----------------------------------------------------------------------------------


def write_docx(path: Path, outline: Outline, header: str | None = "사내 배포용") -> None:
    import docx

    document = docx.Document()
    if header:
        document.sections[0].header.paragraphs[0].text = header
    for kind, value in outline:
        if kind == "table":
            rows = value  # type: ignore[assignment]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        elif kind.startswith("h"):
            document.add_heading(str(value), level=int(kind[1]))
        else:
            document.add_paragraph(str(value))
    document.save(str(path))


# ---- HWPX: zip + XML ------------------------------------------------------------------------

HWPX_NS = {
    "ha": "http://www.hancom.co.kr/hwpml/2011/app",
    "hp": "http://www.hancom.co.kr/hwpml/2011/paragraph",
    "hs": "http://www.hancom.co.kr/hwpml/2011/section",
    "hh": "http://www.hancom.co.kr/hwpml/2011/head",
    "hc": "http://www.hancom.co.kr/hwpml/2011/core",
    "hpf": "http://www.hancom.co.kr/schema/2011/hpf",
    "opf": "http://www.idpf.org/2007/opf/",
}
# Hangul's own style list starts 바탕글, 본문, 개요 1 … 개요 7.
STYLES = [("바탕글", "Normal"), ("본문", "Body"), *((f"개요 {n}", f"Outline {n}")
                                                    for n in range(1, 8))]


def _style_id(kind: str) -> int:
    return 1 + int(kind[1]) if kind.startswith("h") else 0


def write_hwpx(path: Path, outline: Outline, header: str | None = "사내 배포용") -> None:
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in HWPX_NS.items())
    esc = html.escape

    def para(text: str, style: int = 0) -> str:
        return (f'<hp:p id="0" paraPrIDRef="{style}" styleIDRef="{style}" pageBreak="0" '
                f'columnBreak="0" merged="0"><hp:run charPrIDRef="0"><hp:t>{esc(text)}</hp:t>'
                "</hp:run></hp:p>")

    paragraphs = []
    if header:
        paragraphs.append(
            '<hp:p id="0" paraPrIDRef="0" styleIDRef="0"><hp:run charPrIDRef="0"><hp:ctrl>'
            f'<hp:header id="1" applyPageType="BOTH"><hp:subList>{para(header)}</hp:subList>'
            "</hp:header></hp:ctrl></hp:run></hp:p>")
    for kind, value in outline:
        if kind == "table":
            rows = value  # type: ignore[assignment]
            cells = "".join(
                "<hp:tr>" + "".join(
                    f'<hp:tc><hp:subList>{para(cell)}</hp:subList><hp:cellAddr colAddr="{c}" '
                    f'rowAddr="{r}"/><hp:cellSpan colSpan="1" rowSpan="1"/></hp:tc>'
                    for c, cell in enumerate(row)) + "</hp:tr>"
                for r, row in enumerate(rows))
            paragraphs.append(
                '<hp:p id="0" paraPrIDRef="0" styleIDRef="0"><hp:run charPrIDRef="0">'
                f'<hp:tbl rowCnt="{len(rows)}" colCnt="{len(rows[0])}">{cells}</hp:tbl>'
                "<hp:t/></hp:run></hp:p>")
        else:
            paragraphs.append(para(str(value), _style_id(kind)))
    styles = "".join(f'<hh:style id="{i}" type="PARA" name="{name}" engName="{eng}" '
                     f'paraPrIDRef="{i}" charPrIDRef="0" nextStyleIDRef="0" langID="1042"/>'
                     for i, (name, eng) in enumerate(STYLES))
    files = {
        "mimetype": "application/hwp+zip",
        "version.xml": '<?xml version="1.0" encoding="UTF-8"?><hv:HCFVersion '
                       'xmlns:hv="http://www.hancom.co.kr/hwpml/2011/version" major="5" '
                       'minor="1" micro="0" buildNumber="1" xmlVersion="1.4" application="korqa"/>',
        "META-INF/container.xml": '<?xml version="1.0" encoding="UTF-8"?><ocf:container '
                                  'xmlns:ocf="urn:oasis:names:tc:opendocument:xmlns:container">'
                                  '<ocf:rootfiles><ocf:rootfile full-path="Contents/content.hpf" '
                                  'media-type="application/hwpml-package+xml"/></ocf:rootfiles>'
                                  "</ocf:container>",
        "Contents/content.hpf": f'<?xml version="1.0" encoding="UTF-8"?><opf:package {ns}>'
                                "<opf:manifest>"
                                '<opf:item id="header" href="Contents/header.xml" '
                                'media-type="application/xml"/>'
                                '<opf:item id="section0" href="Contents/section0.xml" '
                                'media-type="application/xml"/></opf:manifest><opf:spine>'
                                '<opf:itemref idref="header" linear="yes"/>'
                                '<opf:itemref idref="section0" linear="yes"/></opf:spine>'
                                "</opf:package>",
        "Contents/header.xml": f'<?xml version="1.0" encoding="UTF-8"?><hh:head {ns} '
                               f'version="1.4" secCnt="1"><hh:refList><hh:styles '
                               f'itemCnt="{len(STYLES)}">{styles}</hh:styles></hh:refList>'
                               "</hh:head>",
        "Contents/section0.xml": f'<?xml version="1.0" encoding="UTF-8"?><hs:sec {ns}>'
                                 f'{"".join(paragraphs)}</hs:sec>',
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", files.pop("mimetype"), compress_type=zipfile.ZIP_STORED)
        for name, text in files.items():
            archive.writestr(name, text, compress_type=zipfile.ZIP_DEFLATED)


# ---- HWP 5: records in an OLE compound file -------------------------------------------------

HWPTAG_BEGIN = 0x10
TAG_DOCUMENT_PROPERTIES = HWPTAG_BEGIN
TAG_STYLE = HWPTAG_BEGIN + 10
TAG_PARA_HEADER = HWPTAG_BEGIN + 50
TAG_PARA_TEXT = HWPTAG_BEGIN + 51
TAG_PARA_CHAR_SHAPE = HWPTAG_BEGIN + 52
TAG_CTRL_HEADER = HWPTAG_BEGIN + 55
TAG_LIST_HEADER = HWPTAG_BEGIN + 56
TAG_TABLE = HWPTAG_BEGIN + 61


def _record(tag: int, level: int, data: bytes) -> bytes:
    size = len(data)
    if size >= 0xFFF:
        return struct.pack("<II", tag | level << 10 | 0xFFF << 20, size) + data
    return struct.pack("<I", tag | level << 10 | size << 20) + data


def _ctrl_id(name: str) -> int:
    a, b, c, d = (ord(ch) for ch in name)
    return a << 24 | b << 16 | c << 8 | d


def _hwp_paragraph(text: str, level: int, style: int = 0) -> bytes:
    """One paragraph's records: its header, text (UTF-16, ending in a paragraph break) and
    char shape."""
    units = (text + "\r").encode("utf-16-le")
    n_chars = len(units) // 2
    header = struct.pack("<IIHBBHHHI", n_chars, 0, style, style, 0, 1, 0, 0, 0)
    return (_record(TAG_PARA_HEADER, level, header) + _record(TAG_PARA_TEXT, level + 1, units)
            + _record(TAG_PARA_CHAR_SHAPE, level + 1, struct.pack("<II", 0, 0)))


def _hwp_table(rows: list[list[str]], level: int) -> bytes:
    """A paragraph holding a table control: its cells as lists of paragraphs."""
    tbl = _ctrl_id("tbl ")
    out = b""
    n_rows, n_cols = len(rows), len(rows[0])
    # An extended control character: 8 code units (code, ctrl id, 8 spare bytes, code).
    units = struct.pack("<HI8xH", 11, tbl, 11) + "\r".encode("utf-16-le")
    out += _record(TAG_PARA_HEADER, level, struct.pack("<IIHBBHHHI", len(units) // 2, 0x800, 0,
                                                       0, 0, 1, 0, 0, 0))
    out += _record(TAG_PARA_TEXT, level + 1, units)
    out += _record(TAG_PARA_CHAR_SHAPE, level + 1, struct.pack("<II", 0, 0))
    out += _record(TAG_CTRL_HEADER, level + 1, struct.pack("<I", tbl) + bytes(42))
    out += _record(TAG_TABLE, level + 2, struct.pack("<IHHH4H", 0, n_rows, n_cols, 0, 0, 0, 0, 0)
                   + struct.pack(f"<{n_rows}H", *([n_cols] * n_rows)) + struct.pack("<H", 1))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            out += _record(TAG_LIST_HEADER, level + 2,
                           struct.pack("<HHI", 1, 0, 0)
                           + struct.pack("<HHHHII4HH", c, r, 1, 1, 8000, 1000, 0, 0, 0, 0, 1))
            out += _hwp_paragraph(cell, level + 2)
    return out


def _hwp_style(name: str, english: str) -> bytes:
    return (struct.pack("<H", len(name)) + name.encode("utf-16-le")
            + struct.pack("<H", len(english)) + english.encode("utf-16-le")
            + struct.pack("<BBhHH", 0, 0, 1042, 0, 0))


def write_hwp(path: Path, outline: Outline, header: str | None = "사내 배포용",
              compressed: bool = True, password: bool = False) -> None:
    """An HWP 5.0 file: FileHeader, DocInfo (the style list) and BodyText/Section0, whose
    paragraphs use the 개요 N styles for headings; `header` becomes a page-header control."""
    body = b""
    if header:
        head = _ctrl_id("head")
        units = struct.pack("<HI8xH", 16, head, 16) + "\r".encode("utf-16-le")
        body += _record(TAG_PARA_HEADER, 0, struct.pack("<IIHBBHHHI", len(units) // 2, 0, 0, 0,
                                                        0, 1, 0, 0, 0))
        body += _record(TAG_PARA_TEXT, 1, units)
        body += _record(TAG_CTRL_HEADER, 1, struct.pack("<I", head) + bytes(8))
        body += _record(TAG_LIST_HEADER, 2, struct.pack("<HHI", 1, 0, 0) + bytes(12))
        body += _hwp_paragraph(header, 2)
    for kind, value in outline:
        if kind == "table":
            body += _hwp_table(value, 0)  # type: ignore[arg-type]
        else:
            body += _hwp_paragraph(str(value), 0, _style_id(kind))
    # One section; pages, footnotes, … numbered from 1; the caret at the start.
    properties = struct.pack("<7H3I", 1, 1, 1, 1, 1, 1, 1, 0, 0, 0)
    doc_info = _record(TAG_DOCUMENT_PROPERTIES, 0, properties) + b"".join(
        _record(TAG_STYLE, 0, _hwp_style(name, eng)) for name, eng in STYLES)
    flags = (1 if compressed else 0) | (2 if password else 0)
    file_header = (b"HWP Document File".ljust(32, b"\0") + struct.pack("<II", 0x05010100, flags)
                   ).ljust(256, b"\0")

    def pack(data: bytes) -> bytes:
        if not compressed:
            return data
        squeezer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return squeezer.compress(data) + squeezer.flush()

    # An empty property set (byte order, version, system, class id, no sections): some
    # readers check that the summary stream exists.
    summary = struct.pack("<HHI16sI", 0xFFFE, 0, 0x00020006, bytes(16), 0)
    compound_file(path, {"FileHeader": file_header, "DocInfo": pack(doc_info),
                         "BodyText/Section0": pack(body), "\x05HwpSummaryInformation": summary})


# ---- a minimal OLE compound file writer (version 3, 512-byte sectors) -----------------------

_FREE, _END, _FAT, _NONE = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
_SECTOR, _MINI, _CUTOFF = 512, 64, 4096


def _chain(start: int, count: int) -> list[int]:
    return [start + i + 1 if i + 1 < count else _END for i in range(count)]


def _sectors(data: bytes, size: int) -> int:
    return -(-len(data) // size)


def compound_file(path: Path, streams: dict[str, bytes]) -> None:
    """Write `streams` ("Storage/Name" → bytes; one level of storages) as an OLE compound
    file, small streams in the mini stream as the format requires."""
    storages = sorted({name.split("/")[0] for name in streams if "/" in name})
    small = {n: d for n, d in streams.items() if len(d) < _CUTOFF}
    large = {n: d for n, d in streams.items() if len(d) >= _CUTOFF}
    mini_start: dict[str, int] = {}
    mini_fat: list[int] = []
    mini_stream = b""
    for name, data in small.items():
        count = _sectors(data, _MINI)
        mini_start[name] = len(mini_fat) if count else _END
        mini_fat += _chain(len(mini_fat), count)
        mini_stream += data.ljust(count * _MINI, b"\0")
    entries = ["Root Entry", *storages, *streams]  # directory order: ids
    n_dir = _sectors(b"\0" * 128 * len(entries), _SECTOR)
    n_minifat = _sectors(b"\0" * 4 * len(mini_fat), _SECTOR)
    n_ministream = _sectors(mini_stream, _SECTOR)
    n_large = sum(_sectors(d, _SECTOR) for d in large.values())
    others = n_dir + n_minifat + n_ministream + n_large
    n_fat = 1
    while n_fat * 128 < n_fat + others:
        n_fat += 1
    fat = [_FAT] * n_fat
    dir_start = len(fat)
    fat += _chain(dir_start, n_dir)
    minifat_start = len(fat) if n_minifat else _END
    fat += _chain(len(fat), n_minifat)
    ministream_start = len(fat) if n_ministream else _END
    fat += _chain(len(fat), n_ministream)
    large_start = {}
    for name, data in large.items():
        large_start[name] = len(fat)
        fat += _chain(len(fat), _sectors(data, _SECTOR))
    fat += [_FREE] * (n_fat * 128 - len(fat))

    def key(name: str) -> tuple[int, str]:  # the format's sibling order
        return len(name), name.upper()

    def children(parent: str | None) -> list[str]:
        names = [n for n in entries[1:] if (n.split("/")[0] if "/" in n else None) == parent]
        return sorted(names, key=lambda n: key(n.split("/")[-1]))

    ids = {name: i for i, name in enumerate(entries)}
    child_of: dict[str, int] = {}
    right_of: dict[str, int] = {}
    for parent in [None, *storages]:
        kids = children(parent)
        if kids:
            child_of["Root Entry" if parent is None else parent] = ids[kids[0]]
        for a, b in zip(kids, kids[1:], strict=False):
            right_of[a] = ids[b]
    directory = b""
    for name in entries:
        short = name.split("/")[-1]
        kind = 5 if name == "Root Entry" else 1 if name in storages else 2
        if kind == 5:
            start, size = ministream_start, len(mini_stream)
        elif kind == 1:
            start, size = 0, 0
        elif name in small:
            start, size = mini_start[name], len(small[name])
        else:
            start, size = large_start[name], len(large[name])
        encoded = (short + "\0").encode("utf-16-le")
        directory += (encoded.ljust(64, b"\0") + struct.pack("<HBB", len(encoded), kind, 1)
                      + struct.pack("<III", _NONE, right_of.get(name, _NONE),
                                    child_of.get(name, _NONE))
                      + bytes(16 + 4 + 16) + struct.pack("<IQ", start, size))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16)
              + struct.pack("<HHHHH6xIIIIIIIII", 0x3E, 3, 0xFFFE, 9, 6, 0, n_fat, dir_start, 0,
                            _CUTOFF, minifat_start, n_minifat, _END, 0)
              + struct.pack("<109I", *(list(range(n_fat)) + [_FREE] * (109 - n_fat))))
    assert len(header) == _SECTOR and n_fat <= 109

    def padded(data: bytes) -> bytes:
        return data.ljust(_sectors(data, _SECTOR) * _SECTOR, b"\0")

    body = (struct.pack(f"<{len(fat)}I", *fat) + padded(directory)
            + padded(struct.pack(f"<{len(mini_fat)}I", *mini_fat)) + padded(mini_stream)
            + b"".join(padded(d) for d in large.values()))
    path.write_bytes(header + body)
