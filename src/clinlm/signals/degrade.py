"""Degraded recordings: noise at an SNR, clipping, band-limiting, gain, dropouts, resampling.

Used for mDPO's rejected audio (the bench's `rejected_audios` specs) and for robustness
evaluation (`clinlm eval --degrade ...`). Every function takes a mono float signal `x`, shape
(samples,), at `sr` Hz, and returns a new float32 array; units are in the parameter names
(`snr_db`, `cutoff_hz`, `block_s`, ...). Randomness comes only from the `rng` passed in, so the
same seed gives the same degraded recording.

Definitions (all measured on the whole recording at its native sample rate, before the model's
own resampling and band-pass):
- noise: `y = x + n` with `10 log10(mean(x^2) / mean(n^2)) = snr_db` exactly. Kinds: `white`
  (Gaussian), `friction` (stethoscope rubbing/handling: broadband bursts of 50-400 ms above
  150 Hz, about 2 per second), `babble` (six synthetic talkers: glottal pulse trains at 90-250 Hz
  through two vowel formants, with a 3-6 Hz syllable envelope), `ambient` (a room: pink 1/f noise,
  mains hum at 50 or 60 Hz with harmonics, and a ventilation rumble below 120 Hz). All synthesised
  here, nothing is downloaded.
- clipping: `y = clip(x, -L, L)` with `L = level * max|x|` (level 0.25: 12 dB below the peak).
- band-limit: zero-phase Butterworth band-pass `[low_hz, high_hz]` (default 300-3400 Hz, a
  telephone channel); an edge at or above Nyquist, or at 0, leaves that side open.
- low-pass: zero-phase Butterworth low-pass at `cutoff_hz` (a muffled chest piece).
- gain: `y = x * 10^(gain_db / 20)` (no clipping is added: combine with `clipping` for that).
- dropout: `round(fraction * blocks)` randomly chosen blocks of `block_s` seconds set to 0
  (lost packets of a wireless stethoscope).
- resample: down to `rate_hz` and back to `sr` (polyphase, scipy): content above `rate_hz / 2`
  is lost, the length is kept.
- time-crop: one random contiguous segment of `keep_fraction` of the recording (shorter output).

Spec strings (the command line): `name[:key=v1,v2,...[:key=...]]`, defaults for what is left
out; several values (or several keys with several values) expand to one degradation each:

    noise:snr=0,10,20            -> noise:snr=0, noise:snr=10, noise:snr=20 (white noise)
    noise:kind=babble:snr=5      -> babble at 5 dB
    clipping   band-limit   low-pass:cutoff=200   dropout:fraction=0.3   gain:db=-20   resample:rate=1000

The bench writes the same degradations as dicts, `{"degrade": "noise", "snr_db": 0.0}` (see
`clinlm.bench.preference`); `from_dict` reads them. `degraded_copy` writes a degraded recording
as a float WAV file named by its source, parameters and seed: the model's feature code (and its
caches, which key on the file) then treats it as a recording of its own, so clean and degraded
features never mix, and a person can listen to exactly what the model heard.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfiltfilt

from clinlm.signals.audio import load_audio, resample
from clinlm.simulate.sounds import band_noise, bandpass, edge_taper, lowpass, mains_hum, rms

NOISE_KINDS = ("white", "friction", "babble", "ambient")


# ------------------------------------------------------------------------------------ noise


def white_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def friction_noise(n: int, sr: int, rng: np.random.Generator, rate_per_s: float = 2.0) -> np.ndarray:
    """Stethoscope rubbing/handling: broadband bursts (150 Hz up), 50-400 ms, at random times.

    At least one burst, so a short recording still gets noise. Each burst has a slow random
    amplitude (rubbing is irregular) and raised-cosine edges (no clicks).
    """
    out = np.zeros(n)
    count = max(1, int(rng.poisson(rate_per_s * n / sr)))
    for _ in range(count):  # a handful per recording
        length = max(8, min(n, int(rng.uniform(0.05, 0.4) * sr)))
        start = int(rng.integers(0, n - length + 1))
        burst = band_noise(length, 150.0, 0.45 * sr, sr, rng) * edge_taper(length, length // 4)
        burst *= 0.5 + 3.0 * np.abs(lowpass(rng.standard_normal(length), 30.0, sr, 1))
        out[start : start + length] += burst * 10 ** (rng.uniform(-6.0, 6.0) / 20)
    return out


def babble_noise(n: int, sr: int, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    """Speech babble: talkers with a glottal pulse train (90-250 Hz, 1% jitter) through two vowel
    formants (F1 300-800 Hz, F2 900-2500 Hz, kept below Nyquist), each with a 3-6 Hz syllable
    envelope; summed."""
    out = np.zeros(n)
    t = np.arange(n) / sr
    nyq = sr / 2
    for _ in range(talkers):
        f0 = rng.uniform(90.0, 250.0)
        period = sr / f0
        pulses = np.zeros(n)
        pos = rng.uniform(0, period)
        idx = []
        while pos < n:
            idx.append(int(pos))
            pos += period * (1 + 0.01 * rng.standard_normal())
        pulses[idx] = 1.0
        voice = np.zeros(n)
        for lo, hi in ((300.0, 800.0), (900.0, 2500.0)):
            centre = rng.uniform(lo, hi)
            if centre * 1.15 < 0.95 * nyq:
                voice += bandpass(pulses, centre / 1.15, centre * 1.15, sr, order=2)
        syllable = rng.uniform(3.0, 6.0)
        envelope = np.clip(np.sin(2 * np.pi * syllable * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
        out += voice * envelope * 10 ** (rng.uniform(-6.0, 6.0) / 20)
    return out


def ambient_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A room: pink (1/f power) noise, mains hum 10 dB below it, ventilation rumble below 120 Hz."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[1:] /= np.sqrt(f[1:])  # 1/f power
    spec[0] = 0.0
    pink = np.fft.irfft(spec, n)
    pink /= max(rms(pink), 1e-12)
    rumble = lowpass(rng.standard_normal(n), 120.0, sr, order=4)
    rumble /= max(rms(rumble), 1e-12)
    return pink + 10 ** (-10 / 20) * mains_hum(n, sr, rng) + 10 ** (-6 / 20) * rumble


NOISES: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "white": white_noise, "friction": friction_noise, "babble": babble_noise, "ambient": ambient_noise,
}


def power(x: np.ndarray) -> float:
    """Mean square (the power in the SNR definition)."""
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def snr_db(clean: np.ndarray, degraded: np.ndarray) -> float:
    """10 log10(P(clean) / P(degraded - clean)), dB."""
    return 10.0 * np.log10(power(clean) / max(power(degraded - clean), 1e-300))


def add_noise(x: np.ndarray, sr: int, rng: np.random.Generator, snr_db: float = 10.0, kind: str = "white") -> np.ndarray:
    """x + noise of `kind` scaled so that the SNR over the whole recording is `snr_db` dB."""
    if kind not in NOISES:
        raise ValueError(f"unknown noise kind {kind!r}; kinds: {', '.join(NOISES)}")
    p_signal = power(x)
    if p_signal == 0.0:
        raise ValueError("cannot set a signal-to-noise ratio on a silent recording (its power is 0)")
    noise = NOISES[kind](len(x), sr, rng).astype(np.float64)
    noise *= np.sqrt(p_signal / 10 ** (snr_db / 10) / max(power(noise), 1e-300))
    return (x + noise).astype(np.float32)


# ------------------------------------------------------------------------------------ channel


def clip(x: np.ndarray, sr: int, rng: np.random.Generator, level: float = 0.25) -> np.ndarray:
    """Hard clipping at `level` x the recording's peak amplitude (0 < level <= 1)."""
    if not 0 < level <= 1:
        raise ValueError(f"clipping level must be in (0, 1] (a fraction of the peak), not {level}")
    limit = level * float(np.max(np.abs(x))) if x.size else 0.0
    return np.clip(x, -limit, limit).astype(np.float32)


