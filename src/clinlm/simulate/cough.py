"""Coughs written in the COUGHVID layout: `<uuid>.webm` or `<uuid>.ogg` (Opus, 48 kHz) + `<uuid>.json`.

A cough has three phases (Korpas et al.): an explosive phase (~30-50 ms broadband burst with a
sharp onset), an intermediate phase (100-400 ms of turbulent noise shaped by vocal-tract
resonances, decaying) and sometimes a voiced phase (glottal closure: a short harmonic sound).
A file holds 1-4 coughs (or none: COUGHVID has many recordings without a cough, with a low
`cough_detected` score) over room noise.

The status changes the sound subtly, so a classifier has something to find but not trivially:
- "healthy": moderate intermediate phase, often voiced;
- "symptomatic": wet coughs: longer, more low-frequency energy and bubbling transients;
- "COVID-19": dry coughs: shorter, brighter (less high-frequency roll-off), rarely voiced.

The JSON sidecar holds COUGHVID's fields as strings (`datetime`, `cough_detected`, `latitude`,
`longitude`, `age`, `gender`, `respiratory_condition`, `fever_muscle_pain`, `status`); as in
COUGHVID the uuid is the file name, and a participant who gave no metadata has only
`datetime` and `cough_detected`.

Encoding goes through PyAV (FFmpeg's libopus and muxers) with FFmpeg's bit-exact flags, so
that the same seed writes byte-identical files on the same machine and library versions.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from scipy import signal

from clinlm.simulate.lung import crackle_waves
from clinlm.simulate.patients import CoughSubject
from clinlm.simulate.sounds import band_noise, db_to_gain, edge_taper, highpass, lowpass, overlap_add, rms

FS_HZ = 48000  # Opus' native rate, as browsers record
BITRATE_BPS = 32000

STATUS_SOUND = {  # per true status: intermediate phase length (s), P(voiced), roll-off (Hz), wetness 0-1
    "healthy": {"intermediate_s": (0.14, 0.30), "voiced": 0.6, "rolloff_hz": 3500.0, "wet": 0.15},
    "symptomatic": {"intermediate_s": (0.20, 0.40), "voiced": 0.5, "rolloff_hz": 2500.0, "wet": 0.7},
    "COVID-19": {"intermediate_s": (0.10, 0.24), "voiced": 0.3, "rolloff_hz": 5500.0, "wet": 0.1},
}
FORMANTS_HZ = ((400.0, 800.0, 250.0, 1.0), (1100.0, 1800.0, 350.0, 0.6), (2300.0, 3000.0, 450.0, 0.35))


def cough_wave(status: str, male: bool, fs: int, rng: np.random.Generator) -> np.ndarray:
    """One cough (samples,), peak ~1."""
    sound = STATUS_SOUND[status]
    # Explosive phase: broadband burst, 3 ms attack, ~12 ms decay.
    n_exp = int(rng.uniform(0.03, 0.05) * fs)
    t = np.arange(n_exp) / fs
    burst = band_noise(n_exp, 150.0, 0.3 * fs, fs, rng) * np.minimum(t / 0.003, 1.0) * np.exp(-t / 0.012)

    # Intermediate phase: noise through three vocal-tract resonances, decaying, with a status roll-off.
    n_int = int(rng.uniform(*sound["intermediate_s"]) * fs)
    t = np.arange(n_int) / fs
    noise = np.zeros(n_int)
    for lo, hi, bw, weight in FORMANTS_HZ:
        fc = rng.uniform(lo, hi)
        noise += weight * band_noise(n_int, fc - bw / 2, fc + bw / 2, fs, rng)
    noise = lowpass(noise, sound["rolloff_hz"], fs, 1)
    wet = sound["wet"] * rng.uniform(0.5, 1.5)
    noise = noise / rms(noise) + wet * 0.8 * band_noise(n_int, 80.0, 400.0, fs, rng)  # mucus rattle
    inter = 0.5 * noise / rms(noise) * np.exp(-t / (n_int / fs / 2.5)) * edge_taper(n_int, int(0.005 * fs))
    clicks = int(rng.poisson(12 * wet))
    if clicks:  # bubbling: coarse-crackle-like transients
        overlap_add(inter, rng.integers(0, max(n_int - int(0.03 * fs), 1), clicks),
                    0.5 * crackle_waves("coarse", clicks, fs, rng))

    parts = [burst / max(np.max(np.abs(burst)), 1e-12), inter]
    if rng.random() < sound["voiced"]:  # voiced phase: glottal buzz, harmonics of f0
        n_v = int(rng.uniform(0.06, 0.15) * fs)
        t = np.arange(n_v) / fs
        f0 = rng.uniform(100.0, 150.0) if male else rng.uniform(180.0, 260.0)
        f = f0 * (1.0 - 0.15 * t / t[-1])  # pitch falls as the cough ends
        phase = 2 * np.pi * np.cumsum(f) / fs
        buzz = lowpass(signal.sawtooth(phase), 11.0 * f0, fs, 4)  # ~11 harmonics falling as 1/h
        parts.append(0.3 * buzz / rms(buzz) * np.exp(-t / 0.05) * edge_taper(n_v, int(0.005 * fs)))
    return np.concatenate(parts)


def speech_like(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Background talk for recordings without a cough: voiced buzz with syllable-rate (4 Hz) modulation."""
    t = np.arange(n) / fs
    f0 = rng.uniform(100.0, 220.0) * (1.0 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / fs
    buzz = signal.sawtooth(phase)  # harmonics falling as 1/h, low-passed below
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t), 0.0, None) ** 2
    return lowpass(buzz, 2500.0, fs, 2) * syllables


