"""Model features from in-memory waveforms, so uploads never touch the disk.

`clinlm.infer.generate` takes bench rows whose `audios` are paths, and the model's
`AudioFeatures` (src/clinlm/signals/features.py) reads those paths. The server instead puts keys
such as "mem:3f2a..." in `audios` and hands `generate` a thin view of the model whose `.features`
is an `InMemoryFeatures`: an `AudioFeatures` subclass whose `raw(key)` computes the raw features
from the uploaded array with the feature module's own functions (resample, band-pass, crop,
log-mel or the encoder's extractor). The inherited `__call__` then normalises and pads exactly as
in training, so a served recording gets the same features as the same file on disk.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from clinlm.signals.audio import resample
from clinlm.signals.features import AudioFeatures, bandpass, log_mel


def waveform_for_model(x: np.ndarray, native_sr: int, cfg, sample_rate: int | None = None) -> np.ndarray:
    """Like features.load_waveform, from a decoded array: (samples,) at `sample_rate` Hz, first max_seconds."""
    sr = int(sample_rate or cfg.sample_rate)
    x = np.asarray(x, dtype=np.float32)[: int(round((cfg.max_seconds + 0.5) * native_sr))]
    if native_sr != sr:
        x = resample(x, native_sr, sr)
    if cfg.band_hz is not None:
        x = bandpass(x, sr, cfg.band_hz[0], cfg.band_hz[1], cfg.filter_order)
    return x[: int(round(cfg.max_seconds * sr))]


class InMemoryFeatures(AudioFeatures):
    """AudioFeatures over {key: (waveform, sample rate)} instead of files."""

    def __init__(self, base: AudioFeatures, waves: dict[str, tuple[np.ndarray, int]]):
        super().__init__(base.cfg, base.extractor)  # no disk cache: uploads stay in memory
        self.waves = waves

    def raw(self, key: str) -> np.ndarray:  # type: ignore[override]
        if key not in self.waves:
            raise KeyError(f"no uploaded audio under {key!r}")
        x, native = self.waves[key]
        if self.cfg.kind == "logmel":
            return log_mel(waveform_for_model(x, native, self.cfg), self.cfg, self._filters)
        sr = int(self.extractor.sampling_rate)
        x = waveform_for_model(x, native, self.cfg, sample_rate=sr)
        x = np.pad(x, (0, int(round(self.cfg.max_seconds * sr)) - len(x)))  # fixed length, as in training
        out = self.extractor(x, sampling_rate=sr, return_tensors="np")
        return np.asarray(out[self.extractor.model_input_names[0]][0], dtype=np.float32)


class ModelView:
    """The model with `.features` swapped for in-memory features; everything else is the model."""

    def __init__(self, model: Any, features: AudioFeatures | None):
        self._model = model
        self.features = features

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def new_key() -> str:
    return f"mem:{uuid.uuid4().hex}"


def view_with_waves(model: Any, waves: dict[str, tuple[np.ndarray, int]]) -> Any:
    """A model view whose features read `waves` (the model itself when there is no audio)."""
    if not waves or model.features is None:
        return model
    return ModelView(model, InMemoryFeatures(model.features, waves))
