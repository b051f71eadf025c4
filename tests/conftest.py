"""Shared test fixtures: where the read-only shared data lives."""

from __future__ import annotations

import os
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
