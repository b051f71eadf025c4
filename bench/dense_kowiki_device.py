"""Dense e5 vectors for every kowiki paragraph, encoded on a lent GPU machine within its limits.

A device call sends the working tree (about 39 MB: the shipped reader is most of it) and at
most 64 MiB in all, and brings back at most 8 files of 16 MiB; files under an ignored folder
stay on the machine between calls while it is warm (30 s). kowiki's paragraph texts are about
200 MB of xz, so they travel in pieces, one folder per call:

  here    python3 bench/dense_kowiki_device.py pack --index KOWIKI --encoder E5 --out .device/send
            .device/send/NN/: the encoder (a tar in pieces), faiss's wheel, and the paragraph
            texts in the index's row order (xz), each folder at most --mib (22) MiB
  device  for each NN, back to back:  run(carry=[".device/send/NN"], command=
            "python3 bench/dense_kowiki_device.py encode --send .device/send --work .device/work")
            encodes every text piece present and not yet encoded (bf16, length-sorted batches)
  device  last:  "python3 bench/dense_kowiki_device.py compress --work .device/work --out $OUT"
            faiss IVF-PQ (m 32, 4,096 cells) over all vectors, in 15 MiB parts + meta.json
  here    python3 bench/dense_kowiki_device.py assemble --index KOWIKI --parts FETCHED \
              --encoder E5 --weight 0.3
            the index's retriever becomes hybrid(articles, dense-ivfpq), swapped in whole

`--dry` on encode runs on the CPU (a check of the steps on a small index).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

PASSAGE_PREFIX = "passage: "  # korqa.retrieval.dense's, repeated: encode runs without korqa's deps
TEXTS = "texts-{:03d}.jsonl.xz"
ENCODER_PIECE = "encoder.tar.{:03d}"
META = "meta.json"


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


# ---- here: pack ---------------------------------------------------------------------------


def pack(args: argparse.Namespace) -> dict:
    """Cut the encoder and the paragraph texts into folders of at most `--mib` MiB each."""
    from korqa.corpus.store import ParagraphStore
    from korqa.retrieval.index import STORE_FILE, load_retriever

    limit = int(args.mib * 2**20)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, bytes]] = []
    encoder = io.BytesIO()
    with tarfile.open(fileobj=encoder, mode="w") as tar:
        tar.add(args.encoder, arcname="encoder")
    data = encoder.getvalue()
    step = limit - 2**20
    files += [(ENCODER_PIECE.format(i), data[i * step:(i + 1) * step])
              for i in range(-(-len(data) // step))]
    if args.wheel:
        files.append((Path(args.wheel).name, Path(args.wheel).read_bytes()))
    index = Path(args.index)
    ids: list[str] = []
    with ParagraphStore(index / STORE_FILE, readonly=True) as store:
        rows = load_retriever(index / "retriever", verify=False).paragraph_ids
        piece: list[str] = []
        pieces = 0
        # ~8 paragraphs of Korean per KiB of xz: cut the texts well under a folder's size.
        per_piece = args.per_piece or int(args.mib * 1024 * 7)
        for start in range(0, len(rows), 5_000):
            for paragraph in store.get(rows[start:start + 5_000]):
                ids.append(paragraph.id)
                piece.append(f"{paragraph.title}\n{paragraph.text}")
                if len(piece) == per_piece:
                    files.append(_texts(pieces, piece))
                    pieces, piece = pieces + 1, []
        if piece:
            files.append(_texts(pieces, piece))
    folders: list[list[tuple[str, bytes]]] = [[]]
    for name, blob in files:
        if len(blob) > limit:
            raise SystemExit(f"{name}: {len(blob):,} bytes, over --mib; lower the piece size")
        if sum(len(b) for _, b in folders[-1]) + len(blob) > limit:
            folders.append([])
        folders[-1].append((name, blob))
    for n, folder in enumerate(folders):
        (out / f"{n:02d}").mkdir(exist_ok=True)
        for name, blob in folder:
            (out / f"{n:02d}" / name).write_bytes(blob)
    meta = {"paragraphs": len(ids), "ids_sha256": ids_digest(ids), "folders": len(folders),
            "encoder_pieces": -(-len(data) // step)}
    (out / "00" / META).write_text(json.dumps(meta), encoding="utf-8")
    return meta


def _texts(number: int, texts: list[str]) -> tuple[str, bytes]:
    lines = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts)
    return TEXTS.format(number), lzma.compress(lines.encode("utf-8"), preset=9)


# ---- device: encode, compress ------------------------------------------------------------


def encode(args: argparse.Namespace) -> dict:
    import torch

    from korqa.retrieval.dense import DenseRetriever

    send, work = Path(args.send), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    encoder_dir = work / "encoder"
    if not encoder_dir.exists():
        pieces = sorted(send.glob("*/encoder.tar.*"))
        meta = json.loads(next(send.glob(f"*/{META}")).read_text(encoding="utf-8"))
        if len(pieces) < meta["encoder_pieces"]:
            return {"waiting_for_encoder": f"{len(pieces)}/{meta['encoder_pieces']} pieces"}
        with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in pieces))) as tar:
            tar.extractall(work, filter="data")
    device = "cpu" if args.dry else "cuda"
    retriever = DenseRetriever(encoder_dir, max_length=512, batch_size=args.batch_size,
                               device=device)
    done = {}
    for path in sorted(send.glob("*/texts-*.jsonl.xz")):
        target = work / path.name.replace(".jsonl.xz", ".npy")
        if target.exists():
            continue
        texts = [PASSAGE_PREFIX + json.loads(line)
                 for line in lzma.decompress(path.read_bytes()).decode("utf-8").splitlines()]
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=not args.dry):
            vectors = retriever.encode(texts, retriever.max_length)
        np.save(target, vectors.astype(np.float16), allow_pickle=False)
        done[path.name] = {"paragraphs": len(texts),
                           "per_s": round(len(texts) / (time.perf_counter() - start))}
    return done


def compress(args: argparse.Namespace) -> dict:
    work, out = Path(args.work), Path(args.out)
    wheel = next(Path(args.send).glob("*/faiss_cpu-*.whl"), None)
    if wheel is not None:  # the device has no faiss: install the carried wheel beside
        target = work / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--target", str(target), str(wheel)], check=True)
        sys.path.insert(0, str(target))
    from korqa.retrieval.dense_pq import CompressedDenseRetriever

    meta = json.loads(next(Path(args.send).glob(f"*/{META}")).read_text(encoding="utf-8"))
    pieces = sorted(work.glob("texts-*.npy"))
    vectors = np.concatenate([np.load(p).astype(np.float32) for p in pieces])
    if len(vectors) != meta["paragraphs"]:
        raise SystemExit(f"{len(vectors):,} vectors for {meta['paragraphs']:,} paragraphs: "
                         "a text piece was not encoded (run encode again)")
    start = time.perf_counter()
    retriever = CompressedDenseRetriever(work / "encoder", nlist=args.nlist, m=args.m,
                                         nprobe=args.nprobe)
    retriever.compress(vectors)
    out.mkdir(parents=True, exist_ok=True)
    retriever.paragraph_ids = ["-"] * len(vectors)  # the ids stay here; assemble restores them
    files = retriever._save_files(out)
    meta.update({"params": retriever.params(), "files": files,
                 "compress_s": round(time.perf_counter() - start, 1)})
    (out / META).write_text(json.dumps(meta), encoding="utf-8")
    return meta


# ---- here: assemble -----------------------------------------------------------------------


def assemble(args: argparse.Namespace) -> dict:
    """Make the index's retriever hybrid(articles, dense-ivfpq) over the fetched parts."""
    from korqa.corpus.store import ParagraphStore
    from korqa.retrieval.dense_pq import CompressedDenseRetriever
    from korqa.retrieval.hybrid import HybridRetriever
    from korqa.retrieval.index import (
        OLD_DIR,
        RETRIEVER_DIR,
        STAGING_DIR,
        STORE_FILE,
        finish_swap,
        load_retriever,
    )
    from korqa.retrieval.manifest import read_manifest

    index, parts = Path(args.index), Path(args.parts)
    meta = json.loads((parts / META).read_text(encoding="utf-8"))
    sparse = load_retriever(index / "retriever", verify=False)
    if ids_digest(sparse.paragraph_ids) != meta["ids_sha256"]:
        raise SystemExit(f"{parts}: the vectors were packed from other paragraphs than "
                         f"{index} holds now: pack again")
    params = {**meta["params"], "encoder": args.encoder}
    dense = CompressedDenseRetriever._load_files(parts, {"params": params}, verify=False)
    dense.paragraph_ids = list(sparse.paragraph_ids)
    hybrid = HybridRetriever([sparse, dense], fusion="weighted", weights=[1.0, args.weight],
                             depth=args.depth)
    with ParagraphStore(index / STORE_FILE, readonly=True) as store:
        generation = store.generation
    finish_swap(index)  # first any swap a crash left unfinished
    hybrid.save(index / STAGING_DIR, store_generation=generation)
    # Both index the same store generation, so swap by hand: two renames, which
    # `finish_swap` completes if a crash falls between them.
    (index / RETRIEVER_DIR).rename(index / OLD_DIR)
    (index / STAGING_DIR).rename(index / RETRIEVER_DIR)
    shutil.rmtree(index / OLD_DIR)
    return {"retriever": read_manifest(index / "retriever", verify=False)["params"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--index", required=True)
    p.add_argument("--encoder", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--wheel", help="faiss-cpu's wheel (the device has no faiss)")
    p.add_argument("--mib", type=float, default=22.0)
    p.add_argument("--per-piece", type=int, help="paragraphs a text piece (default: by --mib)")
    p = sub.add_parser("encode")
    p.add_argument("--send", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--dry", action="store_true", help="on the CPU")
    p = sub.add_parser("compress")
    p.add_argument("--send", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--nlist", type=int, default=4096)
    p.add_argument("--m", type=int, default=32)
    p.add_argument("--nprobe", type=int, default=64)
    p = sub.add_parser("assemble")
    p.add_argument("--index", required=True)
    p.add_argument("--parts", required=True)
    p.add_argument("--encoder", required=True, help="the same encoder, on this machine")
    p.add_argument("--weight", type=float, default=0.3)
    p.add_argument("--depth", type=int, default=100)
    args = parser.parse_args()
    commands = {"pack": pack, "encode": encode, "compress": compress, "assemble": assemble}
    print(json.dumps(commands[args.command](args), ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
