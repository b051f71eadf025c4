"""The segmented BM25 index: add, delete and merge in place with scores equal to a one-shot
build, saved segments memory-mapped, and every commit crash-atomic (a SIGKILLed writer leaves
the old state or the new one, never a mix)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import bm25s
import numpy as np
import pytest
from faults import paused_at

from korqa.cli import main as korqa_main
from korqa.corpus.paragraph import Paragraph, document_id
from korqa.corpus.store import ParagraphStore
from korqa.retrieval import bm25 as bm25_module
from korqa.retrieval.bm25 import SEGMENTS_FILE, BM25Retriever
from korqa.retrieval.index import (
    RETRIEVER_DIR,
    SEGMENTS_DIR,
    STAGING_DIR,
    STORE_FILE,
    Index,
    build_index,
    change_index,
    finish_swap,
    merge_index,
)
from korqa.retrieval.registry import load_retriever
from korqa.retrieval.segments import MergePolicy, Segment
from korqa.retrieval.terms import TermConfig

SYLLABLES = "가나다라마바사아자차카타파하강산물불돌별달해숲길빛꽃"


def corpus(n: int = 40, seed: int = 0) -> list[Paragraph]:
    """Paragraphs of random 1–3-syllable words: term and length statistics differ by row."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
                 for _ in range(rng.randint(3, 25))]
        out.append(Paragraph(f"kowiki:d{i // 3}:{i % 3}", f"문서{i // 3}", " ".join(words),
                             f"d{i // 3}"))
    return out


QUERIES = ["가나 산", "강물 불빛", "별 달 해", "숲길 꽃", "다라마", "하 하 하 강", "없음뷁"]


def bm25() -> BM25Retriever:
    return BM25Retriever(TermConfig(ngrams=(1, 2)), k1=0.9, b=0.6, with_title=True)


def one_shot(paragraphs: list[Paragraph]) -> BM25Retriever:
    retriever = bm25()
    retriever.index(paragraphs, progress=False)
    return retriever


def assert_same_results(ours: BM25Retriever, reference: BM25Retriever, k: int = 40) -> None:
    for query in QUERIES:
        got, want = dict(ours.retrieve(query, k)), dict(reference.retrieve(query, k))
        assert got.keys() == want.keys(), query
        for pid, score in want.items():
            # Sums in float32 (as bm25s's), whose order may differ by segmentation.
            assert got[pid] == pytest.approx(score, rel=1e-6), (query, pid)


# ---- scores ------------------------------------------------------------------------------


def test_one_segment_scores_equal_bm25s_lucene_scores() -> None:
    paragraphs = corpus()
    ours = one_shot(paragraphs)
    reference = bm25s.BM25(k1=0.9, b=0.6, method="lucene")
    reference.index([ours.analyzer(f"{p.title}\n{p.text}") for p in paragraphs],
                    show_progress=False)
    for query in QUERIES[:-1]:
        terms = [t for t in ours.analyzer(query) if t in reference.vocab_dict]
        theirs = reference.get_scores([t for t in terms])
        hits = ours.retrieve(query, len(paragraphs))
        rows = {p.id: i for i, p in enumerate(paragraphs)}
        assert len(hits) == int((theirs > 0).sum())
        for pid, score in hits:
            assert score == pytest.approx(float(theirs[rows[pid]]), rel=1e-5)


def test_scores_over_several_segments_with_deletes_equal_a_one_shot_build() -> None:
    paragraphs = corpus(60)
    segmented = bm25()
    segmented.index(paragraphs[:30], progress=False)
    assert segmented.add(paragraphs[30:45]) == 15
    assert segmented.add(paragraphs[45:]) == 15
    deleted = [paragraphs[i].id for i in (0, 7, 31, 59)]
    assert segmented.delete([*deleted, "no-such-id"]) == 4
    edited = Paragraph(paragraphs[12].id, "고친", "강물 위에 별빛 달빛", paragraphs[12].doc_id)
    segmented.delete([edited.id])
    segmented.add([edited])
    assert len(segmented.segments) == 4 and len(segmented) == 56
    live = [edited if p.id == edited.id else p for p in paragraphs if p.id not in deleted]
    # IDF and the average length count live rows only: exactly a build over what is left.
    assert_same_results(segmented, one_shot(live))
    assert sorted(segmented.paragraph_ids) == sorted(p.id for p in live)
    for query in QUERIES:
        assert not {pid for pid, _ in segmented.retrieve(query, 60)} & set(deleted)


