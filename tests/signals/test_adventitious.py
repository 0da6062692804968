"""Adventitious-sound channels: clicks raise `transient`, tones raise `tonality`, noise raises neither."""

from __future__ import annotations

import numpy as np
import pytest

from clinlm.signals.features import AudioFeatures, FeatureConfig, log_mel

SR = 4000


def breath_noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1


def add_clicks(x: np.ndarray, at_s: list[float], level: float = 1.0) -> np.ndarray:
    t = np.arange(int(0.006 * SR)) / SR
    click = level * np.sin(2 * np.pi * 600 * t) * np.exp(-t / 0.001)  # a 600 Hz fine crackle
    y = x.copy()
    for s in at_s:
        i = int(s * SR)
        y[i : i + len(click)] += click
    return y


def add_tone(x: np.ndarray, start_s: float, end_s: float, hz: float = 400.0, level: float = 0.1) -> np.ndarray:
    y = x.copy()
    i, j = int(start_s * SR), int(end_s * SR)
    y[i:j] += level * np.sqrt(2) * np.sin(2 * np.pi * hz * np.arange(j - i) / SR)
    return y


CFG = FeatureConfig(max_seconds=4, extras=["transient", "tonality"])


def frames_of(seconds: float) -> int:
    return int(round(seconds * SR / CFG.hop))


def test_clicks_stand_out_where_they_are():
    x = add_clicks(breath_noise(4), [1.0, 1.3, 2.5])
    f = log_mel(x, CFG)
    assert f.shape == (CFG.num_frames, CFG.n_mels + 2) and CFG.num_channels == CFG.n_mels + 2
    transient = f[:, CFG.n_mels]
    at_clicks = [transient[frames_of(s) : frames_of(s) + 2].max() for s in (1.0, 1.3, 2.5)]
    quiet = np.concatenate([transient[: frames_of(0.8)], transient[frames_of(2.7) :]])
    assert min(at_clicks) > quiet.max() + 0.2
    # the same noise without clicks stays low everywhere
    assert log_mel(breath_noise(4), CFG)[:, CFG.n_mels].max() < min(at_clicks)


def test_a_tone_raises_tonality_only_while_it_sounds():
    x = add_tone(breath_noise(4), 1.0, 1.6)
    tonality = log_mel(x, CFG)[:, CFG.n_mels + 1]
    during = tonality[frames_of(1.1) : frames_of(1.5)]
    before = tonality[: frames_of(0.9)]
    assert during.min() > before.max()


def test_extras_are_normalised_and_cached_like_the_mel_bands(tmp_path):
    import soundfile as sf

    paths = []
    for i in range(3):
        p = tmp_path / f"r{i}.wav"
        sf.write(p, add_clicks(breath_noise(3, seed=i), [0.5 * (i + 1)]).astype(np.float32), SR)
        paths.append(p)
    feats = AudioFeatures(FeatureConfig(max_seconds=4, extras=["tonality"]), cache_dir=tmp_path / "cache")
    cfg = feats.fit(paths)
    assert len(cfg.mean) == len(cfg.std) == cfg.n_mels + 1
    out = feats(paths[0])
    assert out.shape == (cfg.num_frames, cfg.n_mels + 1)
    # a config with extras caches separately from one without (the fingerprint differs)
    assert FeatureConfig(max_seconds=4).fingerprint() != cfg.fingerprint()


def test_unknown_extras_are_refused():
    with pytest.raises(ValueError, match="extras"):
        FeatureConfig(extras=["crackles"])
