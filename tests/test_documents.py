"""Office documents and web pages as corpus files: PDF, DOCX, HWP 5, HWPX and HTML files
written by tests/office_files.py read into titled paragraphs; bad files are named and skipped
(or stop the index with --strict); a folder of every kind answers from each file."""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import office_files as office
import pytest

from korqa.cli import main
from korqa.corpus import iter_documents
from korqa.corpus.documents import UnreadableDocument, read_document
from korqa.corpus.store import ParagraphStore
from korqa.corpus.text import TextReading
from korqa.retrieval.index import STORE_FILE, build_index

FORMATS = ["library.pdf", "travel.docx", "festival.hwpx", "scholarship.hwp", "lighthouse.html"]


def paragraphs(path: Path) -> list[tuple[str, str]]:
    """(title, text) of every paragraph of one corpus file."""
    (document,) = iter_documents([path])
    return [(p.title, p.text) for p in document.paragraphs]


def expected(outline: office.Outline) -> tuple[str, list[tuple[str, str]]]:
    """The document title and (title, text) paragraphs an outline should read as: headings
    title what follows them, tables are rows of " | "-joined cells."""
    title = str(outline[0][1])
    sections: list[tuple[int, str]] = []
    out = []
    for kind, value in outline[1:]:
        if kind.startswith("h"):
            level = int(kind[1])
            while sections and sections[-1][0] >= level:
                sections.pop()
            sections.append((level, str(value)))
            continue
        text = "\n".join(" | ".join(row) for row in value) if kind == "table" else str(value)
        out.append((" › ".join([title, *(t for _, t in sections)]), text))
    return title, out


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_reads_as_titled_paragraphs_with_tables_as_rows(name, tmp_path):
    outline = office.OUTLINES[name]
    # A PDF's running header is dropped only once it repeats: its own test below.
    options = {"header": None} if name.endswith(".pdf") else {}
    path = office.write(tmp_path / name, outline, **options)
    (document,) = iter_documents([path])
    title, want = expected(outline)
    assert document.title == title
    assert [(p.title, p.text) for p in document.paragraphs] == want
    # Page headers (DOCX, HWP, HWPX), navigation, sidebars and footers (HTML) are left out.
    everything = " ".join(p.text for p in document.paragraphs)
    assert "사내 배포용" not in everything and "공지" not in everything
    assert "Copyright" not in everything and "로그인" not in everything


def test_pdf_paragraphs_come_from_layout_and_running_lines_go(tmp_path):
    # 300 pages: a header on each, "- N -" at the foot; paragraphs wrap over several lines.
    path = office.write(tmp_path / "long.pdf", office.LIBRARY, repeat=720)
    got = paragraphs(path)
    import pypdfium2

    assert len(pypdfium2.PdfDocument(str(path))) >= 300
    texts = [text for _, text in got]
    assert not any("사내 배포용" in text for text in texts)
    assert not any(text.strip("- ").isdigit() for text in texts)
    _, want = expected(office.LIBRARY)
    # Every paragraph whole, however the pages cut them, 720 times over.
    assert texts.count(want[0][1]) == 720
    assert all(texts.count(text) == 720 for _, text in want)


def test_hwp_reads_uncompressed_files_and_names_encrypted_ones(tmp_path):
    plain = office.write(tmp_path / "plain.hwp", office.SCHOLARSHIP, compressed=False)
    assert paragraphs(plain) == expected(office.SCHOLARSHIP)[1]
    office.write_hwp(tmp_path / "locked.hwp", office.SCHOLARSHIP, password=True)
    with pytest.raises(UnreadableDocument, match="encrypted"):
        read_document(tmp_path / "locked.hwp")


def test_an_euc_kr_web_page_is_read_by_its_charset(tmp_path):
    office.write_html(tmp_path / "page.html", office.LIGHTHOUSE, encoding="euc-kr")
    assert paragraphs(tmp_path / "page.html") == expected(office.LIGHTHOUSE)[1]


