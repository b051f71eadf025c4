"""What a fresh `korqa ask` loads: no torch on the ONNX Runtime path, one Kiwi per process, and an
index open that trusts unchanged files by size and time while `korqa verify` hashes them all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import make_tiny_reader, write_corpus

from korqa.cli import main
from korqa.modeling.onnx_graph import write_graph
from korqa.retrieval import manifest
from korqa.retrieval.index import Index, build_index
from korqa.retrieval.registry import make_retriever

REPORT = "import sys, json; from korqa import morphology; print(json.dumps({{'torch': 'torch' in " \
         "sys.modules, 'sklearn': 'sklearn' in sys.modules, 'onnx': 'onnx' in sys.modules, " \
         "'kiwi_builds': morphology.builds(), 'code': {code}}}))"


def run_python(code: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ask_on_onnx_runtime_imports_neither_torch_nor_sklearn_and_builds_kiwi_once(
        tmp_path: Path) -> None:
    model = make_tiny_reader(tmp_path / "reader")
    write_graph(model)
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    ask = (f"from korqa.cli import main; code = main(['ask', '한라산의 높이는 얼마인가?', "
           f"'--corpus', {str(corpus)!r}, '--model', {str(model)!r}, '--engine', 'onnx', "
           f"'--threshold', '0', '--json'])")
    report = run_python(f"{ask}; {REPORT.format(code='code')}",
                        {"KORQA_CACHE": str(tmp_path / "cache")})
    # The sample-style index has morpheme terms (Kiwi for the query) and the reader trims
    # particles (Kiwi again): one analyser serves both. The shipped graph is read as it is:
    # not even the onnx package is imported.
    assert report == {"torch": False, "sklearn": False, "onnx": False, "kiwi_builds": 1,
                      "code": 0}


def test_a_reader_without_a_graph_gets_one_in_memory_without_torch(tmp_path: Path) -> None:
    model = make_tiny_reader(tmp_path / "reader")  # weights only, as training writes them
    code = (f"from korqa.modeling.engines import load_engine; import numpy as np; "
            f"m = load_engine({str(model)!r}, engine='onnx'); "
            f"s, e = m.forward({{'input_ids': np.array([[2, 7, 3]])}}); "
            f"code = [list(s.shape), type(s).__name__]")
    report = run_python(f"{code}; {REPORT.format(code='code')}",
                        {"KORQA_CACHE": str(tmp_path / "cache")})
    assert report["torch"] is False
    assert report["code"] == [[1, 3], "ndarray"]
    assert not (tmp_path / "cache").exists()  # nothing traced, nothing cached


def test_kiwi_is_built_once_however_many_threads_ask_at_once() -> None:
    code = ("import threading; from korqa import morphology; "
            "from korqa.retrieval.terms import TermAnalyzer, TermConfig; "
            "analyzer = TermAnalyzer(TermConfig(morphemes=True)); "
            "seen = []; threads = [threading.Thread(target=lambda: seen.append("
            "id(morphology.kiwi()))) for _ in range(4)]; "
            "[t.start() for t in threads]; [t.join() for t in threads]; "
            "terms = analyzer('한라산의 높이'); "
            "code = [len(set(seen)), 'm:한라산' in terms]")
    report = run_python(f"{code}; {REPORT.format(code='code')}", {})
    assert report["kiwi_builds"] == 1 and report["code"] == [1, True]


# ---- index open: sizes and times; `korqa verify`: hashes -----------------------------------


@pytest.fixture()
def index_dir(tmp_path: Path) -> Path:
    out = tmp_path / "idx"
    build_index(out, [write_corpus(tmp_path / "corpus.jsonl")],
                make_retriever("bm25", morphemes=False), progress=False)
    return out


def biggest_retriever_file(index_dir: Path) -> Path:
    return max((p for p in (index_dir / "retriever").rglob("*")
                if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size)


def biggest_index_file(index_dir: Path) -> Path:
    """The biggest hashed file of the retriever, segments included (BM25 keeps them beside)."""
    return max((p for p in [*(index_dir / "retriever").rglob("*"),
                            *(index_dir / "segments").rglob("*")]
                if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size)


def flip_a_byte(path: Path, keep_mtime: bool) -> None:
    """Corrupt `path` without changing its size; optionally give it back its old mtime."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:  # a later edit: a later time, whatever the clock's resolution
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))


