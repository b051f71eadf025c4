"""Shared test fixtures: where the read-only shared data lives."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
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
