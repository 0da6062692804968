"""Feature extraction that travels with the model: band-pass, log-mel shapes, normalisation, caching."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from clinlm.signals.features import AudioFeatures, FeatureConfig, bandpass, load_waveform, log_mel

CFG = dict(sample_rate=4000, band_hz=[25, 1800], max_seconds=1.0, n_fft=256, hop=80, n_mels=16, fmin=25, fmax=1800)


def sine(path, freq, seconds=1.0, sr=4000, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, amp * np.sin(2 * np.pi * freq * t), sr)
    return path


def rms(x):
    return float(np.sqrt(np.mean(x**2)))


def test_bandpass_keeps_the_band_and_removes_the_rest():
    sr = 4000
    t = np.arange(2 * sr) / sr
    inside, below = np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 5 * t)
    assert rms(bandpass(inside, sr, 25, 1800)) == pytest.approx(rms(inside), rel=0.02)
    assert rms(bandpass(below, sr, 25, 1800)) < 0.05 * rms(below)


def test_log_mel_shape_and_where_the_energy_is(tmp_path):
    cfg = FeatureConfig(**CFG)
    x = load_waveform(sine(tmp_path / "a.wav", 400), cfg)
    m = log_mel(x, cfg)
    assert m.shape == (1 + len(x) // cfg.hop, cfg.n_mels) == (cfg.num_frames, cfg.n_mels)
    # A 400 Hz tone puts its energy in the mel band whose centre is nearest 400 Hz, not at the edges.
    peak = int(np.argmax(m.mean(0)))
    assert 0 < peak < cfg.n_mels - 1


def test_resampling_crop_and_padding(tmp_path):
    cfg = FeatureConfig(**CFG)
    long = sine(tmp_path / "long.wav", 200, seconds=3.0, sr=8000)  # other rate, longer than max_seconds
    short = sine(tmp_path / "short.wav", 200, seconds=0.4)
    assert len(load_waveform(long, cfg)) == cfg.num_samples
    feats = AudioFeatures(cfg)
    feats.fit([long, short])
    a, b = feats(long), feats(short)
    assert a.shape == b.shape == (cfg.num_frames, cfg.n_mels)
    n_short = 1 + int(0.4 * 4000) // cfg.hop
    assert (b[n_short:] == 0).all() and (b[:n_short] != 0).any()  # padding is the training mean (0)


def test_normalisation_is_fitted_on_training_audio_and_saved(tmp_path):
    cfg = FeatureConfig(**CFG)
    paths = [sine(tmp_path / f"{f}.wav", f, amp=a) for f, a in [(100, 0.1), (300, 0.3), (700, 0.5)]]
    feats = AudioFeatures(cfg)
    with pytest.raises(ValueError, match="not fitted"):
        feats(paths[0])
    feats.fit(paths)
    stacked = np.concatenate([feats(p).numpy() for p in paths])
    assert np.allclose(stacked.mean(0), 0, atol=1e-4) and np.allclose(stacked.std(0), 1, atol=1e-3)
    cfg.save(tmp_path)
    again = FeatureConfig.load(tmp_path)
    assert again == cfg and len(again.mean) == cfg.n_mels


def test_disk_cache_is_reused(tmp_path):
    cfg = FeatureConfig(**CFG)
    p = sine(tmp_path / "a.wav", 250)
    first = AudioFeatures(cfg, cache_dir=tmp_path / "cache")
    raw = first.raw(p)
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1
    np.save(files[0], raw + 1.0)  # a second extractor must read the cache, not recompute
    assert np.allclose(AudioFeatures(cfg, cache_dir=tmp_path / "cache").raw(p), raw + 1.0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(band_hz=[25, 2500]), "band_hz"),
        (dict(band_hz=[300, 100]), "band_hz"),
        (dict(fmax=3000), "fmin/fmax"),
        (dict(kind="mfcc"), "kind"),
    ],
)
def test_bad_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        FeatureConfig(**{**CFG, **bad})


def test_unreadable_audio_says_which_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(ValueError, match="broken.wav.*not a readable wav"):
        AudioFeatures(FeatureConfig(**CFG)).raw(bad)


def test_fast_log_mel_equals_the_transformers_reference():
    from transformers.audio_utils import spectrogram, window_function

    from clinlm.signals.features import _mel_filters

    cfg = FeatureConfig(**CFG)
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    ref = spectrogram(x, window_function(cfg.n_fft, "hann"), frame_length=cfg.n_fft, hop_length=cfg.hop, power=2.0,
                      mel_filters=_mel_filters(cfg), log_mel="log", mel_floor=1e-10)  # (n_mels, frames)
    assert np.allclose(log_mel(x, cfg), ref.T, atol=1e-4)
