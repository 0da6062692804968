"""Lung sounds written in the ICBHI 2017 Respiratory Sound Database layout.

A recording (15-18 s, 4 or 8 kHz by device, 16 or 24 bit) is a sequence of breathing cycles, each an
inspiration (Ti = inspiration fraction x cycle length, 2-5 s cycles) and an expiration:

- Normal breath sound: noise shaped like vesicular sound (band 100-1000 Hz with a falling slope,
  louder and longer on inspiration); at the trachea (Tc) a flatter, louder bronchial sound.
- Fine crackles: ~5 ms explosive transients (damped 400-900 Hz oscillation), late inspiratory.
- Coarse crackles: ~15-25 ms, 120-300 Hz, early inspiratory and sometimes expiratory.
- Wheezes: continuous tones (100-1000 Hz fundamental with 2 harmonics), gliding pitch and a
  slight vibrato, 150-800 ms, mostly expiratory; COPD wheezes are sometimes polyphonic.
- Heart sounds bleed in underneath, plus sensor noise, mains hum and friction bursts.

The cycle `.txt` (start, end, crackles 0/1, wheezes 0/1) is written from what was actually
placed: a cycle is marked with a crackle exactly when at least one crackle lies inside it.
Adventitious sounds are placed only inside annotated cycles (never in the partial cycles at
the ends of the recording), so the recording-level label (any cycle) is exact too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinlm.simulate.heart import beat_schedule, heart_sounds
from clinlm.simulate.patients import LungPatient, LungRecordingPlan
from clinlm.simulate.sounds import (
    band_noise,
    db_to_gain,
    edge_taper,
    friction_bursts,
    lowpass,
    mains_hum,
    overlap_add,
    rms,
    smooth_curve,
    to_pcm,
    wav_bytes,
)

DURATION_S = (15.0, 18.0)


@dataclass
class Cycles:
    """Breathing cycles in samples, arrays (cycles,); cycle k = [start, end), inspiration [start, insp_end)."""

    start: np.ndarray
    insp_end: np.ndarray
    end: np.ndarray
    annotated: np.ndarray  # bool: the cycle lies wholly inside the recording


def cycle_schedule(n: int, fs: int, period_s: float, insp_fraction: float, rng: np.random.Generator) -> Cycles:
    """Back-to-back cycles covering [0, n); boundaries on a 1 ms grid (ICBHI writes 3 decimals)."""
    count = int(np.ceil(n / fs / (0.6 * period_s))) + 2
    lengths_ms = np.round(1000 * period_s * np.clip(1.0 + 0.12 * rng.standard_normal(count), 0.7, 1.4))
    first_ms = round(1000 * rng.uniform(0.03, 0.8))  # the recording starts during a cycle
    starts_ms = first_ms - lengths_ms[0] + np.concatenate([[0.0], np.cumsum(lengths_ms[:-1])])
    insp_ms = np.round(lengths_ms * insp_fraction * np.clip(1.0 + 0.06 * rng.standard_normal(count), 0.8, 1.2))
    to_samples = fs / 1000.0
    start = np.round(starts_ms * to_samples).astype(np.int64)
    end = np.round((starts_ms + lengths_ms) * to_samples).astype(np.int64)
    return Cycles(
        start=start,
        insp_end=np.round((starts_ms + insp_ms) * to_samples).astype(np.int64),
        end=end,
        annotated=(start >= 0) & (end <= n),
    )


def breath_envelope(cycles: Cycles, n: int, fs: int, expiration_gain: float) -> np.ndarray:
    """Breath-sound amplitude (n,): rises and falls over inspiration, weaker over expiration."""

    def envelope(idx: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(cycles.start, idx, side="right") - 1, 0, None)
        s, m, e = cycles.start[k], cycles.insp_end[k], cycles.end[k]
        insp = idx < m
        u = np.where(insp, (idx - s) / np.maximum(m - s, 1), (idx - m) / np.maximum(e - m, 1))
        u = np.clip(u, 0.0, 1.0)
        exp_shape = expiration_gain * np.sin(np.pi * np.clip(u / 0.7, 0.0, 1.0)) ** 0.8  # fades before the cycle ends
        return np.where(insp, np.sin(np.pi * u) ** 0.8, exp_shape) + 0.03

    return smooth_curve(n, max(1, int(0.005 * fs)), envelope)  # 5 ms resolution


def breath_sound(n: int, fs: int, tracheal: bool, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS breath-sound noise: vesicular (steep fall above ~300 Hz) or tracheal (flat to 1.5 kHz)."""
    if tracheal:
        return band_noise(n, 100.0, 1500.0, fs, rng)
    x = lowpass(band_noise(n, 100.0, 1000.0, fs, rng), 300.0, fs, 1)
    return x / rms(x)


