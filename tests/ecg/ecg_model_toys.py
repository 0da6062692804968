"""Tiny ECG inputs for the model, bench and evaluation tests: WFDB records, Records, an ECG bench.

Written directly (no simulator run): 12-lead, 2 s at 100 Hz, one Gaussian "beat" per 0.5 s (AF:
irregular beat times), so a test writes a dozen records in well under a second. Imported by the
tests in this folder (pytest puts it on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clinlm.records import Record, atomic_write_table, records_to_table

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
TINY_ECG = {"sample_rate": 100, "seconds": 2, "band_hz": [0.5, 40]}
TINY_IMAGE = {"size": [32, 48]}


def write_ecg(base: Path, af: bool, seed: int, fs: int = 100, seconds: float = 2.0) -> str:
    """A 12-lead WFDB record at `base` (no extension), in mV; returns the base path."""
    import wfdb

    rng = np.random.default_rng(seed)
    t = np.arange(int(fs * seconds)) / fs
    beats = np.cumsum(rng.uniform(0.3, 0.8, 8)) if af else np.arange(0.2, seconds, 0.5)
    x = sum(np.exp(-((t - b) ** 2) / (2 * 0.015**2)) for b in beats)
    sig = np.stack([x * (1 + 0.1 * i) + 0.02 * rng.standard_normal(len(t)) for i in range(12)], axis=1)  # (samples, leads)
    base.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(base.name, fs=fs, units=["mV"] * 12, sig_name=LEADS, p_signal=sig, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(base.parent))
    return str(base)


def ecg_record(i: int, media: str, rhythm: str | None, superclasses: list[str], statements: list[str], split: str,
               code_system: str | None = "scp", dataset: str = "toyecg") -> Record:
    return Record(record_id=f"{dataset}/{i:03d}", patient_id=f"{dataset}/p{i:03d}", dataset=dataset, modality="ecg",
                  media=[media], media_format="wfdb", sample_rate=100, leads=LEADS, rhythm=rhythm, superclasses=superclasses,
                  statements=statements, code_system=code_system, split=split)


def toy_ecg_records(root: Path, n: int = 12) -> Path:
    """An ingest folder (records.parquet) of n ECGs: half AF, half sinus rhythm with classes."""
    recs = []
    for i in range(n):
        af = i % 2 == 1
        split = "train" if i % 6 < 4 else ("val" if i % 6 == 4 else "test")
        media = write_ecg(root / "wfdb" / f"{i:03d}", af=af, seed=i)
        if af:
            recs.append(ecg_record(i, media, "af", [], ["atrial fibrillation"], split))
        else:
            recs.append(ecg_record(i, media, "normal", ["NORM"] if i % 4 == 0 else ["CD"],
                                   ["normal ECG", "sinus rhythm"] if i % 4 == 0 else ["complete left bundle branch block", "sinus rhythm"], split))
    out = root / "rec"
    atomic_write_table(records_to_table(recs), out / "records.parquet")
    return out


def tiny_ecg_overrides(bench: Path, out: Path, vision: bool = False) -> list[str]:
    """Overrides that make configs/ecg_tiny.yaml train in seconds on a toy ECG bench."""
    over = [
        f"data.train={bench / 'train.jsonl'}", f"data.val={bench / 'val.jsonl'}", f"train.output_dir={out}",
        "features.ecg.seconds=2", "model.language_model=tiny", "model.ecg_tower_size=tiny", "model.num_ecg_tokens=2",
        "train.max_steps=2", "train.batch_size=4", "train.logging_steps=1",
    ]
    if vision:
        over += ["model.vision_tower=builtin", "model.vision_tower_size=tiny", "model.num_image_tokens=3", "features.image.size=[32, 48]"]
    return over