@pytest.mark.parametrize("long_postings", [0, 3], ids=["all-sliced", "mixed"])
def test_long_posting_lists_scored_as_slices_give_the_same_scores(
        monkeypatch: pytest.MonkeyPatch, long_postings: int) -> None:
    paragraphs = corpus(60)
    reference = one_shot([p for p in paragraphs if p.id != paragraphs[5].id])
    monkeypatch.setattr(bm25_module, "LONG_POSTINGS", long_postings)
    segmented = bm25()
    segmented.index(paragraphs[:40], progress=False)
    segmented.add(paragraphs[40:])
    segmented.delete([paragraphs[5].id])
    assert_same_results(segmented, reference)


def test_merging_keeps_every_result_and_drops_deleted_rows() -> None:
    paragraphs = corpus(50)
    retriever = bm25()
    retriever.index(paragraphs[:20], progress=False)
    for start in range(20, 50, 10):
        retriever.add(paragraphs[start:start + 10])
    retriever.delete([p.id for p in paragraphs[::4]])
    before = {q: retriever.retrieve(q, 50) for q in QUERIES}
    assert retriever.merge(max_segments=1) == 3
    assert len(retriever.segments) == 1 and not retriever.deleted
    assert retriever.segments[0].size == len(retriever) == 50 - len(paragraphs[::4])
    for query in QUERIES:
        after = retriever.retrieve(query, 50)
        assert [pid for pid, _ in after] == [pid for pid, _ in before[query]]
        assert [s for _, s in after] == pytest.approx([s for _, s in before[query]], rel=1e-6)


def test_the_tiered_policy_merges_a_full_tier_and_rewrites_mostly_deleted_segments() -> None:
    policy = MergePolicy(per_tier=3, floor_rows=10)
    # Three segments under the floor form tier 0; 30-99 rows is tier 1.
    assert policy.plan([(5, 5), (40, 40), (2, 2), (9, 9)]) == [[0, 2, 3]]
    assert policy.plan([(5, 5), (40, 40), (2, 2)]) == []
    assert policy.plan([(100, 40), (40, 40)]) == [[0]]  # 60 % deleted: expunged

    retriever = bm25()
    retriever.merge_policy = policy
    paragraphs = corpus(12)
    retriever.index(paragraphs[:1], progress=False)
    for p in paragraphs[1:4]:
        retriever.add([p])
        retriever.merge()
    # Four one-row adds: the third made a full tier of three, merged into one.
    assert [s.size for s in retriever.segments] == [3, 1]
    assert_same_results(retriever, one_shot(paragraphs[:4]))


# ---- saved segments ----------------------------------------------------------------------


def mapped(array: np.ndarray) -> bool:
    """Whether the array's memory is a file mapping (not a copy read into memory)."""
    while array is not None:
        if isinstance(array, np.memmap) or type(array).__name__ == "mmap":
            return True
        array = array.base
    return False


def test_saved_segments_are_plain_npy_mapped_from_disk_and_commits_write_only_news(
        tmp_path: Path) -> None:
    paragraphs = corpus(30)
    retriever = bm25()
    retriever.index(paragraphs[:20], progress=False)
    retriever.save(tmp_path / "r1")
    first = (tmp_path / "r1" / SEGMENTS_DIR / "seg-000001" / "rows.npy").stat().st_mtime_ns
    loaded = load_retriever(tmp_path / "r1")
    assert all(mapped(getattr(loaded.segments[0], f)) for f in ("rows", "tf", "terms"))
    loaded.add(paragraphs[20:])
    loaded.delete([paragraphs[3].id])
    loaded.segment_home = tmp_path / "r1" / SEGMENTS_DIR  # commit beside, sharing segments
    loaded.save(tmp_path / "r2")
    layout = json.loads((tmp_path / "r2" / SEGMENTS_FILE).read_text())
    assert [(s["name"], s["rows"], s["deleted"]) for s in layout["segments"]] == \
        [("seg-000001", 20, 1), ("seg-000002", 10, 0)]
    assert (tmp_path / "r1" / SEGMENTS_DIR / "seg-000001" / "rows.npy").stat().st_mtime_ns \
        == first  # the old segment was not rewritten
    again = load_retriever(tmp_path / "r2")
    assert_same_results(again, one_shot([p for p in paragraphs if p.id != paragraphs[3].id]))
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pkl", ".pickle")]