def crackle_waves(kind: str, count: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """(count, L) crackles, peak ~1: sharp initial deflection then a damped oscillation."""
    if kind == "fine":
        freq = rng.uniform(400.0, min(900.0, 0.3 * fs), (count, 1))  # Hz
        tau = rng.uniform(0.0008, 0.0013, (count, 1))  # s -> ~5 ms audible
    else:
        freq = rng.uniform(120.0, 300.0, (count, 1))
        tau = rng.uniform(0.003, 0.005, (count, 1))  # -> ~15-25 ms
    length = int(np.ceil(6 * tau.max() * fs))
    t = np.arange(length)[None, :] / fs
    polarity = rng.choice([-1.0, 1.0], (count, 1))
    w = polarity * np.sin(2 * np.pi * freq * t) * np.exp(-t / tau)
    return w * edge_taper(length, max(2, length // 10))[None, :]


def wheeze_wave(n_samples: int, fs: int, rng: np.random.Generator, f0_hz: float) -> np.ndarray:
    """A wheeze of n_samples: gliding fundamental f0_hz, 2 harmonics, 6 Hz vibrato, unit RMS."""
    t = np.arange(n_samples) / fs
    u = t / max(t[-1], 1e-9)
    glide = rng.uniform(-0.3, 0.3)
    freq = f0_hz * (1.0 + glide * u) * (1.0 + 0.02 * np.sin(2 * np.pi * rng.uniform(4.0, 8.0) * t))
    phase = 2 * np.pi * np.cumsum(freq) / fs
    x = np.zeros(n_samples)
    for h, a in ((1, 1.0), (2, 0.3), (3, 0.1)):
        if h * f0_hz * (1 + abs(glide)) * 1.02 < 0.45 * fs:  # keep harmonics below Nyquist
            x += a * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    x *= edge_taper(n_samples, int(0.025 * fs))
    return x / rms(x)


def synthesize_recording(
    patient: LungPatient, plan: LungRecordingPlan, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int, int, int]], dict]:
    """One recording: (PCM ints (n,), cycle rows (start ms, end ms, crackle, wheeze), ground truth)."""
    fs = plan.sample_rate
    n = int(round(rng.uniform(*DURATION_S) * fs))
    period = patient.breath_period_s
    cycles = cycle_schedule(n, fs, period, patient.inspiration_fraction, rng)
    tracheal = plan.site == "Tc"
    env = breath_envelope(cycles, n, fs, expiration_gain=0.9 if tracheal else 0.35)
    x = breath_sound(n, fs, tracheal, rng) * env / rms(env)  # breath sound at unit RMS
    ref = float(np.sqrt(np.mean(np.square(x[env > 0.8 * env.max()]))))  # level at peak inspiration

    truth = {"fine_crackles": 0, "coarse_crackles": 0, "wheezes": 0, "wheeze_f0_hz": []}
    rows = []
    for k in np.flatnonzero(cycles.annotated):
        s, m, e = int(cycles.start[k]), int(cycles.insp_end[k]), int(cycles.end[k])
        crackle = wheeze = 0
        if rng.random() < plan.crackle_prob:
            kind = "fine" if rng.random() < patient.fine_fraction else "coarse"
            count = int(rng.integers(4, 13) if kind == "fine" else rng.integers(3, 9))
            waves = crackle_waves(kind, count, fs, rng)
            if kind == "fine":  # late inspiratory
                lo, hi = s + 0.45 * (m - s), s + 0.95 * (m - s)
            elif rng.random() < 0.7:  # coarse: early inspiratory
                lo, hi = s + 0.02 * (m - s), s + 0.45 * (m - s)
            else:  # ... or early expiratory
                lo, hi = m, m + 0.4 * (e - m)
            hi = min(hi, e - waves.shape[1] - 1)  # the whole crackle stays inside the cycle
            if hi > lo:
                starts = np.sort(rng.integers(int(lo), int(hi), count))
                # Peak level re the breath sound's RMS at peak inspiration: crackles are explosive,
                # well above the noise's own peaks (~3-4x RMS); coarse ones are louder.
                lo_db, hi_db = (14.0, 22.0) if kind == "fine" else (16.0, 24.0)
                if tracheal:  # heard (and annotated) over loud broadband bronchial sound only when stronger
                    lo_db, hi_db = lo_db + 6.0, hi_db + 6.0
                amps = ref * db_to_gain(rng.uniform(lo_db, hi_db, count))[:, None]
                overlap_add(x, starts, amps * waves)
                crackle = 1
                truth[f"{kind}_crackles"] += count
        if rng.random() < plan.wheeze_prob:
            n_wheezes = 2 if patient.diagnosis == "COPD" and rng.random() < 0.3 else 1  # polyphonic
            expiratory = rng.random() < 0.8
            a, b = (m, e) if expiratory else (s, m)
            if b - a < 0.25 * fs:  # phase too short for a >100 ms wheeze: use the other one
                a, b = (s, m) if expiratory else (m, e)
            if b - a >= 0.25 * fs:
                for _ in range(n_wheezes):
                    w_len = int(min(rng.uniform(0.15, 0.8) * fs, 0.85 * (b - a)))
                    w_start = int(rng.integers(a, b - w_len))
                    f0 = float(rng.uniform(150.0, min(800.0, 0.2 * fs)))
                    level = ref * float(db_to_gain(rng.uniform(-3.0, 8.0)))  # RMS re breath sound
                    x[w_start : w_start + w_len] += level * wheeze_wave(w_len, fs, rng, f0)
                    truth["wheeze_f0_hz"].append(round(f0, 1))
                truth["wheezes"] += n_wheezes
                wheeze = 1
        rows.append((round(s * 1000 / fs), round(e * 1000 / fs), crackle, wheeze))

    # Heart sounds underneath (loudest on the anterior left chest), then the recording chain.
    beats = beat_schedule(patient.heart_rate_bpm, 1.0 / period, rng.uniform(0, 2 * np.pi), n, fs, rng)
    hs, hs_ref = heart_sounds(beats, "MV", n, fs, False, False, rng)
    heart_db = rng.uniform(-10.0, -4.0) if plan.site in ("Al", "Ll") else rng.uniform(-20.0, -12.0)
    x += hs * (ref * float(db_to_gain(heart_db)) / hs_ref)
    x += ref * float(db_to_gain(-40.0)) * rng.standard_normal(n)
    if rng.random() < 0.2:
        x += ref * float(db_to_gain(rng.uniform(-34.0, -26.0))) * mains_hum(n, fs, rng)
    x += friction_bursts(n, fs, rng, rate_per_s=0.01, level=ref)
    bits = 24 if plan.subtype == "PCM_24" else 16
    pcm = to_pcm(x * edge_taper(n, int(0.005 * fs)), rng.uniform(0.3, 0.8), bits)
    return pcm, rows, truth


# ------------------------------------------------------------------------- ICBHI layout writers

def _ms(v: int) -> str:
    """Milliseconds as ICBHI writes seconds: '0.036', '3.25', '14'."""
    return f"{v / 1000:.3f}".rstrip("0").rstrip(".")


def cycles_text(rows: list[tuple[int, int, int, int]]) -> str:
    return "".join(f"{_ms(a)}\t{_ms(b)}\t{c}\t{w}\n" for a, b, c, w in rows)


def _num(v: float | None) -> str:
    return "NA" if v is None else f"{v:g}"


def demographic_line(p: LungPatient) -> str:
    """`pid age sex adult-BMI child-weight child-height`, NA where not applicable."""
    return " ".join([p.patient_id, _num(p.age_years), p.sex, _num(p.bmi), _num(p.weight_kg), _num(p.height_cm)])


def write_patient(folder: Path, patient: LungPatient, rng: np.random.Generator) -> dict:
    """Write one patient's recordings (.wav + cycle .txt) into audio_and_txt_files/."""
    truths = []
    for plan in patient.recordings:
        pcm, rows, truth = synthesize_recording(patient, plan, rng)
        (folder / f"{plan.name}.wav").write_bytes(wav_bytes(pcm, plan.sample_rate, plan.subtype))
        (folder / f"{plan.name}.txt").write_bytes(cycles_text(rows).encode())
        truths.append(
            {
                "recording": plan.name,
                "patient_id": patient.patient_id,
                "diagnosis": patient.diagnosis,
                "cycles": len(rows),
                "crackle_cycles": sum(r[2] for r in rows),
                "wheeze_cycles": sum(r[3] for r in rows),
                "fine_crackles": truth["fine_crackles"],
                "coarse_crackles": truth["coarse_crackles"],
                "wheezes": truth["wheezes"],
                "wheeze_f0_hz": " ".join(map(str, truth["wheeze_f0_hz"])),
                "sample_rate": plan.sample_rate,
            }
        )
    return {
        "diagnosis": f"{patient.patient_id},{patient.diagnosis}",
        "demographics": demographic_line(patient),
        "truth": truths,
        "recordings": len(patient.recordings),
    }
