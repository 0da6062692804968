"""Shared test fixtures: where the real samples are, and tiny helpers to write files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLINLM_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real samples in ../shared/data (override with CLINLM_SHARED_DATA); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (set CLINLM_SHARED_DATA)")
    return SHARED_DATA


def write_wav(path: Path, seconds: float = 1.0, sr: int = 4000, freq: float = 100.0, subtype: str = "PCM_16") -> Path:
    """A short sine wav, for tests that need a real, decodable recording."""
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), sr, subtype=subtype)
    return path


def pytest_configure(config):
    # Under pytest-xdist each worker is a process: two workers x two torch threads on a 2-core
    # machine oversubscribe the cores and make training tests several times slower.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
