"""Shared test fixtures: where the read-only shared data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("KORQA_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
KORQUAD_DEV = SHARED / "data" / "korquad" / "KorQuAD_v1.0_dev.json"


@pytest.fixture(scope="session")
def korquad_dev() -> Path:
    if not KORQUAD_DEV.exists():
        pytest.skip(f"shared data not found at {KORQUAD_DEV}")
    return KORQUAD_DEV