def _filtfilt(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    if len(x) <= 3 * (2 * len(sos) + 1):  # sosfiltfilt's edge padding needs a few samples
        raise ValueError(f"recording too short to filter ({len(x)} samples)")
    return sosfiltfilt(sos, x).astype(np.float32)


def band_limit(x: np.ndarray, sr: int, rng: np.random.Generator, low_hz: float = 300.0, high_hz: float = 3400.0,
               order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth band-pass [low_hz, high_hz]; an edge <= 0 or >= Nyquist is left open."""
    nyq = sr / 2
    has_low, has_high = low_hz > 0, high_hz < nyq
    if has_low and has_high and not low_hz < high_hz:
        raise ValueError(f"band-limit needs low < high, got {low_hz} and {high_hz} Hz")
    if has_low and has_high:
        sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=sr, output="sos")
    elif has_low:
        if low_hz >= nyq:
            raise ValueError(f"band-limit low edge {low_hz} Hz is at or above Nyquist ({nyq:g} Hz): nothing would be left")
        sos = butter(order, low_hz, btype="highpass", fs=sr, output="sos")
    elif has_high:
        sos = butter(order, high_hz, btype="lowpass", fs=sr, output="sos")
    else:
        return x.astype(np.float32)
    return _filtfilt(x, sos)


def low_pass(x: np.ndarray, sr: int, rng: np.random.Generator, cutoff_hz: float = 400.0, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth low-pass at cutoff_hz (no-op when the cutoff is at or above Nyquist)."""
    if cutoff_hz <= 0:
        raise ValueError(f"low-pass cutoff must be > 0 Hz, not {cutoff_hz}")
    return band_limit(x, sr, rng, low_hz=0.0, high_hz=cutoff_hz, order=order)


def gain(x: np.ndarray, sr: int, rng: np.random.Generator, gain_db: float = -20.0) -> np.ndarray:
    """Amplitude x 10^(gain_db / 20)."""
    return (x * 10 ** (gain_db / 20)).astype(np.float32)


def dropout(x: np.ndarray, sr: int, rng: np.random.Generator, fraction: float = 0.2, block_s: float = 0.1) -> np.ndarray:
    """Silence round(fraction x blocks) randomly chosen blocks of block_s seconds."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"dropout fraction must be in [0, 1], not {fraction}")
    block = max(1, int(round(block_s * sr)))
    n_blocks = -(-len(x) // block)
    y = np.array(x, dtype=np.float32)
    for b in rng.choice(n_blocks, size=int(round(fraction * n_blocks)), replace=False):
        y[b * block : (b + 1) * block] = 0.0
    return y


def resample_through(x: np.ndarray, sr: int, rng: np.random.Generator, rate_hz: float = 2000.0) -> np.ndarray:
    """Down to rate_hz and back up to sr: content above rate_hz / 2 is lost; same length."""
    if rate_hz <= 0:
        raise ValueError(f"resample rate must be > 0 Hz, not {rate_hz}")
    if int(rate_hz) >= sr:
        return x.astype(np.float32)
    y = resample(resample(np.asarray(x, np.float32), sr, int(rate_hz)), int(rate_hz), sr)
    return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)].astype(np.float32)


def time_crop(x: np.ndarray, sr: int, rng: np.random.Generator, keep_fraction: float = 0.5) -> np.ndarray:
    """One random contiguous segment of keep_fraction of the recording."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"time-crop keep fraction must be in (0, 1], not {keep_fraction}")
    keep = max(1, int(round(keep_fraction * len(x))))
    start = int(rng.integers(0, len(x) - keep + 1))
    return np.array(x[start : start + keep], dtype=np.float32)


# ------------------------------------------------------------------------------------ specs

# name -> (function, defaults in the function's units). Parameter names carry their units.
DEGRADATIONS: dict[str, tuple[Callable[..., np.ndarray], dict[str, Any]]] = {
    "noise": (add_noise, {"snr_db": 10.0, "kind": "white"}),
    "clipping": (clip, {"level": 0.25}),
    "band-limit": (band_limit, {"low_hz": 300.0, "high_hz": 3400.0}),
    "low-pass": (low_pass, {"cutoff_hz": 400.0}),
    "gain": (gain, {"gain_db": -20.0}),
    "dropout": (dropout, {"fraction": 0.2, "block_s": 0.1}),
    "resample": (resample_through, {"rate_hz": 2000.0}),
    "time-crop": (time_crop, {"keep_fraction": 0.5}),
}
# short names used in spec strings -> parameter names
ALIASES = {"snr": "snr_db", "cutoff": "cutoff_hz", "low": "low_hz", "high": "high_hz", "db": "gain_db",
           "rate": "rate_hz", "keep": "keep_fraction", "block": "block_s"}
SHORT = {v: k for k, v in ALIASES.items()}


@dataclass
class Degradation:
    """One degradation with every parameter resolved; `label` names it in tables and plots."""

    name: str
    params: dict[str, Any]
    label: str = ""
    explicit: tuple[str, ...] = field(default=())  # parameters the spec gave (shown in the label)

    def __post_init__(self) -> None:
        if not self.label:
            shown = [f"{SHORT.get(k, k)}={_fmt(self.params[k])}" for k in self.explicit]
            self.label = ":".join([self.name, *shown])

    def apply(self, x: np.ndarray, sr: int, seed: int) -> np.ndarray:
        fn, _ = DEGRADATIONS[self.name]
        return fn(np.asarray(x, dtype=np.float32), int(sr), np.random.default_rng(seed), **self.params)

    def as_dict(self) -> dict[str, Any]:
        """The bench's dict form, {"degrade": name, **params}."""
        return {"degrade": self.name, **self.params}


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}")
    return key


def _value(name: str, key: str, raw: Any, default: Any) -> Any:
    if isinstance(default, str):
        value = str(raw).strip()
        if key == "kind" and value not in NOISES:
            raise ValueError(f"{name}: unknown noise kind {value!r}; kinds: {', '.join(NOISES)}")
        return value
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {SHORT.get(key, key)}={raw!r} is not a number") from None


def make(name: str, explicit: Mapping[str, Any] | None = None) -> Degradation:
    """A Degradation from a name and some parameters (short or full names); the rest default."""
    name = _name(name)
    defaults = DEGRADATIONS[name][1]
    params = dict(defaults)
    given = []
    for k, v in (explicit or {}).items():
        key = ALIASES.get(k, k)
        if key not in defaults:
            known = ", ".join(f"{SHORT.get(p, p)}" for p in defaults)
            raise ValueError(f"{name}: unknown parameter {k!r}; known: {known}")
        params[key] = _value(name, key, v, defaults[key])
        given.append(key)
    return Degradation(name, params, explicit=tuple(given))


def parse_spec(text: str) -> list[Degradation]:
    """`noise:snr=0,10,20` -> three Degradations (see the module docstring for the grammar)."""
    if not isinstance(text, str):  # YAML reads [noise:snr=0,10] as ["noise:snr=0", 10]
        raise ValueError(f"degradation spec {text!r} is not text: quote specs that hold commas, "
                         "e.g. \"dpo.augment=['noise:snr=0,10,20']\" on the command line")
    parts = [p for p in text.strip().split(":") if p.strip()]
    if not parts:
        raise ValueError("empty degradation spec; e.g. noise:snr=0,10,20, clipping, band-limit, dropout")
    name = _name(parts[0])
    keys, choices = [], []
    for part in parts[1:]:
        key, sep, values = part.partition("=")
        if not sep or not values.strip():
            raise ValueError(f"{text!r}: {part!r} must look like key=value or key=v1,v2 (e.g. noise:snr=0,10,20)")
        keys.append(key.strip())
        choices.append([v.strip() for v in values.split(",") if v.strip()])
    return [make(name, dict(zip(keys, combo))) for combo in itertools.product(*choices)]


def parse_specs(texts: Iterable[str]) -> list[Degradation]:
    """Every spec string expanded, in order; a label given twice is an error."""
    out: list[Degradation] = []
    for text in texts:
        out.extend(parse_spec(text))
    labels = [d.label for d in out]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"degradation given more than once: {', '.join(dupes)}")
    return out


