"""Audio features that live with the model: resample, band-pass, crop/pad, log-mel, normalise.

Everything the audio tower needs to see a recording the way it saw its training data is in one
`FeatureConfig`, saved as `features.json` in every checkpoint, so inference never re-derives
preprocessing from a training script.

Two kinds:
- `logmel` (the built-in tower): mono -> resample to `sample_rate` -> zero-phase Butterworth
  band-pass -> keep the first `max_seconds` -> log-mel (torch.stft + transformers' mel filter bank) -> per-mel
  standardisation with statistics fitted on the *training* recordings -> pad to a fixed number
  of frames. Shape (frames, n_mels + extras), frames = 1 + max_seconds * sample_rate // hop.
- `hf` (a transformers audio encoder): the same load/resample/band-pass/crop, then the encoder's
  own feature extractor (Whisper log-mel, AST fbank, wav2vec2 raw waveform), saved beside it.

Auscultation defaults: 4 kHz (heart and lung sounds carry almost nothing above 2 kHz; CirCor is
recorded at 4 kHz), band 25-1800 Hz (removes DC drift and handling rumble below, and keeps the
band under Nyquist), 64 ms windows with a 20 ms hop, 64 mel bands.

`AudioFeatures` caches features per file (in memory, optionally on disk) because the same
recording appears in many instruction rows (one per task).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from clinlm.signals.audio import AudioError, load_audio, resample

FEATURES_FILE = "features.json"
FEATURE_EXTRACTOR_DIR = "feature_extractor"


@dataclass
class FeatureConfig:
    kind: str = "logmel"  # "logmel" (built-in tower) | "hf" (the tower's own feature extractor)
    sample_rate: int = 4000  # Hz; every recording is resampled to this
    band_hz: list[float] | None = field(default_factory=lambda: [25.0, 1800.0])  # band-pass [low, high] Hz; None = off
    filter_order: int = 4  # Butterworth order (applied forwards and backwards: zero phase)
    max_seconds: float = 10.0  # keep the first max_seconds; shorter recordings are padded
    n_fft: int = 256  # samples per window (64 ms at 4 kHz)
    hop: int = 80  # samples between windows (20 ms at 4 kHz)
    n_mels: int = 64
    fmin: float = 25.0  # Hz, lowest mel band edge
    fmax: float = 1800.0  # Hz, highest mel band edge
    # Extra per-frame channels after the mel bands (signals/adventitious.py): "transient"
    # (crackle-like clicks) and/or "tonality" (wheeze-like tones); [] = log-mel only.
    extras: list[str] = field(default_factory=list)
    mean: list[float] | None = None  # (n_mels + extras,) per-channel mean of training log-mel frames
    std: list[float] | None = None  # (n_mels + extras,) per-channel std of training log-mel frames

    def __post_init__(self) -> None:
        if self.kind not in ("logmel", "hf"):
            raise ValueError(f"features.kind must be 'logmel' or 'hf', not {self.kind!r}")
        if self.band_hz is not None:
            low, high = (float(v) for v in self.band_hz)
            if not 0 < low < high < self.sample_rate / 2:
                raise ValueError(
                    f"features.band_hz={self.band_hz} must satisfy 0 < low < high < sample_rate/2 "
                    f"({self.sample_rate / 2:g} Hz); set features.band_hz=null to turn the band-pass off"
                )
            self.band_hz = [low, high]
        from clinlm.signals.adventitious import EXTRAS

        unknown = [e for e in self.extras if e not in EXTRAS]
        if unknown:
            raise ValueError(f"features.extras {unknown} unknown; choose from {list(EXTRAS)}")
        self.extras = list(self.extras)
        if self.kind == "logmel" and not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"features.fmin/fmax ({self.fmin}, {self.fmax}) must lie within 0..{self.sample_rate / 2:g} Hz")

    @property
    def num_samples(self) -> int:
        return int(round(self.max_seconds * self.sample_rate))

    @property
    def num_frames(self) -> int:
        """Frames of a padded log-mel: centred windows, one every `hop` samples."""
        return 1 + self.num_samples // self.hop

    @property
    def num_channels(self) -> int:
        """Values per frame the built-in tower sees: the mel bands, then the extras."""
        return self.n_mels + len(self.extras)

    @property
    def fitted(self) -> bool:
        return self.kind != "logmel" or (self.mean is not None and self.std is not None)

    def fingerprint(self) -> str:
        """Hash of the settings that change raw features (not the normalisation statistics)."""
        d = dataclasses.asdict(self)
        d.pop("mean"), d.pop("std")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FEATURES_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "FeatureConfig":
        path = Path(folder) / FEATURES_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: this folder is not a clinlm checkpoint with audio features")
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown feature settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def bandpass(x: np.ndarray, sr: int, low_hz: float, high_hz: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (second-order sections), x: (samples,) at sr Hz."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=sr, output="sos")
    if len(x) <= 3 * (2 * len(sos) + 1):  # sosfiltfilt's padding needs a few samples
        return x
    return sosfiltfilt(sos, x).astype(np.float32)


def load_waveform(path: str | Path, cfg: FeatureConfig, sample_rate: int | None = None) -> np.ndarray:
    """Mono float32 (samples,) at cfg.sample_rate (or `sample_rate`), band-passed, first max_seconds."""
    sr = int(sample_rate or cfg.sample_rate)
    x, native = load_audio(path)
    # Crop before resampling and filtering (the slow parts), keeping 0.5 s more so the filter's
    # edge effects fall outside the kept part.
    x = x[: int(round((cfg.max_seconds + 0.5) * native))]
    if native != sr:
        x = resample(x, native, sr)
    if cfg.band_hz is not None:
        x = bandpass(x, sr, cfg.band_hz[0], cfg.band_hz[1], cfg.filter_order)
    return x[: int(round(cfg.max_seconds * sr))]


def _mel_filters(cfg: FeatureConfig) -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    # (n_fft // 2 + 1, n_mels), Slaney-normalised triangles
    return mel_filter_bank(
        num_frequency_bins=cfg.n_fft // 2 + 1,
        num_mel_filters=cfg.n_mels,
        min_frequency=cfg.fmin,
        max_frequency=cfg.fmax,
        sampling_rate=cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


def log_mel(x: np.ndarray, cfg: FeatureConfig, filters: np.ndarray | None = None) -> np.ndarray:
    """Natural-log mel power spectrogram, (frames, n_mels + extras) float32; frames = 1 + len(x) // hop.

    Centred Hann windows (reflect padding), |STFT|^2 through the transformers mel filter bank,
    floored at 1e-10 before the log. torch.stft is ~8x faster than a per-frame numpy loop.
    `cfg.extras` channels (signals/adventitious.py) are appended in the order given.
    """
    if len(x) < cfg.n_fft // 2 + 1:  # reflect padding needs half a window
        x = np.pad(x, (0, cfg.n_fft // 2 + 1 - len(x)))
    mel = torch.from_numpy(np.asarray(filters if filters is not None else _mel_filters(cfg), dtype=np.float32))
    spec = torch.stft(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop,
        window=torch.hann_window(cfg.n_fft, periodic=True),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )  # (n_fft // 2 + 1, frames)
    power = spec.real**2 + spec.imag**2  # (bins, frames)
    feats = torch.log(torch.clamp(power.T @ mel, min=1e-10)).numpy()  # (frames, n_mels)
    if not cfg.extras:
        return feats
    from clinlm.signals import adventitious

    columns = [feats]
    for name in cfg.extras:
        if name == "transient":
            columns.append(adventitious.transient_ratio(np.asarray(x, np.float64), cfg.sample_rate, cfg.hop, len(feats))[:, None])
        else:  # tonality
            freqs = np.arange(power.shape[0]) * cfg.sample_rate / cfg.n_fft
            columns.append(adventitious.tonality(power.numpy(), freqs)[:, None])
    return np.concatenate(columns, axis=1).astype(np.float32)  # (frames, n_mels + extras)


def fit_normalisation(raw: Iterable[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-band mean and std over every frame of the given (frames, n_mels) log-mels."""
    total, total_sq, count = None, None, 0
    for feats in raw:
        f = feats.astype(np.float64)
        total = f.sum(0) if total is None else total + f.sum(0)
        total_sq = (f**2).sum(0) if total_sq is None else total_sq + (f**2).sum(0)
        count += len(f)
    if not count:
        raise ValueError("no training audio to fit the feature normalisation on")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-8))
    return mean.tolist(), std.tolist()