def test_a_corrupted_segment_file_is_named(tmp_path: Path) -> None:
    retriever = one_shot(corpus())
    retriever.save(tmp_path / "r")
    victim = tmp_path / "r" / SEGMENTS_DIR / "seg-000001" / "tf.npy"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"tf.npy: sha256 does not match"):
        load_retriever(tmp_path / "r")


def test_an_index_saved_whole_by_bm25s_asks_for_a_rebuild(tmp_path: Path) -> None:
    retriever = one_shot(corpus())
    retriever.save(tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    manifest["files"] = {"bm25s/params.index.json": "0" * 64}
    (tmp_path / "r" / "bm25s").mkdir()
    (tmp_path / "r" / "bm25s" / "params.index.json").write_text("{}")
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="before segments: rebuild it with `korqa index"):
        load_retriever(tmp_path / "r", verify=False)


# ---- an index directory ------------------------------------------------------------------


def write_jsonl(path: Path, paragraphs: list[Paragraph]) -> Path:
    docs: dict[str, list[Paragraph]] = {}
    for p in paragraphs:
        docs.setdefault(p.doc_id, []).append(p)
    lines = [json.dumps({"id": d, "title": ps[0].title, "paragraphs": [p.text for p in ps]},
                        ensure_ascii=False) for d, ps in docs.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def segment_names(index_dir: Path) -> list[str]:
    layout = json.loads((index_dir / RETRIEVER_DIR / SEGMENTS_FILE).read_text())
    return [s["name"] for s in layout["segments"]]


def reference_for(index_dir: Path) -> BM25Retriever:
    """A one-shot build, with the index's own settings, over what its store holds now."""
    with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
        reference = load_retriever(index_dir / RETRIEVER_DIR, verify=False)
        fresh = BM25Retriever(**{**reference.params(),
                                 "terms": TermConfig.from_dict(reference.params()["terms"])})
        fresh.index(store, progress=False)
    return fresh


def test_writes_to_an_index_add_segments_mark_deletes_and_merge(tmp_path: Path,
                                                                capsys) -> None:
    index_dir = tmp_path / "index"
    source = write_jsonl(tmp_path / "a.jsonl", corpus(30))
    build_index(index_dir, [source], "bm25", progress=False)
    assert segment_names(index_dir) == ["seg-000001"]
    base = (index_dir / SEGMENTS_DIR / "seg-000001" / "tf.npy").stat().st_mtime_ns
    d0, d2 = document_id(source, "d0"), document_id(source, "d2")

    # A server's write: replace one document, add another.
    def write(store: ParagraphStore):
        return store.replace_documents([
            Paragraph(f"kowiki:{d2}:0", "새 문서", "강물 별빛 숲길", d2),
            Paragraph("new:0", "추가", "달빛 꽃길 하늘", "new")])

    change_index(index_dir, write)
    assert segment_names(index_dir) == ["seg-000001", "seg-000002"]
    assert (index_dir / SEGMENTS_DIR / "seg-000001" / "tf.npy").stat().st_mtime_ns == base
    with Index(index_dir) as index:
        assert index.search("달빛 꽃길 하늘", 1)[0][0].id == "new:0"
        assert len(index.retriever) == len(index.store) == 29
        assert_same_results(index.retriever, reference_for(index_dir))

    assert korqa_main(["remove", "--index", str(index_dir), "d0"]) == 0
    capsys.readouterr()
    assert segment_names(index_dir) == ["seg-000001", "seg-000002"]  # marked, not rebuilt
    with Index(index_dir) as index:
        found = {pid for q in QUERIES for pid, _ in index.retriever.retrieve(q, 40)}
        assert f"kowiki:{d0}:0" not in found
        before = {q: index.retriever.retrieve(q, 40) for q in QUERIES}

    assert korqa_main(["merge", "--index", str(index_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == 1
    assert len(segment_names(index_dir)) == 1
    # The merged-away segments are gone from disk; only the committed one is left.
    assert [p.name for p in (index_dir / SEGMENTS_DIR).iterdir()] == segment_names(index_dir)
    with Index(index_dir) as index:
        for query in QUERIES:
            after = index.retriever.retrieve(query, 40)
            assert [p for p, _ in after] == [p for p, _ in before[query]]
        assert_same_results(index.retriever, reference_for(index_dir))


def test_reindexing_a_changed_file_adds_a_segment_instead_of_rebuilding(tmp_path: Path) -> None:
    paragraphs = corpus(30)
    source = write_jsonl(tmp_path / "a.jsonl", paragraphs)
    index_dir = tmp_path / "index"
    build_index(index_dir, [source], "bm25", progress=False)
    edited = Paragraph("kowiki:d9:0", "문서9", "새로 쓴 별빛 문단", "d9")
    write_jsonl(source, [*paragraphs[:-3], edited])
    build_index(index_dir, [source], "bm25", progress=False)
    assert len(segment_names(index_dir)) == 2
    with Index(index_dir) as index:
        assert index.search("새로 쓴 별빛 문단", 1)[0][0].text == "새로 쓴 별빛 문단"
        assert_same_results(index.retriever, reference_for(index_dir))
    # Other settings than the saved ones: a fresh build, one segment again.
    build_index(index_dir, [source], BM25Retriever(k1=1.5), progress=False)
    assert len(segment_names(index_dir)) == 1


# ---- crashes -----------------------------------------------------------------------------

WRITER = """
import sys
from korqa.corpus.paragraph import Paragraph
from korqa.retrieval.index import change_index, merge_index
index, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if what == "merge":
    merge_index(index, 1)
else:
    for i in range(n):
        change_index(index, lambda store, i=i: store.replace_documents(
            [Paragraph(f"w{i}:0", "쓰기", f"별빛 강물 {i}번째 쓰기 문단", f"w{i}")]))
        print(i, flush=True)
"""


def start_writer(index_dir: Path, what: str, n: int = 1, pause: str | None = None,
                 flag: Path | None = None):
    """A writer process; with `pause`, it stops at that commit step, creating `flag`."""
    code = paused_at(pause, flag or Path("paused")) + WRITER
    return subprocess.Popen([sys.executable, "-c", code, str(index_dir), what, str(n)],
                            stdout=subprocess.PIPE, text=True)


def kill_when_paused(writer: subprocess.Popen, flag: Path, point: str) -> None:
    """SIGKILL `writer` once it has paused at `point` (it touches `flag` there)."""
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert time.monotonic() < deadline and writer.poll() is None, "never reached " + point
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()


def consistent_state(index_dir: Path) -> set[str]:
    """Open the index as the next writer would and check store and retriever agree exactly:
    same paragraphs, the scores of a one-shot build. Returns the stored `w` documents."""
    finish_swap(index_dir)
    with Index(index_dir) as index:
        stored = set(index.store.ids())
        assert set(index.retriever.paragraph_ids) == stored
        assert_same_results(index.retriever, reference_for(index_dir))
    referenced = set(segment_names(index_dir))
    assert {p.name for p in (index_dir / SEGMENTS_DIR).iterdir()} == referenced
    return {pid.split(":")[0] for pid in stored if pid.startswith("w")}


@pytest.mark.parametrize(("point", "after"), [
    ("saved", set()),  # new segment and retriever.new written, store not committed: old state
    ("committed", {"w0"}),  # committed, not swapped: the next writer swaps retriever.new in
    ("swapping", {"w0"}),  # retriever/ moved aside, retriever.new not yet renamed
])
def test_a_writer_killed_mid_commit_leaves_the_old_or_the_new_state(
        tmp_path: Path, point: str, after: set[str]) -> None:
    index_dir = tmp_path / "index"
    build_index(index_dir, [write_jsonl(tmp_path / "a.jsonl", corpus(30))], "bm25",
                progress=False)
    flag = tmp_path / "paused"
    writer = start_writer(index_dir, "add", pause=point, flag=flag)
    kill_when_paused(writer, flag, point)
    assert consistent_state(index_dir) == after
    assert not (index_dir / STAGING_DIR).exists()


@pytest.mark.parametrize("point", ["saved", "committed", "swapping"])
def test_a_merge_killed_mid_commit_keeps_the_same_results(tmp_path: Path, point: str) -> None:
    index_dir = tmp_path / "index"
    paragraphs = corpus(30)
    build_index(index_dir, [write_jsonl(tmp_path / "a.jsonl", paragraphs[:20])], "bm25",
                progress=False)
    build_index(index_dir, [write_jsonl(tmp_path / "b.jsonl", paragraphs[20:])], "bm25",
                progress=False)
    assert len(segment_names(index_dir)) == 2
    flag = tmp_path / "paused"
    writer = start_writer(index_dir, "merge", pause=point, flag=flag)
    kill_when_paused(writer, flag, point)
    consistent_state(index_dir)
    assert len(segment_names(index_dir)) in (1, 2)
    merge_index(index_dir, 1)  # and the next merge completes
    assert len(segment_names(index_dir)) == 1


def test_writers_killed_at_random_moments_never_leave_a_mix(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    build_index(index_dir, [write_jsonl(tmp_path / "a.jsonl", corpus(20))], "bm25",
                progress=False)
    rng = random.Random(7)
    for _ in range(4):
        writer = start_writer(index_dir, "add", n=50)
        assert writer.stdout is not None
        writer.stdout.readline()  # one write acknowledged: the next ones are under way
        time.sleep(rng.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert "w0" in consistent_state(index_dir)  # an acknowledged write survives


def test_a_segment_opened_twice_is_mapped_once(tmp_path: Path) -> None:
    retriever = one_shot(corpus())
    retriever.save(tmp_path / "r")
    home = tmp_path / "r" / SEGMENTS_DIR / "seg-000001"
    assert Segment.open(home) is Segment.open(home)


def test_the_store_reports_the_paragraphs_a_change_touched_and_counts_as_before(
        tmp_path: Path) -> None:
    paragraphs = corpus(9)  # documents d0, d1, d2 of three paragraphs each
    with ParagraphStore(tmp_path / "p.sqlite") as store:
        store.add(paragraphs)
        with store.transaction(), store.changes() as touched:
            result = store.replace_documents([
                paragraphs[0],  # unchanged: not touched
                Paragraph(paragraphs[1].id, "고침", "바뀐 문단", "d0"),  # updated
                Paragraph("kowiki:d3:0", "새", "새 문서", "d3"),  # added
            ])
            removed = store.remove_documents(["d1"])
        # d0's third paragraph is dropped, as it is no longer given.
        assert (result.added, result.updated, result.unchanged, result.removed) == (1, 1, 1, 1)
        assert removed == 3
        assert sorted(touched) == sorted([paragraphs[1].id, paragraphs[2].id, "kowiki:d3:0",
                                          *[p.id for p in paragraphs[3:6]]])
        assert [p.id for p in store.present(touched)] == [paragraphs[1].id, "kowiki:d3:0"]


def test_two_tiers_merging_at_once_keep_every_paragraph() -> None:
    # Sizes alternate between two tiers, so the two merge groups interleave.
    retriever = bm25()
    retriever.merge_policy = MergePolicy(per_tier=2, floor_rows=2)
    paragraphs = corpus(24)
    sizes = [1, 6, 1, 6]
    start = 0
    for size in sizes:
        part = paragraphs[start:start + size]
        if start == 0:
            retriever.index(part, progress=False)
        else:
            retriever.add(part)
        start += size
    assert retriever.merge() == 2
    assert sorted(s.size for s in retriever.segments) == [2, 12]
    assert_same_results(retriever, one_shot(paragraphs[:start]))