def test_opening_an_unchanged_index_hashes_nothing(index_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hashing(path: Path, block: int = 0) -> str:
        raise AssertionError(f"hashed {path}")

    monkeypatch.setattr(manifest, "sha256_file", no_hashing)
    with Index(index_dir) as index:
        assert index.search("한라산", 1)[0][0].title == "한라산"


def test_a_file_changed_after_indexing_is_caught_on_open(index_dir: Path) -> None:
    victim = biggest_retriever_file(index_dir)
    flip_a_byte(victim, keep_mtime=False)  # same size, new time: hashed, and found out
    with pytest.raises(ValueError, match=rf"{victim.name}: sha256 does not match"):
        Index(index_dir)


def test_a_truncated_file_is_caught_on_open_by_its_size(index_dir: Path) -> None:
    victim = biggest_retriever_file(index_dir)
    victim.write_bytes(victim.read_bytes()[:-8])
    with pytest.raises(ValueError, match=rf"{victim.name}: \d+ bytes, but .* lists \d+"):
        Index(index_dir)


def test_a_touched_but_unchanged_file_still_opens(index_dir: Path) -> None:
    victim = biggest_retriever_file(index_dir)
    os.utime(victim, ns=(0, victim.stat().st_mtime_ns + 5_000_000_000))  # e.g. `cp -r`
    with Index(index_dir) as index:  # the hash decides, and it matches
        assert len(index.store) == 4


def test_verify_catches_what_the_open_time_check_cannot(
        index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--index", str(index_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["paragraphs"] == 4 and report["files_hashed"] >= 3

    victim = biggest_index_file(index_dir)
    flip_a_byte(victim, keep_mtime=True)  # same size, same time: invisible to the open check
    with Index(index_dir) as index:
        assert len(index.store) == 4
    assert main(["verify", "--index", str(index_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{victim.name}: sha256 does not match" in err and "rebuild the index" in err


def test_manifests_without_recorded_sizes_are_hashed_in_full(index_dir: Path) -> None:
    path = index_dir / "retriever" / "manifest.json"
    written = json.loads(path.read_text(encoding="utf-8"))
    written.pop("stats")  # as korqa wrote them before
    path.write_text(json.dumps(written), encoding="utf-8")
    flip_a_byte(biggest_retriever_file(index_dir), keep_mtime=True)
    with pytest.raises(ValueError, match="sha256 does not match"):
        Index(index_dir)


def test_the_server_hashes_the_index_it_copies(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from korqa.pipeline.sources import cached_index
    from korqa.server.launch import prepare_index

    monkeypatch.setenv("KORQA_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    flip_a_byte(biggest_retriever_file(cached_index([corpus])), keep_mtime=True)
    with pytest.raises(ValueError, match="sha256 does not match"):
        prepare_index(None, [corpus], tmp_path / "server")


def test_indexes_saved_before_lean_kiwi_keep_their_analyser(index_dir: Path) -> None:
    from korqa.retrieval.registry import load_retriever

    path = index_dir / "retriever" / "manifest.json"
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["params"]["terms"]["kiwi_dictionaries"] == []  # new indexes: the lean Kiwi
    del written["params"]["terms"]["kiwi_dictionaries"]  # as korqa wrote them before
    path.write_text(json.dumps(written), encoding="utf-8")
    # Their morpheme terms came from Kiwi with all its dictionaries: queries must too.
    assert load_retriever(index_dir / "retriever", verify=False).terms.kiwi_dictionaries == (
        "default", "typo", "multi")
    written["params"]["terms"]["multi_words"] = False  # as korqa wrote them for a while
    path.write_text(json.dumps(written), encoding="utf-8")
    assert load_retriever(index_dir / "retriever", verify=False).terms.kiwi_dictionaries == (
        "default", "typo")


def test_freed_memory_goes_back_or_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    from korqa import memory

    memory._malloc_trim.cache_clear()
    memory.return_freed_memory()  # glibc here: trims, returns nothing
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    memory._malloc_trim.cache_clear()
    assert memory._malloc_trim() is None
    memory.return_freed_memory()  # a C library without malloc_trim: a no-op, no error
    memory._malloc_trim.cache_clear()