class AudioFeatures:
    """Audio path -> model input tensor, cached per file.

    logmel: (num_frames, n_mels) standardised, zero-padded after the recording ends (zero is the
    training mean, so padding looks like an average frame, not like silence at -23 log units).
    hf: whatever the encoder's feature extractor returns for one recording, e.g. Whisper
    (n_mels, 3000), wav2vec2 (samples,).
    """

    def __init__(self, cfg: FeatureConfig, extractor: Any = None, cache_dir: str | Path | None = None):
        if cfg.kind == "hf" and extractor is None:
            raise ValueError("features.kind='hf' needs the audio encoder's feature extractor")
        self.cfg = cfg
        self.extractor = extractor
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._raw: dict[str, np.ndarray] = {}
        self._filters = _mel_filters(cfg) if cfg.kind == "logmel" else None

    def raw(self, path: str | Path) -> np.ndarray:
        """Features before normalisation and padding (computed once per file)."""
        key = str(Path(path).resolve())
        if key in self._raw:
            return self._raw[key]
        disk = self._disk_path(key)
        if disk is not None and disk.exists():
            feats = np.load(disk)
        else:
            try:
                feats = self._compute(key)
            except AudioError as exc:
                raise AudioError(f"{key}: {exc}") from exc
            if disk is not None:
                disk.parent.mkdir(parents=True, exist_ok=True)
                tmp = disk.with_suffix(".tmp.npy")
                np.save(tmp, feats)
                tmp.replace(disk)
        self._raw[key] = feats
        return feats

    def _compute(self, path: str) -> np.ndarray:
        if self.cfg.kind == "logmel":
            return log_mel(load_waveform(path, self.cfg), self.cfg, self._filters)
        sr = int(self.extractor.sampling_rate)
        x = load_waveform(path, self.cfg, sample_rate=sr)
        n = int(round(self.cfg.max_seconds * sr))
        x = np.pad(x, (0, n - len(x)))  # fixed length, so every extractor returns one fixed shape
        out = self.extractor(x, sampling_rate=sr, return_tensors="np")
        return np.asarray(out[self.extractor.model_input_names[0]][0], dtype=np.float32)

    def _disk_path(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        st = Path(key).stat()
        h = hashlib.sha1(f"{key}|{st.st_size}|{st.st_mtime_ns}|{self.cfg.fingerprint()}".encode()).hexdigest()
        return self.cache_dir / h[:2] / f"{h}.npy"

    def fit(self, paths: Iterable[str | Path]) -> FeatureConfig:
        """Fit the per-band statistics on training recordings (logmel only); returns the config."""
        if self.cfg.kind == "logmel":
            self.cfg.mean, self.cfg.std = fit_normalisation(self.raw(p) for p in sorted(set(map(str, paths))))
        return self.cfg

    def __call__(self, path: str | Path) -> torch.Tensor:
        feats = self.raw(path)
        if self.cfg.kind != "logmel":
            return torch.from_numpy(feats)
        if not self.cfg.fitted:
            raise ValueError("feature normalisation is not fitted: call AudioFeatures.fit(training paths) first")
        out = np.zeros((self.cfg.num_frames, self.cfg.num_channels), dtype=np.float32)  # (frames, channels)
        n = min(len(feats), self.cfg.num_frames)
        out[:n] = (feats[:n] - np.asarray(self.cfg.mean, np.float32)) / np.asarray(self.cfg.std, np.float32)
        return torch.from_numpy(out)
