"""Tiny data for the alignment and probe tests: toy heart and lung record tables, and tiny overrides.

Imported by the tests in tests/align (a plain module: a conftest.py in a subfolder would shadow the
top-level one in CI). The toy tables are record tables exactly as `clinlm ingest` writes them
(records.parquet, patient-level splits), over one-second recordings that carry their labels:
- heart: `heart_wav` from clinlm_toys (two sounds per beat; a murmur adds 300-600 Hz noise between
  them), murmur present/absent per patient, CirCor-style fields (site, age group, Outcome);
- lung: band noise "breathing"; crackles add short clicks, wheezes a 400 Hz tone; ICBHI-style
  fields (diagnosis per patient, crackle/wheeze per recording, device, age).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
ALIGN_CONFIG = REPO / "configs" / "align_default.yaml"

# A recipe that aligns in about a second: 1-s crops, 16 mel bands, the tiny tower, a few steps.
TINY_ALIGN = [
    "features.max_seconds=1", "features.n_mels=16", "model.tower_size=tiny", "model.head_hidden=32",
    "train.max_steps=6", "train.batch_size=8", "train.logging_steps=1", "data.reports=null",
]


def lung_wav(path: Path, crackle: bool, wheeze: bool, seed: int, seconds: float = 1.0, sr: int = 4000) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * rng.standard_normal(len(t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    if crackle:
        for onset in rng.uniform(0.05, seconds - 0.05, 6):
            i = int(onset * sr)
            x[i : i + 20] += np.hanning(20) * rng.choice([-2.0, 2.0])
    if wheeze:
        x += 0.5 * np.sin(2 * np.pi * 400 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.4 * x / np.abs(x).max()).astype(np.float32), sr, subtype="PCM_16")
    return path


def toy_records(root: Path, n_heart: int = 16, n_lung: int = 16, seed: int = 0) -> dict[str, Path]:
    """{"circor": folder, "icbhi": folder} of record tables over toy wavs (written once per root)."""
    from clinlm_toys import heart_wav

    from clinlm.records import RECORDS_FILE, Record, atomic_write_table, records_to_table
    from clinlm.splits import assign_splits

    out = {"circor": root / "rec" / "circor", "icbhi": root / "rec" / "icbhi"}
    if all((p / RECORDS_FILE).exists() for p in out.values()):
        return out
    rng = np.random.default_rng(seed)
    heart = []
    for p in range(n_heart):
        murmur = p % 2 == 1
        for site in ("AV", "MV"):
            wav = heart_wav(root / "audio" / f"h{p}_{site}.wav", murmur, seed=int(rng.integers(1 << 30)))
            heart.append(Record(
                record_id=f"circor/{p}_{site}", patient_id=f"circor/{p}", dataset="circor", modality="heart",
                media=[str(wav)], media_format="wav", sample_rate=4000.0, duration_s=1.0, site=site, sex="female" if p % 3 else "male",
                age_group="Child", abnormal=murmur, murmur="present" if murmur else "absent",
                murmur_locations=["AV", "MV"] if murmur else [], systolic_timing="Holosystolic" if murmur else None,
                source_path=str(root / "audio" / f"h{p}.txt")))
    lung = []
    for p in range(n_lung):
        dx = ["COPD"] if p % 2 else ["Healthy"]
        for k, site in enumerate(("Al", "Pr")):
            crackle, wheeze = bool((p + k) % 2), bool(rng.random() < 0.4)
            wav = lung_wav(root / "audio" / f"l{p}_{site}.wav", crackle, wheeze, seed=int(rng.integers(1 << 30)))
            lung.append(Record(
                record_id=f"icbhi/{p}_{site}", patient_id=f"icbhi/{p}", dataset="icbhi", modality="lung", media=[str(wav)],
                media_format="wav", sample_rate=4000.0, duration_s=1.0, site=site, device="Meditron", age_years=float(30 + p),
                sex="male" if p % 2 else "female", diagnosis=dx, abnormal=dx != ["Healthy"], crackle=crackle, wheeze=wheeze))
    for name, records in (("circor", heart), ("icbhi", lung)):
        splits = assign_splits(records, seed=0)
        for r in records:
            r.split = splits[r.patient_id]
        atomic_write_table(records_to_table(records), out[name] / RECORDS_FILE)
    return out


@pytest.fixture(scope="module")
def toy_recs(tmp_path_factory) -> dict[str, Path]:
    """The toy heart and lung record tables (written once per test worker)."""
    return toy_records(tmp_path_factory.getbasetemp() / "align_toy")


def tiny_teacher_folder(root: Path) -> Path:
    """A tiny random Llama LM folder: a 'local transformers LM' teacher (32-d mean-pooled hidden states).
    (Llama, as the embedded LM: its modeling code is imported anyway, which is slow on a busy machine.)"""
    from clinlm_toys import make_llama_folder

    folder = root / "teacher_llama"
    if not (folder / "config.json").exists():
        make_llama_folder(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    return tiny_teacher_folder(tmp_path_factory.getbasetemp() / "align_teacher")
