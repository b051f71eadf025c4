"""Which library reads each document format best: text quality on Korean files, speed and the
install size each adds, for the README's format table.

The files are written by tests/office_files.py from known outlines (six short Korean
documents with headings, tables, page headers; web pages with navigation, a sidebar and a
footer), so what each reader should return is known exactly:

  text F1      KorQuAD-style character F1 (bag of characters, whitespace and " | " left out)
               between everything read and the outline's text
  paragraphs   share of the outline's paragraphs found whole as one paragraph (or line) read
  leaked       share of the boilerplate strings (page header, navigation, footer) read as text
  ms/file      median time to read one file (the long PDF: 60 pages of the six documents)
  MB added     site-packages size of the library and of its dependencies that korqa's base
               install does not already have

    python3 bench/documents.py [--repeat 5]

Candidates that are not installed are listed as such; install them to measure them
(`pip install pypdf pdfplumber selectolax gethwp extract-hwp hwp-hwpx-parser`).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import office_files as office  # noqa: E402

from korqa.corpus.documents import read_document  # noqa: E402

BOILERPLATE = ["사내 배포용", *office.NAVIGATION, "최근 공지", "공유하기", "Copyright",
               "대표전화"]


def korqa_reader(path: Path) -> list[str]:
    return [section.text for section in read_document(path)]


def pdfium_plain(path: Path) -> list[str]:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(path))
    lines = []
    for page in document:
        lines += page.get_textpage().get_text_range().splitlines()
    return lines


def pypdf_text(path: Path) -> list[str]:
    import pypdf

    return [line for page in pypdf.PdfReader(path).pages
            for line in page.extract_text().splitlines()]


def pdfplumber_text(path: Path) -> list[str]:
    import pdfplumber

    with pdfplumber.open(path) as pdf:
        return [line for page in pdf.pages for line in (page.extract_text() or "").splitlines()]


def gethwp_text(path: Path) -> list[str]:
    import gethwp

    reader = gethwp.read_hwpx if path.suffix == ".hwpx" else gethwp.read_hwp
    return reader(str(path)).splitlines()


def extract_hwp_text(path: Path) -> list[str]:
    import extract_hwp

    return extract_hwp.extract_text_from_hwp(str(path))[0].splitlines()


def hwp_hwpx_parser_text(path: Path) -> list[str]:
    import hwp_hwpx_parser

    with hwp_hwpx_parser.read(str(path)) as reader:
        return reader.extract_text().splitlines()


def selectolax_text(path: Path) -> list[str]:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(path.read_bytes())
    for tag in ("script", "style", "nav", "header", "footer", "aside", "form", "noscript"):
        for node in tree.css(tag):
            node.decompose()
    root = tree.css_first("main") or tree.css_first("article") or tree.body
    blocks = root.css("h1, h2, h3, h4, p, li, tr") if root is not None else []
    return [" ".join(block.text(separator=" ").split()) for block in blocks]


CANDIDATES: dict[str, list[tuple[str, str, Callable[[Path], list[str]]]]] = {
    # format → (name, distribution whose size counts, reader)
    "pdf": [("pypdfium2, korqa's layout paragraphs", "pypdfium2", korqa_reader),
            ("pypdfium2, PDFium's plain text", "pypdfium2", pdfium_plain),
            ("pypdf", "pypdf", pypdf_text), ("pdfplumber", "pdfplumber", pdfplumber_text)],
    "docx": [("python-docx", "python-docx", korqa_reader)],
    "hwp": [("olefile + korqa's record reader", "olefile", korqa_reader),
            ("gethwp", "gethwp", gethwp_text), ("extract-hwp", "extract-hwp", extract_hwp_text),
            ("hwp-hwpx-parser", "hwp-hwpx-parser", hwp_hwpx_parser_text)],
    "hwpx": [("standard library (zipfile + ElementTree)", "", korqa_reader),
             ("gethwp", "gethwp", gethwp_text), ("extract-hwp", "extract-hwp", extract_hwp_text),
             ("hwp-hwpx-parser", "hwp-hwpx-parser", hwp_hwpx_parser_text)],
    "html": [("trafilatura", "trafilatura", korqa_reader),
             ("selectolax (tags dropped by hand)", "selectolax", selectolax_text)],
}


def _chars(text: str) -> Counter:
    return Counter(re.sub(r"\s|\|", "", text))


def char_f1(got: str, want: str) -> float:
    common = sum((_chars(got) & _chars(want)).values())
    if not common:
        return 0.0
    precision, recall = common / sum(_chars(got).values()), common / sum(_chars(want).values())
    return 2 * precision * recall / (precision + recall)


def paragraphs_of(outline: office.Outline) -> list[str]:
    return [str(value) for kind, value in outline if kind == "p"]


def normal(text: str) -> str:
    return " ".join(text.split())


def distribution_size(name: str, base: set[str]) -> float:
    """MB of `name` and of the dependencies it pulls in that `base` lacks."""
    if not name:
        return 0.0
    seen, todo, total = set(), [name], 0
    while todo:
        current = _canonical(todo.pop())
        if current in seen or current in base:
            continue
        seen.add(current)
        try:
            dist = metadata.distribution(current)
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in dist.files or [])
        todo += [_requirement(r) for r in dist.requires or [] if "extra ==" not in r]
    return total / 1e6


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str) -> str:
    return re.split(r"[ ;<>=!~\[(]", spec.strip(), maxsplit=1)[0]


def base_install() -> set[str]:
    """The distributions korqa's base install holds (its requirements, recursively)."""
    seen: set[str] = set()
    todo = [_requirement(r) for r in metadata.distribution("korqa").requires or []
            if "extra ==" not in r]
    while todo:
        current = _canonical(todo.pop())
        if current in seen:
            continue
        seen.add(current)
        try:
            todo += [_requirement(r) for r in metadata.distribution(current).requires or []
                     if "extra ==" not in r]
        except metadata.PackageNotFoundError:
            pass
    return seen


