"""Sound building blocks shared by the heart, lung and cough simulators.

Small vectorised functions with explicit units: frequencies in Hz, times in seconds, levels in
dB, sample rates `fs` in Hz. Signals are float64 arrays of shape (samples,) on an arbitrary
linear scale; each simulator sets its own reference level and the writers scale to PCM.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import soundfile as sf
from scipy import signal


def db_to_gain(db: float | np.ndarray) -> float | np.ndarray:
    """Amplitude ratio for a level in dB (20 log10)."""
    return 10.0 ** (np.asarray(db, dtype=float) / 20.0)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


@lru_cache(maxsize=2048)
def _sos(kind: str, f1: float, f2: float | None, fs: int, order: int) -> np.ndarray:
    nyq = fs / 2.0
    if kind == "bandpass":
        lo, hi = max(f1, 1.0), min(f2, 0.95 * nyq)
        return signal.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return signal.butter(order, min(f1, 0.95 * nyq), btype=kind, fs=fs, output="sos")


def _grid(f_hz: float) -> float:
    """Snap a filter edge to a 2% log-frequency grid, so that random edges (formants, pitches)
    reuse cached designs; 2% is far below what changes the sound of a noise band."""
    return float(np.exp(np.round(np.log(max(f_hz, 1.0)) / 0.02) * 0.02))


def bandpass(x: np.ndarray, lo_hz: float, hi_hz: float, fs: int, order: int = 4) -> np.ndarray:
    """Butterworth band-pass (causal, second-order sections); the upper edge is kept below Nyquist."""
    return signal.sosfilt(_sos("bandpass", _grid(lo_hz), _grid(hi_hz), int(fs), order), x)


def lowpass(x: np.ndarray, cutoff_hz: float, fs: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("lowpass", _grid(cutoff_hz), None, int(fs), order), x)


def highpass(x: np.ndarray, cutoff_hz: float, fs: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("highpass", _grid(cutoff_hz), None, int(fs), order), x)


def band_noise(n: int, lo_hz: float, hi_hz: float, fs: int, rng: np.random.Generator) -> np.ndarray:
    """White noise band-passed to [lo_hz, hi_hz], scaled to unit RMS."""
    x = bandpass(rng.standard_normal(n + 256), lo_hz, hi_hz, fs)[256:]  # drop the filter's start-up
    return x / max(rms(x), 1e-12)


def edge_taper(n: int, ramp: int) -> np.ndarray:
    """Ones with raised-cosine ramps of `ramp` samples at both ends (no clicks at segment edges)."""
    w = np.ones(n)
    r = min(ramp, n // 2)
    if r > 0:
        up = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
        w[:r] = up
        w[n - r :] = up[::-1]
    return w


def gamma_transient(t_s: np.ndarray, freq_hz: np.ndarray, tau_s: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Damped low-frequency oscillation with a smooth (gamma, order 2) onset, peak at 2*tau.

    Heart sounds S1..S4 are modelled as such valve/wall vibrations. Broadcasts: t_s (beats, samples)
    with per-beat (beats, 1) parameters. Zero for t_s < 0.
    """
    u = np.clip(t_s, 0.0, None) / tau_s
    env = u * u * np.exp(2.0 - u) / 4.0  # peak value 1 at u = 2
    return np.where(t_s >= 0.0, env * np.sin(2.0 * np.pi * freq_hz * t_s + phase), 0.0)


def overlap_add(x: np.ndarray, starts: np.ndarray, waves: np.ndarray) -> None:
    """Add waves (events, L) into x at integer sample offsets `starts` (events,), in place.

    Events may overlap each other and run past either end of x (those samples are dropped).
    """
    if waves.size == 0:
        return
    idx = starts[:, None] + np.arange(waves.shape[1])[None, :]
    keep = (idx >= 0) & (idx < x.size)
    np.add.at(x, idx[keep], waves[keep])


def mains_hum(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """50 or 60 Hz mains hum with 2nd/3rd harmonics, unit RMS."""
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / fs
    amps = np.array([1.0, 0.5, 0.3])
    phases = rng.uniform(0, 2 * np.pi, 3)
    h = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t + p) for k, (a, p) in enumerate(zip(amps, phases)))
    return h / max(rms(h), 1e-12)


def friction_bursts(
    n: int, fs: int, rng: np.random.Generator, rate_per_s: float, level: float
) -> np.ndarray:
    """Stethoscope friction/handling noise: broadband bursts 50-400 ms long at random times.

    `rate_per_s` bursts per second on average; `level` is each burst's RMS (same linear scale as
    the signal it is added to), with +-6 dB spread.
    """
    out = np.zeros(n)
    count = int(rng.poisson(rate_per_s * n / fs))
    for _ in range(count):  # a handful per recording: a loop is clearer than padding to one shape
        length = int(rng.uniform(0.05, 0.4) * fs)
        start = int(rng.integers(0, max(n - length, 1)))
        burst = band_noise(length, 150.0, 0.45 * fs, fs, rng) * edge_taper(length, length // 4)
        # Rubbing is irregular: modulate with slow random amplitude.
        burst *= 0.5 + np.abs(lowpass(rng.standard_normal(length), 30.0, fs, 1)) * 3.0
        out[start : start + length] += burst * level * float(db_to_gain(rng.uniform(-6.0, 6.0)))
    return out


def to_pcm(x: np.ndarray, peak: float, bits: int = 16) -> np.ndarray:
    """Scale so that max |x| = peak (fraction of full scale; > 1 clips) and quantise to integers.

    Returns int16 for 16 bits, int32 (left-aligned, as soundfile expects) for 24 bits.
    """
    scale = peak / max(float(np.max(np.abs(x))), 1e-12)
    y = np.clip(x * scale, -1.0, 1.0 - 2.0 ** -(bits - 1))
    if bits == 16:
        return np.round(y * 32768.0).astype(np.int16)
    return (np.round(y * 2.0 ** (bits - 1)).astype(np.int64) << (32 - bits)).astype(np.int32)


def wav_bytes(pcm: np.ndarray, fs: int, subtype: str = "PCM_16") -> bytes:
    """A plain RIFF/WAVE file (44-byte header) as bytes.

    Written through memory because soundfile's close() syncs a real file to disk (fsync), which
    costs more than synthesising the recording on a busy disk.
    """
    buf = io.BytesIO()
    sf.write(buf, pcm, fs, subtype=subtype, format="WAV")
    return buf.getvalue()


def smooth_curve(n: int, step: int, f) -> np.ndarray:
    """Evaluate a slowly varying curve f(sample indices) every `step` samples and interpolate to n.

    Envelopes change over tens of milliseconds; computing them per sample wastes time.
    """
    coarse = np.arange(0, n + step, step)
    return np.interp(np.arange(n), coarse, f(coarse))
