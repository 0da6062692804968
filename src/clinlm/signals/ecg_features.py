"""ECG model inputs that live with the model: resample, band-pass, fixed lead order, fixed length, standardise.

Everything the ECG tower needs to see a record the way it saw its training data is in one
`EcgFeatureConfig`, saved as `ecg_features.json` in every checkpoint:

    WFDB record (any rate, any units, any lead names)
      -> mV, the record's leads (`signals.ecg.load_ecg`), the first `seconds`
      -> resampled to `sample_rate` (scipy polyphase, anti-aliased)
      -> zero-phase Butterworth band-pass `band_hz` (0.5-40 Hz by default: removes baseline
         wander below and powerline / muscle noise above, keeps P, QRS and T)
      -> the rows of `leads`, in that order; a lead the record lacks (a 2-lead Holter, a
         single-lead AF recorder) is a row of zeros, and samples WFDB marks missing are 0 mV
      -> zero-padded to samples = sample_rate x seconds
      -> per-lead standardisation with statistics fitted on the *training* records (amplitude
         carries meaning, e.g. voltage criteria for hypertrophy, so it is not per record)
    shape (samples, leads), the layout of a log-mel (frames, bands) and of PatchTST's past_values.

Defaults: 100 Hz (PTB-XL's low-rate copy; enough for rhythm and morphology at this model size),
10 s (PTB-XL's length), the 12 standard leads in `signals.ecg.STANDARD_LEADS` order.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from clinlm.signals.ecg import STANDARD_LEADS, EcgError, canonical_lead, load_ecg

ECG_FEATURES_FILE = "ecg_features.json"


@dataclass
class EcgFeatureConfig:
    sample_rate: float = 100.0  # Hz
    seconds: float = 10.0  # the first `seconds` of each record; shorter ones are zero-padded
    leads: list[str] = field(default_factory=lambda: list(STANDARD_LEADS))  # tower input channels, in order
    band_hz: list[float] | None = field(default_factory=lambda: [0.5, 40.0])  # [low, high] Hz; None = off
    filter_order: int = 2  # Butterworth order (applied forwards and backwards: zero phase)
    mean: list[float] | None = None  # (leads,) mV, fitted on training records
    std: list[float] | None = None  # (leads,) mV

    def __post_init__(self) -> None:
        self.leads = [canonical_lead(lead) for lead in self.leads]
        if len(set(self.leads)) != len(self.leads) or not self.leads:
            raise ValueError(f"features.ecg.leads must be distinct lead names, got {self.leads}")
        if self.band_hz is not None:
            low, high = (float(v) for v in self.band_hz)
            if not 0 < low < high < self.sample_rate / 2:
                raise ValueError(
                    f"features.ecg.band_hz={self.band_hz} must satisfy 0 < low < high < sample_rate/2 "
                    f"({self.sample_rate / 2:g} Hz); set features.ecg.band_hz=null to turn the band-pass off"
                )
            self.band_hz = [low, high]

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.seconds))

    @property
    def fitted(self) -> bool:
        return self.mean is not None and self.std is not None

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / ECG_FEATURES_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "EcgFeatureConfig":
        path = Path(folder) / ECG_FEATURES_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: this folder is not a clinlm checkpoint with an ECG tower")
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EcgFeatureConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown features.ecg settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


# One-channel handheld recordings name their channel "ECG": AliveCor (PhysioNet/CinC 2017) is held
# with one hand on each electrode, which is lead I (the physionet2017 adapter records the same
# alias in metadata["lead_aliases"]). Only a record with that single channel is read this way.
SINGLE_LEAD_NAMES = ("ECG",)


def ecg_matrix(path: str | Path, cfg: EcgFeatureConfig) -> np.ndarray:
    """(samples, leads) float32 in mV: resampled, band-passed, in cfg.leads order, padded (see module doc)."""
    from scipy.signal import butter, sosfiltfilt

    x, fs, leads = load_ecg(path, fs=cfg.sample_rate, duration_s=cfg.seconds)  # (record leads, samples)
    x = np.nan_to_num(x, nan=0.0)  # samples WFDB marks missing
    if cfg.band_hz is not None and x.shape[1] > 3 * (2 * cfg.filter_order + 1):  # filtfilt's padding
        sos = butter(cfg.filter_order, cfg.band_hz, btype="bandpass", fs=fs, output="sos")
        x = sosfiltfilt(sos, x, axis=-1)
    out = np.zeros((cfg.num_samples, len(cfg.leads)), dtype=np.float32)
    n = min(cfg.num_samples, x.shape[1])
    if len(leads) == 1 and leads[0] in SINGLE_LEAD_NAMES and "I" not in leads:
        leads = ["I"]  # a one-channel handheld recording named only "ECG" (see SINGLE_LEAD_NAMES)
    present = [lead for lead in cfg.leads if lead in leads]
    if not present:
        raise EcgError(f"{path} has none of the leads {', '.join(cfg.leads)} (it has {', '.join(leads)})")
    for lead in present:
        out[:n, cfg.leads.index(lead)] = x[leads.index(lead), :n]
    return out


class EcgFeatures:
    """ECG path (WFDB record, with or without extension) -> model input (samples, leads), cached per file."""

    def __init__(self, cfg: EcgFeatureConfig):
        self.cfg = cfg
        self._raw: dict[str, np.ndarray] = {}

    def raw(self, path: str | Path) -> np.ndarray:
        key = str(path)
        if key not in self._raw:
            try:
                self._raw[key] = ecg_matrix(path, self.cfg)
            except EcgError as exc:
                raise EcgError(f"{path}: {exc}") from exc
        return self._raw[key]

    def fit(self, paths: Iterable[str | Path]) -> EcgFeatureConfig:
        """Per-lead mean and std over every sample of the training records (zero rows of absent leads excluded)."""
        total = np.zeros(len(self.cfg.leads))
        total_sq = np.zeros(len(self.cfg.leads))
        count = np.zeros(len(self.cfg.leads))
        for p in sorted(set(map(str, paths))):
            x = self.raw(p).astype(np.float64)  # (samples, leads)
            used = np.any(x != 0, axis=0)  # (leads,) a lead the record lacks is all zeros
            total += np.where(used, x.sum(0), 0.0)
            total_sq += np.where(used, (x**2).sum(0), 0.0)
            count += np.where(used, len(x), 0)
        if not count.any():
            raise ValueError("no training ECG to fit the feature normalisation on")
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        var = np.divide(total_sq, count, out=np.ones_like(total), where=count > 0) - mean**2
        self.cfg.mean, self.cfg.std = mean.tolist(), np.sqrt(np.maximum(var, 1e-6)).tolist()
        return self.cfg

    def __call__(self, path: str | Path) -> torch.Tensor:
        if not self.cfg.fitted:
            raise ValueError("ECG feature normalisation is not fitted: call EcgFeatures.fit(training paths) first")
        x = self.raw(path)
        absent = ~np.any(x != 0, axis=0)  # keep absent leads at exactly 0 after standardisation
        out = (x - np.asarray(self.cfg.mean, np.float32)) / np.asarray(self.cfg.std, np.float32)
        out[:, absent] = 0.0
        return torch.from_numpy(out.astype(np.float32))  # (samples, leads)
