"""Degradations: each does what its units say, deterministically; specs parse with defaults."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from clinlm.signals import degrade as D

SR = 4000


def heart_like(seconds: float = 4.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Low-frequency bursts (S1/S2-like, 40-60 Hz) on a little broadband noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.01 * rng.standard_normal(len(t))
    for onset in np.arange(0.1, seconds, 0.4):
        w = (t >= onset) & (t < onset + 0.08)
        x[w] += np.sin(2 * np.pi * 50 * (t[w] - onset)) * np.hanning(w.sum())
    return x.astype(np.float32)


def band_power(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    f, p = welch(x, fs=sr, nperseg=512)
    return float(p[(f >= lo) & (f <= hi)].sum())


@pytest.mark.parametrize("kind", D.NOISE_KINDS)
@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0])
def test_noise_has_the_requested_snr(kind, snr):
    x = heart_like()
    y = D.add_noise(x, SR, np.random.default_rng(1), snr_db=snr, kind=kind)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert D.snr_db(x, y) == pytest.approx(snr, abs=0.01)


def test_noise_kinds_differ_in_the_way_their_names_say():
    n, rng = 8 * SR, np.random.default_rng(0)
    white = D.white_noise(n, SR, rng)
    friction = D.friction_noise(n, SR, np.random.default_rng(0))
    babble = D.babble_noise(n, SR, np.random.default_rng(0))
    ambient = D.ambient_noise(n, SR, np.random.default_rng(0))
    # friction comes in bursts: many 100 ms windows hold (almost) nothing, unlike white noise
    frames = lambda s: np.sqrt((s[: n // 400 * 400].reshape(-1, 400) ** 2).mean(1))
    quiet = lambda s: float(np.mean(frames(s) < 0.05 * frames(s).max()))
    assert quiet(friction) > 0.3 and quiet(white) == 0.0
    # friction is broadband above 150 Hz; ambient is dominated by low frequencies (1/f, rumble, hum)
    assert band_power(friction, SR, 0, 100) < 0.05 * band_power(friction, SR, 150, 2000)
    assert band_power(ambient, SR, 0, 200) > 3 * band_power(ambient, SR, 200, 2000)
    # babble: voiced energy between 90 Hz and the formants, little at the top of the band
    assert band_power(babble, SR, 80, 1000) > 3 * band_power(babble, SR, 1500, 2000)


def test_noise_on_a_silent_recording_is_refused():
    with pytest.raises(ValueError, match="silent"):
        D.add_noise(np.zeros(100, np.float32), SR, np.random.default_rng(0), snr_db=0)


def test_clipping_level_is_a_fraction_of_the_peak():
    x = heart_like()
    y = D.clip(x, SR, np.random.default_rng(0), level=0.25)
    limit = 0.25 * np.abs(x).max()
    assert np.abs(y).max() == pytest.approx(limit, rel=1e-6)
    below = np.abs(x) < limit
    assert np.array_equal(y[below], x[below])  # only the peaks change
    assert np.all(np.abs(y[~below]) == pytest.approx(limit, rel=1e-6))
    with pytest.raises(ValueError, match="fraction of the peak"):
        D.clip(x, SR, np.random.default_rng(0), level=1.5)


def test_band_limit_suppresses_energy_outside_the_band():
    x = np.random.default_rng(0).standard_normal(8 * 8000).astype(np.float32)
    sr = 8000
    y = D.band_limit(x, sr, None, low_hz=300, high_hz=3400)  # telephone channel
    assert band_power(y, sr, 0, 150) < 1e-3 * band_power(x, sr, 0, 150)  # > 30 dB down below the band
    assert band_power(y, sr, 3800, 4000) < 1e-3 * band_power(x, sr, 3800, 4000)
    assert band_power(y, sr, 600, 3000) == pytest.approx(band_power(x, sr, 600, 3000), rel=0.05)  # passband kept


def test_band_limit_above_nyquist_is_a_high_pass_and_low_pass_keeps_the_low_band():
    x = np.random.default_rng(1).standard_normal(8 * SR).astype(np.float32)
    y = D.band_limit(x, SR, None)  # 300-3400 Hz at 4 kHz: the upper edge is above Nyquist (2 kHz)
    assert band_power(y, SR, 0, 150) < 1e-3 * band_power(x, SR, 0, 150)
    assert band_power(y, SR, 600, 1900) == pytest.approx(band_power(x, SR, 600, 1900), rel=0.05)
    z = D.low_pass(x, SR, None, cutoff_hz=400)
    assert band_power(z, SR, 800, 2000) < 1e-3 * band_power(x, SR, 800, 2000)
    assert band_power(z, SR, 0, 250) == pytest.approx(band_power(x, SR, 0, 250), rel=0.05)


def test_gain_changes_the_level_by_the_given_decibels():
    x = heart_like()
    for db in (-20.0, 6.0):
        y = D.gain(x, SR, None, gain_db=db)
        assert 10 * np.log10(D.power(y) / D.power(x)) == pytest.approx(db, abs=1e-4)


def test_dropout_silences_whole_blocks_of_the_requested_share():
    x = heart_like(seconds=5.0) + 0.5  # no exact zeros in the input
    y = D.dropout(x, SR, np.random.default_rng(3), fraction=0.3, block_s=0.1)
    block = int(0.1 * SR)
    zero = (y == 0).reshape(-1, block)
    assert set(zero.all(1) | ~zero.any(1)) == {True}  # every block is all kept or all silenced
    assert zero.all(1).mean() == pytest.approx(0.3)
    assert np.array_equal(y[y != 0], x[y != 0])


def test_resample_loses_the_content_above_half_the_rate_and_keeps_the_length():
    x = np.random.default_rng(2).standard_normal(4 * SR).astype(np.float32)
    y = D.resample_through(x, SR, None, rate_hz=1000)
    assert len(y) == len(x)
    assert band_power(y, SR, 600, 2000) < 1e-2 * band_power(x, SR, 600, 2000)
    assert band_power(y, SR, 50, 400) == pytest.approx(band_power(x, SR, 50, 400), rel=0.1)


def test_time_crop_keeps_one_contiguous_segment():
    x = np.arange(1000, dtype=np.float32)
    y = D.time_crop(x, SR, np.random.default_rng(0), keep_fraction=0.2)
    assert len(y) == 200 and np.all(np.diff(y) == 1)


def test_the_same_seed_gives_the_same_degradation_and_another_seed_another():
    x = heart_like()
    for d in D.parse_specs(["noise:kind=white,friction,babble,ambient:snr=5", "dropout", "time-crop"]):
        a, b, c = d.apply(x, SR, seed=7), d.apply(x, SR, seed=7), d.apply(x, SR, seed=8)
        assert np.array_equal(a, b) and not np.array_equal(a, c), d.label


def test_spec_strings_expand_with_defaults_and_labels():
    specs = D.parse_specs(["noise:snr=0,10,20", "clipping", "band-limit", "dropout"])
    assert [d.label for d in specs] == ["noise:snr=0", "noise:snr=10", "noise:snr=20", "clipping", "band-limit", "dropout"]
    assert specs[0].params == {"snr_db": 0.0, "kind": "white"}
    assert specs[3].params == {"level": 0.25}
    assert specs[4].params == {"low_hz": 300.0, "high_hz": 3400.0}
    two = D.parse_spec("noise:kind=babble,ambient:snr=0,5")
    assert [d.label for d in two] == ["noise:kind=babble:snr=0", "noise:kind=babble:snr=5", "noise:kind=ambient:snr=0", "noise:kind=ambient:snr=5"]
    assert D.parse_spec("low_pass:cutoff=200")[0].params == {"cutoff_hz": 200.0}


@pytest.mark.parametrize("bad, message", [
    ("hiss", "unknown degradation"),
    ("noise:volume=3", "unknown parameter.*snr"),
    ("noise:snr=loud", "not a number"),
    ("noise:kind=pink", "unknown noise kind"),
    ("noise:snr", "key=value"),
    ("", "empty"),
])
def test_bad_specs_say_what_is_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        D.parse_specs([bad])


def test_a_spec_given_twice_is_an_error():
    with pytest.raises(ValueError, match="more than once"):
        D.parse_specs(["noise:snr=0,10", "noise:snr=10"])


def test_bench_dict_specs_are_read():
    for spec, name in [({"degrade": "noise", "snr_db": -5.0}, "noise"), ({"degrade": "low_pass", "cutoff_hz": 100.0}, "low-pass"),
                       ({"degrade": "dropout", "fraction": 0.5}, "dropout"), ({"degrade": "time_crop", "keep_fraction": 0.2}, "time-crop")]:
        d = D.from_dict({"path": "x.wav", **spec})
        assert d.name == name and all(d.params[k] == v for k, v in spec.items() if k != "degrade")
    assert D.from_dict({"degrade": "noise", "snr_db": -5.0}).params["kind"] == "white"


def test_degraded_copy_is_a_float_wav_written_once(tmp_path):
    src = tmp_path / "a.wav"
    x = heart_like(seconds=2.0)
    sf.write(src, x, SR, subtype="FLOAT")
    d0, d20 = D.parse_spec("noise:snr=0,20")
    p0 = D.degraded_copy(src, d0, tmp_path / "out", seed=0)
    p20 = D.degraded_copy(src, d20, tmp_path / "out", seed=0)
    assert p0 != p20 and p0.parent == tmp_path / "out"
    y0, sr = sf.read(p0, dtype="float32")
    y20, _ = sf.read(p20, dtype="float32")
    assert sr == SR and D.snr_db(x, y0) == pytest.approx(0.0, abs=0.01) and D.snr_db(x, y20) == pytest.approx(20.0, abs=0.01)
    # the same noise realisation at both levels: the noises are proportional
    n0, n20 = y0 - x, y20 - x
    assert np.corrcoef(n0, n20)[0, 1] > 0.999
    mtime = p0.stat().st_mtime_ns
    assert D.degraded_copy(src, d0, tmp_path / "out", seed=0) == p0 and p0.stat().st_mtime_ns == mtime
    assert D.degraded_copy(src, d0, tmp_path / "out", seed=1) != p0


def test_a_spec_that_yaml_split_at_its_commas_is_refused_with_the_fix():
    from clinlm.signals.degrade import parse_specs

    with pytest.raises(ValueError, match="quote specs"):
        parse_specs(["noise:snr=0", 10, 20])