def measure(files: dict[str, list[tuple[Path, office.Outline]]], repeat: int) -> list[dict]:
    base = base_install()
    rows = []
    for kind, candidates in CANDIDATES.items():
        for name, dist, reader in candidates:
            row = {"format": kind, "library": name, "licence": _licence(dist)}
            try:
                got_all, want_all, whole, found, leaked, seen_boiler = [], [], 0, 0, 0, 0
                for path, outline in files[kind]:
                    got = [normal(text) for text in reader(path)]
                    got_all += got
                    want_all.append(office.plain_text(outline))
                    wanted = [normal(p) for p in paragraphs_of(outline)]
                    whole += len(wanted)
                    found += sum(p in got for p in wanted)
                    text = "\n".join(got)
                    leaked += sum(b in text for b in BOILERPLATE)
                    seen_boiler += len(BOILERPLATE)
                times = []
                long_file = files[kind + "-long"][0][0] if kind + "-long" in files else path
                for _ in range(repeat):
                    start = time.perf_counter()
                    reader(long_file)
                    times.append(time.perf_counter() - start)
            except ModuleNotFoundError as error:
                rows.append({**row, "error": f"not installed ({error.name})"})
                continue
            except Exception as error:  # a candidate that fails on a file is reported, not fatal
                rows.append({**row, "error": f"{type(error).__name__}: {error}"[:100]})
                continue
            rows.append({**row,
                         "text_f1": round(100 * char_f1("\n".join(got_all), "\n".join(want_all)),
                                          1),
                         "paragraphs": round(100 * found / whole, 1),
                         "leaked": round(100 * leaked / seen_boiler, 1),
                         "ms_per_file": round(1000 * statistics.median(times), 1),
                         "timed_on": long_file.name,
                         "mb_added": round(distribution_size(dist, base), 1)})
    return rows


def _licence(dist: str) -> str:
    if not dist:
        return "PSF (standard library)"
    try:
        meta = metadata.metadata(dist)
    except metadata.PackageNotFoundError:
        return "?"
    text = meta.get("License-Expression") or meta.get("License") or ""
    if not text or len(text) > 40:
        text = next((c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                     if c.startswith("License ::")), text[:40])
    return text


def pdf_memory(folder: Path) -> dict[str, float]:
    """Peak RSS (MB) of a fresh process reading a 30-page and a 300-page PDF."""
    out = {}
    for pages_repeat, label in ((72, "30 pages"), (720, "300 pages")):
        path = office.write(folder / f"m{pages_repeat}.pdf", office.LIBRARY, repeat=pages_repeat)
        code = ("import resource, sys\nfrom pathlib import Path\n"
                "from korqa.corpus.documents import read_document\n"
                f"read_document(Path({str(path)!r}))\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        out[label] = round(float(done.stdout.strip()), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed reads of each file")
    parser.add_argument("--json", action="store_true", help="rows as JSON")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the candidates' own complaints about the test files
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files: dict[str, list[tuple[Path, office.Outline]]] = {}
        for kind in ("pdf", "docx", "hwp", "hwpx", "html"):
            files[kind] = [(office.write(folder / f"{n}.{kind}", outline), outline)
                           for n, outline in enumerate(office.OUTLINES.values())]
        # Pages laid out in <div>s too: a reader cannot lean on <nav> and <footer> there.
        files["html"] += [(office.write(folder / f"div{n}.html", outline, semantic=False),
                           outline) for n, outline in enumerate(office.OUTLINES.values())]
        everything = [block for outline in office.OUTLINES.values() for block in outline]
        long_pdf = office.write(folder / "long.pdf", everything, repeat=12)
        files["pdf-long"] = [(long_pdf, everything)]
        rows = measure(files, args.repeat)
        memory = pdf_memory(folder)
    if args.json:
        print(json.dumps({"rows": rows, "pdf_peak_rss_mb": memory}, ensure_ascii=False,
                         indent=1))
        return
    print("| format | library | text F1 | paragraphs whole | boilerplate leaked | ms/file | "
          "MB added | licence |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['format']} | {row['library']} | {row['error']} | | | | | "
                  f"{row['licence']} |")
        else:
            print(f"| {row['format']} | {row['library']} | {row['text_f1']} | "
                  f"{row['paragraphs']} % | {row['leaked']} % | {row['ms_per_file']} "
                  f"({row['timed_on']}) | {row['mb_added']} | {row['licence']} |")
    print(f"\nPDF reading, peak RSS of a fresh process: {memory}")


if __name__ == "__main__":
    main()