def from_dict(spec: Mapping[str, Any]) -> Degradation:
    """The bench's dict form ({"degrade": "noise", "snr_db": 0.0, "path": ...}) -> Degradation."""
    if "degrade" not in spec:
        raise ValueError(f"a degradation spec needs a 'degrade' name, got {dict(spec)!r}")
    return make(str(spec["degrade"]), {k: v for k, v in spec.items() if k not in ("degrade", "path")})


# ------------------------------------------------------------------------------------ files


def seed_for(*parts: Any) -> int:
    """A stable 63-bit seed from any JSON-able parts (e.g. base seed, file path, degradation name)."""
    digest = hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def degraded_copy(path: str | Path, degradation: Degradation, folder: str | Path, seed: int = 0) -> Path:
    """Write `path` degraded as a float32 WAV in `folder` (once; reused when it exists); its path.

    The noise realisation depends on (seed, source file, degradation name), not on the level, so
    noise:snr=0 and noise:snr=20 of one recording hold the same noise at different levels.
    """
    path = Path(path).resolve()
    key = seed_for(seed, path, degradation.name, sorted(degradation.params.items()))
    out = Path(folder) / f"{path.stem}.{key:016x}.wav"
    if out.exists():
        return out
    x, sr = load_audio(path)
    y = degradation.apply(x, sr, seed_for(seed, path, degradation.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    sf.write(tmp, y, sr, subtype="FLOAT", format="WAV")  # float: SNR 0 dB noise can exceed full scale
    tmp.replace(out)
    return out