def synthesize_recording(subject: CoughSubject, rng: np.random.Generator, fs: int = FS_HZ) -> np.ndarray:
    """float32 (samples,) in [-1, 1]: the subject's coughs over room noise."""
    male = subject.gender == "male" if subject.gender else bool(rng.random() < 0.6)
    coughs = [cough_wave(subject.true_status, male, fs, rng) for _ in range(subject.n_coughs)]
    if coughs:
        onsets, t = [], rng.uniform(0.2, 0.6)
        for c in coughs:
            onsets.append(int(t * fs))
            t += c.size / fs + rng.uniform(0.3, 1.0)  # coughs in a bout ~0.3-1 s apart
        n = int(max(t + rng.uniform(0.1, 0.6), rng.uniform(1.5, 2.5)) * fs)  # files last >= 1.5 s
        x = np.zeros(n)
        for c, o in zip(coughs, onsets):
            x[o : o + c.size] += c * float(db_to_gain(rng.uniform(-4.0, 0.0)))
    else:
        n = int(rng.uniform(1.5, 4.0) * fs)
        x = 0.3 * speech_like(n, fs, rng)
    room = lowpass(rng.standard_normal(n), 1000.0, fs, 1)  # pinkish room noise
    x += float(db_to_gain(rng.uniform(-40.0, -28.0))) * room / rms(room)
    x = highpass(x, 80.0, fs, 2)  # phone microphones roll off the lows
    x *= edge_taper(n, int(0.01 * fs))
    return (x * rng.uniform(0.3, 0.9) / np.max(np.abs(x))).astype(np.float32)


def write_opus(path: Path, x: np.ndarray, fs: int, container: str) -> None:
    """Encode mono float32 `x` as Opus in a webm or ogg container, bit-exactly (no random ids)."""
    bitexact_fmt = av.container.Flags.bitexact.value
    bitexact_codec = av.codec.context.Flags.bitexact.value
    with av.open(str(path), "w", format=container, options={"fflags": "+bitexact"}) as out:
        out.flags = out.flags | bitexact_fmt  # also no random Matroska/Ogg serial numbers
        # Complexity 3 of 10: a quarter of the default's encoding time; coughs sound the same.
        stream = out.add_stream("libopus", rate=fs, options={"compression_level": "3"})
        stream.layout = "mono"
        stream.bit_rate = BITRATE_BPS
        stream.codec_context.flags = stream.codec_context.flags | bitexact_codec
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = fs
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):  # flush
            out.mux(packet)


def metadata_json(s: CoughSubject) -> str:
    """COUGHVID's sidecar: every value a string; fields the participant did not give are absent."""
    fields: dict[str, str | None] = {
        "datetime": s.datetime_iso,
        "cough_detected": f"{s.cough_detected:.4f}",
        "latitude": None if s.latitude is None else f"{s.latitude}",
        "longitude": None if s.longitude is None else f"{s.longitude}",
        "age": None if s.age is None else str(s.age),
        "gender": s.gender,
        "respiratory_condition": None if s.respiratory_condition is None else str(s.respiratory_condition),
        "fever_muscle_pain": None if s.fever_muscle_pain is None else str(s.fever_muscle_pain),
        "status": s.status,
    }
    return json.dumps({k: v for k, v in fields.items() if v is not None})


def write_subject(folder: Path, subject: CoughSubject, rng: np.random.Generator) -> dict:
    """Write <uuid>.<webm|ogg> then <uuid>.json (the sidecar names a file that already exists)."""
    x = synthesize_recording(subject, rng)
    write_opus(folder / f"{subject.uuid}.{subject.container}", x, FS_HZ, subject.container)
    (folder / f"{subject.uuid}.json").write_bytes(metadata_json(subject).encode())
    return {
        "truth": {
            "uuid": subject.uuid,
            "true_status": subject.true_status,
            "reported_status": subject.status or "",
            "coughs": subject.n_coughs,
            "container": subject.container,
            "duration_s": round(x.size / FS_HZ, 3),
        },
        "recordings": 1,
    }