def bad_folder(folder: Path) -> Path:
    folder.mkdir()
    office.write(folder / "kimchi.md", office.KIMCHI)
    office.write(folder / "travel.docx", office.TRAVEL)
    office.write_pdf(folder / "locked.pdf", office.LIBRARY, password="secret")
    office.write_pdf(folder / "scan.pdf", office.LIBRARY, scanned=True)
    (folder / "torn.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
    with zipfile.ZipFile(folder / "photos.docx", "w") as archive:
        archive.writestr("IMG_0001.jpg", b"\xff\xd8\xff not really a photo")
    (folder / "notes.xlsx").write_bytes(b"PK\x03\x04")
    return folder


def test_bad_files_are_skipped_and_named_with_why_in_one_summary_line(tmp_path, caplog):
    folder = bad_folder(tmp_path / "docs")
    with caplog.at_level(logging.WARNING, logger="korqa.corpus"):
        documents = list(iter_documents([folder]))
    assert [Path(d.id).name for d in documents] == ["kimchi.md", "travel.docx"]
    summary = caplog.records[-1].getMessage()
    assert summary.startswith(f"{folder}: skipped 5 files — ")
    assert "\n" not in summary
    for reason in ("locked.pdf: encrypted", "scan.pdf: no text layer", "does not do OCR",
                   "torn.pdf: damaged or not a PDF file", "photos.docx: not a Word (DOCX) file",
                   "1 file of kinds korqa does not read (1 .xlsx)"):
        assert reason in summary
    # Each skipped file also had its own one-line warning as it was read.
    assert sum("skipped, not indexed" in r.getMessage() for r in caplog.records) == 4


def test_index_skips_bad_documents_and_strict_stops_at_the_first(tmp_path, capsys):
    folder = bad_folder(tmp_path / "docs")
    argv = ["index", "--corpus", str(folder), "--out", str(tmp_path / "idx"), "--no-morphemes",
            "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    with ParagraphStore(tmp_path / "idx" / STORE_FILE, readonly=True) as store:
        names = sorted(Path(d.doc_id).name for d in store.documents())
    assert names == ["kimchi.md", "travel.docx"]
    assert main([*argv[:-3], str(tmp_path / "strict"), *argv[-2:], "--strict"]) == 2
    error = capsys.readouterr().err
    assert "locked.pdf: cannot be read: encrypted" in error and "Traceback" not in error
    assert not (tmp_path / "strict").exists()


def test_without_the_documents_extra_such_files_are_skipped_with_one_warning(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    office.write(folder / "a.md", office.KIMCHI)
    for name in ("one.pdf", "two.pdf"):
        office.write_pdf(folder / name, office.LIBRARY)
    code = ("import sys, logging\nsys.modules['pypdfium2'] = None\n"
            "logging.basicConfig(format='%(message)s')\n"
            "from korqa.corpus import iter_documents\n"
            f"print([d.id.rsplit('/', 1)[-1] for d in iter_documents([{str(folder)!r}])])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['a.md']"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, lines  # one warning naming the extra, then the summary
    assert "needs the documents extra" in lines[0]
    assert "pip install -c constraints.txt -e '.[documents]'" in lines[0]
    assert "one.pdf: its extra is not installed; two.pdf: its extra is not installed" in lines[1]


def test_reindexing_replaces_an_edited_pdfs_paragraphs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    office.write(folder / "kimchi.md", office.KIMCHI)
    office.write_pdf(folder / "guide.pdf", office.LIBRARY, header=None)
    build_index(tmp_path / "idx", [folder], "bm25", progress=False)
    office.write_pdf(folder / "guide.pdf", office.LIGHTHOUSE, header=None)
    build_index(tmp_path / "idx", [folder], "bm25", progress=False)
    with ParagraphStore(tmp_path / "idx" / STORE_FILE, readonly=True) as store:
        texts = {Path(p.doc_id).name: [] for p in store}
        for paragraph in store:
            texts[Path(paragraph.doc_id).name].append(paragraph.text)
    assert texts["guide.pdf"] == [text for _, text in expected(office.LIGHTHOUSE)[1]]
    assert len(texts["kimchi.md"]) == 2


def test_strict_is_a_reading_option():
    assert TextReading(strict=True).strict and not TextReading().strict


@pytest.mark.slow
def test_a_folder_of_every_format_answers_each_question_from_its_own_file(tmp_path,
                                                                           monkeypatch):
    from korqa.paths import default_reader_dir

    if not (default_reader_dir() / "config.json").is_file():
        pytest.skip(f"no shipped reader at {default_reader_dir()}")
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path / "cache"))
    folder = office.write_folder(tmp_path / "office")
    code = main(["index", "--corpus", str(folder), "--out", str(tmp_path / "idx"),
                 "--no-progress"])
    assert code == 0
    from korqa.pipeline.sources import open_pipeline

    pipeline = open_pipeline(index=tmp_path / "idx")
    for name, (question, answer) in office.QUESTIONS.items():
        got = pipeline.ask(question)
        assert got.paragraph_id.startswith(f"file:{folder / name}:"), (name, got)
        assert answer in got.answer, (name, got.answer)
