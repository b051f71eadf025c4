"""Shared test fixtures: where the read-only shared data lives, the tiny reader, one torch
thread. The helpers behind them are in tiny.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("KORQA_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
KORQUAD_DEV = SHARED / "data" / "korquad" / "KorQuAD_v1.0_dev.json"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Indexes and traced ONNX readers go to a temporary cache, never the user's (a test or
    fixture that sets KORQA_CACHE itself comes later and wins)."""
    monkeypatch.setenv("KORQA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def korquad_dev() -> Path:
    if not KORQUAD_DEV.exists():
        pytest.skip(f"shared data not found at {KORQUAD_DEV}")
    return KORQUAD_DEV


@pytest.fixture
def torchrun() -> Callable[..., None]:
    """Run `korqa ARGS…` as N local processes under torchrun (gloo on the CPU)."""

    def run(processes: int, *korqa_args: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run",
                   f"--nproc_per_node={processes}", "--nnodes=1", "--master_addr=127.0.0.1",
                   f"--master_port={port}", "-m", "korqa", *korqa_args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]

    return run


@pytest.fixture(scope="module")
def tiny_reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny.make_tiny_reader`'s random reader over the four-document corpus, one per module."""
    from tiny import make_tiny_reader  # imports torch: only for the tests that use it

    return make_tiny_reader(tmp_path_factory.mktemp("reader"))


@pytest.fixture()
def trained_reader(tmp_path: Path) -> tuple[Path, Path]:
    """`tiny.train_tiny_reader`: a reader directory (fresh per test: calibration writes into
    it) and the SQuAD file of its one question."""
    from tiny import train_tiny_reader

    return train_tiny_reader(tmp_path)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    from tiny import one_torch_thread

    with one_torch_thread():
        yield
