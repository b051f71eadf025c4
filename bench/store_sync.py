"""What an index that follows its corpus costs: `ParagraphStore.sync_source` against the plain
`add` it replaces in `korqa index`, and decoding text files with detection against a plain
UTF-8 decode, in one run.

Store: the paragraphs of one kowiki shard (read into memory first, so reading is not timed)
are written into a fresh store, then written again unchanged, then again with 1% of the
documents gone (`sync_source` only: `add` cannot drop them). Each step is timed for both
ways; the retriever is not built (it costs the same either way, and far more).

Decoding: the same paragraphs as one UTF-8 text and as CP949 bytes, decoded by
`korqa.corpus.text.decode_text` against `bytes.decode` of the known encoding.

    python bench/store_sync.py [--corpus kowiki_00.jsonl.xz] [--limit 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import islice
from pathlib import Path

from korqa.corpus import ParagraphStore, load_corpus
from korqa.corpus.text import decode_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "kowiki" / "kowiki_00.jsonl.xz"


def timed(run) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--limit", type=int, default=200_000, help="paragraphs (default 200000)")
    args = parser.parse_args()

    paragraphs = list(islice(load_corpus([args.corpus]), args.limit))
    docs = list(dict.fromkeys(p.doc_id for p in paragraphs))
    gone = set(docs[::100])
    fewer = [p for p in paragraphs if p.doc_id not in gone]
    print(f"{len(paragraphs)} paragraphs of {len(docs)} documents from {args.corpus}")
    print(f"{'step':<34}{'add s':>9}{'sync s':>9}{'sync/add':>10}")
    with tempfile.TemporaryDirectory() as scratch:
        with ParagraphStore(Path(scratch) / "add.sqlite") as plain, \
                ParagraphStore(Path(scratch) / "sync.sqlite") as synced:
            steps = [("fresh store", paragraphs, paragraphs),
                     ("again, unchanged", paragraphs, paragraphs),
                     (f"{len(gone)} documents gone (sync drops)", fewer, fewer)]
            for name, for_add, for_sync in steps:
                add_s, _ = timed(lambda items=for_add: plain.add(items))
                sync_s, result = timed(lambda items=for_sync: synced.sync_source(items, "src"))
                print(f"{name:<34}{add_s:>9.2f}{sync_s:>9.2f}{sync_s / add_s:>10.2f}")
            print(f"stores hold: add {len(plain)}, sync {len(synced)} paragraphs "
                  f"(last sync removed {result.removed} in {result.removed_documents} documents)")

    text = "\n\n".join(p.text for p in paragraphs)
    print(f"\ndecoding {len(text):,} characters{'':<8}{'plain s':>9}{'detect s':>9}{'ratio':>8}")
    for encoding in ("utf-8", "cp949"):
        data = text.encode(encoding, errors="ignore")
        plain_s, _ = timed(lambda data=data, encoding=encoding: data.decode(encoding))
        detect_s, (_, used) = timed(lambda data=data: decode_text(data))
        assert used == encoding
        print(f"  {encoding:<33}{plain_s:>9.3f}{detect_s:>9.3f}{detect_s / plain_s:>8.2f}")


if __name__ == "__main__":
    main()
