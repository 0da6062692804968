"""Heart sounds written in the CirCor DigiScope (PhysioNet 2022) layout.

One recording is built from a beat schedule (seconds, then samples at 4 kHz):

    S1 (~100 ms: M1 + T1) ─ systole ─ S2 (A2 + P2, split widens on inspiration) ─ diastole ─ next S1

- Heart rate with respiratory sinus arrhythmia (RR shortens on inspiration) and 2% beat jitter;
  systole (S1 onset to S2 onset) = 0.33 * sqrt(RR) s, ~0.3 s at 70 bpm, shorter at high rates.
- S1, S2, S3, S4 are damped low-frequency oscillations (`sounds.gamma_transient`): S1 40-110 Hz,
  S2 70-150 Hz and shorter, S3 (early diastole) and S4 (just before S1) 20-45 Hz and soft.
- A murmur is band-limited noise (or a harmonic tone for "Musical") shaped by an envelope inside
  the systolic or diastolic interval of every beat: timing selects the part of the interval, shape
  the envelope (crescendo, decrescendo, diamond, plateau), pitch the band, grade the loudness
  relative to S1 (`patients.GRADE_DB`), and the site the attenuation.
- Noise: breathing (band-passed, following the breath), mains hum, stethoscope friction bursts,
  sensor noise, and occasionally clipping; "Unknown" patients get loud noise everywhere.

Every sound is confined to the interval the `.tsv` gives it: S1 and S2 waves are truncated (with
a short taper) at the end of their annotated windows, murmurs stay inside systole or diastole,
S3/S4 inside diastole. So the segmentation matches the audio exactly.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinlm.simulate.patients import HeartPatient, Murmur
from clinlm.simulate.sounds import (
    band_noise,
    db_to_gain,
    edge_taper,
    friction_bursts,
    gamma_transient,
    lowpass,
    mains_hum,
    overlap_add,
    rms,
    smooth_curve,
    to_pcm,
    wav_bytes,
)

FS_HZ = 4000  # CirCor sample rate
DURATION_S = (8.0, 12.0)  # per recording (real CirCor: 5-65 s; short keeps the data small)

# Loudness of S1 and S2 at each site relative to S1 at the apex (MV): S1 is loudest at the apex,
# S2 at the base (aortic and pulmonary areas).
S1_SITE_GAIN = {"MV": 1.0, "TV": 0.9, "AV": 0.55, "PV": 0.5}
S2_SITE_GAIN = {"AV": 0.8, "PV": 0.75, "TV": 0.55, "MV": 0.5}
P2_SITE_GAIN = {"PV": 0.8, "AV": 0.55, "TV": 0.5, "MV": 0.4}  # P2 relative to A2

PITCH_BAND_HZ = {"Low": (40.0, 180.0), "Medium": (80.0, 320.0), "High": (150.0, 600.0)}
MUSICAL_F0_HZ = {"Low": 90.0, "Medium": 140.0, "High": 220.0}
TIMING_FRACTION = {  # part of the systolic/diastolic interval the murmur occupies
    "Holosystolic": (0.0, 1.0),
    "Early-systolic": (0.0, 0.5),
    "Mid-systolic": (0.15, 0.85),
    "Late-systolic": (0.5, 1.0),
    "Holodiastolic": (0.0, 1.0),
    "Early-diastolic": (0.0, 0.55),
    "Mid-diastolic": (0.25, 0.75),
}
STATE_UNANNOTATED, STATE_S1, STATE_SYSTOLE, STATE_S2, STATE_DIASTOLE = 0, 1, 2, 3, 4


@dataclass
class Beats:
    """Beat timing in samples; arrays of shape (beats,). Beat k spans s1_on[k] .. next_on[k]."""

    s1_on: np.ndarray
    s1_off: np.ndarray
    s2_on: np.ndarray
    s2_off: np.ndarray
    next_on: np.ndarray
    t1_delay: np.ndarray  # M1 -> T1 delay, samples
    split: np.ndarray  # A2 -> P2 split, samples
    insp: np.ndarray  # inspiratory drive 0..1 at each beat


def inspiration(t_s: np.ndarray, resp_rate_hz: float, phase: float) -> np.ndarray:
    """Inspiratory drive 0 (end expiration) .. 1 (peak inspiration) at times t_s."""
    return 0.5 * (1.0 + np.sin(2.0 * np.pi * resp_rate_hz * t_s + phase))


def beat_schedule(
    hr_bpm: float, resp_rate_hz: float, resp_phase: float, n: int, fs: int, rng: np.random.Generator
) -> Beats:
    """Beats covering [0, n) samples, the first starting before 0 so a recording starts mid-cycle."""
    rr0 = 60.0 / hr_bpm  # s
    rsa = 0.06 if hr_bpm > 90 else 0.04  # respiratory sinus arrhythmia, fraction of RR
    count = int(np.ceil(n / fs / (rr0 * (1.0 - rsa - 0.08)))) + 2
    nominal = -rng.uniform(0.0, rr0) + rr0 * np.arange(count)
    insp = inspiration(nominal, resp_rate_hz, resp_phase)
    rr = rr0 * (1.0 - rsa * (2.0 * insp - 1.0) + 0.02 * rng.standard_normal(count))
    onsets_s = nominal[0] + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    systole_s = 0.33 * np.sqrt(rr) * (1.0 + 0.02 * rng.standard_normal(count))

    t1_delay = rng.uniform(0.02, 0.03) + 0.002 * rng.standard_normal(count)  # M1 -> T1, s
    s1_len = t1_delay + rng.uniform(0.075, 0.09)  # S1 window ~95-120 ms
    split = 0.012 + 0.03 * insp + 0.003 * rng.standard_normal(count)  # A2-P2 split widens on inspiration
    split = np.clip(split, 0.005, 0.06)
    s2_len = split + rng.uniform(0.045, 0.055)  # S2 window ~60-110 ms

    def samples(t: np.ndarray) -> np.ndarray:
        return np.round(t * fs).astype(np.int64)

    s1_on = samples(onsets_s)
    next_on = np.append(s1_on[1:], samples(onsets_s[-1:] + rr[-1:]))
    return Beats(
        s1_on=s1_on,
        s1_off=s1_on + samples(s1_len),
        s2_on=s1_on + samples(systole_s),
        s2_off=s1_on + samples(systole_s) + samples(s2_len),
        next_on=next_on,
        t1_delay=samples(t1_delay),
        split=samples(split),
        insp=insp,
    )


def _window_taper(length: np.ndarray, width: int, ramp: int) -> np.ndarray:
    """(beats, width) mask: 1 inside each beat's window [0, length), raised-cosine fall over the last `ramp`."""
    j = np.arange(width)[None, :]
    x = np.clip((length[:, None] - j) / ramp, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def _transients(
    starts: np.ndarray, lengths: np.ndarray, comps: list[tuple[np.ndarray, np.ndarray, float, np.ndarray]],
    fs: int, rng: np.random.Generator,
) -> np.ndarray:
    """Waves (beats, L) that sum damped components and end (tapered) at each beat's window length.

    comps: (delay samples (beats,), frequency Hz (beats,), tau s, amplitude (beats,)).
    """
    width = int(lengths.max())
    t = np.arange(width)[None, :] / fs
    waves = np.zeros((starts.size, width))
    for delay, freq, tau, amp in comps:
        phase = rng.uniform(0.0, 2.0 * np.pi, (starts.size, 1))
        waves += amp[:, None] * gamma_transient(t - delay[:, None] / fs, freq[:, None], tau, phase)
    return waves * _window_taper(lengths, width, ramp=int(0.008 * fs))


def _add_filling_sound(
    x: np.ndarray, starts: np.ndarray, length_s: float, freq_hz: float, tau_s: float, amp: np.ndarray,
    fs: int, rng: np.random.Generator,
) -> None:
    """Add one S3- or S4-like wave (length_s long) at each start sample, in place."""
    if starts.size:
        zero = np.zeros(starts.size, dtype=np.int64)
        lengths = np.full(starts.size, int(length_s * fs))
        waves = _transients(starts, lengths, [(zero, np.full(starts.size, freq_hz), tau_s, amp)], fs, rng)
        overlap_add(x, starts, waves)


def heart_sounds(
    beats: Beats, site: str, n: int, fs: int, s3: bool, s4: bool, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """S1, S2 (and S3, S4) for every beat at one site. Returns (signal (n,), S1 RMS at the apex)."""
    nb = beats.s1_on.size
    jitter = 1.0 + 0.08 * rng.standard_normal(nb)
    breath = 1.0 - 0.1 * beats.insp  # inflated lungs damp the sounds slightly
    f_m1, f_t1 = rng.uniform(40.0, 70.0), rng.uniform(60.0, 110.0)  # Hz
    f_a2, f_p2 = rng.uniform(80.0, 150.0), rng.uniform(70.0, 130.0)
    fj = 1.0 + 0.04 * rng.standard_normal((4, nb))  # beat-to-beat pitch variation
    zero = np.zeros(nb, dtype=np.int64)

    s1_len = beats.s1_off - beats.s1_on
    s1 = _transients(
        beats.s1_on, s1_len,
        [(zero, f_m1 * fj[0], 0.010, jitter * breath),  # M1 (mitral closure)
         (beats.t1_delay, f_t1 * fj[1], 0.009, 0.8 * jitter * breath)],  # T1 (tricuspid), 20-30 ms later
        fs, rng,
    )
    # Reference level for murmur grades: RMS of S1 (apex gain 1) over its annotated window.
    inside = np.arange(s1.shape[1])[None, :] < s1_len[:, None]
    s1_ref = float(np.sqrt(np.sum(s1[inside] ** 2) / inside.sum()))

    s2_len = beats.s2_off - beats.s2_on
    a2 = S2_SITE_GAIN[site] * jitter * breath
    s2 = _transients(
        beats.s2_on, s2_len,
        [(zero, f_a2 * fj[2], 0.006, a2),  # A2 (aortic closure)
         (beats.split, f_p2 * fj[3], 0.006, P2_SITE_GAIN[site] * a2)],  # P2, split widening on inspiration
        fs, rng,
    )
    x = np.zeros(n)
    overlap_add(x, beats.s1_on, S1_SITE_GAIN[site] * s1)
    overlap_add(x, beats.s2_on, s2)

    # S3 (rapid filling, ~60-100 ms after S2) and S4 (atrial kick, ending 10 ms before S1): soft,
    # 20-45 Hz, ventricular so loudest at the apex; placed only where they fit inside diastole.
    amp = (1.0 if site in ("MV", "TV") else 0.6) * jitter
    if s3:
        start = beats.s2_off + int(rng.uniform(0.06, 0.1) * fs)
        ok = start + int(0.09 * fs) < beats.next_on - int(0.02 * fs)
        _add_filling_sound(x, start[ok], 0.09, rng.uniform(25.0, 45.0), 0.011, 0.3 * amp[ok], fs, rng)
    if s4:
        start = beats.next_on - int(0.01 * fs) - int(0.07 * fs)
        ok = start > beats.s2_off + int(0.05 * fs)
        _add_filling_sound(x, start[ok], 0.07, rng.uniform(20.0, 40.0), 0.008, 0.25 * amp[ok], fs, rng)
    return x, s1_ref


def murmur_source(murmur: Murmur, n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """The murmur's sound before its envelope: unit RMS, shape (n,)."""
    lo, hi = PITCH_BAND_HZ[murmur.pitch]
    if murmur.quality == "Musical":  # vibratory, tonal (e.g. Still's murmur)
        t = np.arange(n) / fs
        f0 = MUSICAL_F0_HZ[murmur.pitch] * rng.uniform(0.9, 1.1)
        phase = 2.0 * np.pi * np.cumsum(f0 * (1.0 + 0.01 * np.sin(2.0 * np.pi * 5.0 * t))) / fs
        x = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
        x = x / rms(x) + 0.3 * band_noise(n, lo, hi, fs, rng)
    elif murmur.quality == "Harsh":  # wider band, rough irregular amplitude
        x = band_noise(n, 0.8 * lo, 1.4 * hi, fs, rng)
        rough = lowpass(rng.standard_normal(n), 40.0, fs, 2)
        x *= 1.0 + 0.8 * rough / max(rms(rough), 1e-12)
    else:  # Blowing: smooth band-limited noise
        x = band_noise(n, lo, hi, fs, rng)
    return x / max(rms(x), 1e-12)


def murmur_envelope(beats: Beats, murmur: Murmur, n: int, fs: int) -> np.ndarray:
    """Envelope (n,) in [0, 1]: the murmur's shape inside its part of every systole or diastole."""
    a_int, b_int = (beats.s1_off, beats.s2_on) if murmur.phase == "systolic" else (beats.s2_off, beats.next_on)
    f0, f1 = TIMING_FRACTION[murmur.timing]
    a = a_int + f0 * (b_int - a_int)  # float samples, (beats,)
    b = a_int + f1 * (b_int - a_int)
    idx = np.arange(n)
    k = np.clip(np.searchsorted(a, idx, side="right") - 1, 0, None)
    inside = (idx >= a[k]) & (idx < b[k])
    u = np.clip((idx - a[k]) / np.maximum(b[k] - a[k], 1.0), 0.0, 1.0)  # position 0..1 in the interval
    shape = {
        "Crescendo": 0.15 + 0.85 * u,
        "Decrescendo": 1.0 - 0.85 * u,
        "Diamond": 1.0 - 0.85 * np.abs(2.0 * u - 1.0),
        "Plateau": np.ones(n),
    }[murmur.shape]
    ramp = 0.01 * fs  # 10 ms raised-cosine edges
    edge = np.clip(np.minimum(idx - a[k], b[k] - idx) / ramp, 0.0, 1.0)
    return np.where(inside, shape * (0.5 - 0.5 * np.cos(np.pi * edge)), 0.0)


def segmentation(beats: Beats, n: int) -> list[tuple[int, int, int]]:
    """CirCor .tsv rows (start sample, end sample, state) for the complete beats; 0 elsewhere."""
    full = (beats.s1_on >= 0) & (beats.next_on <= n)
    rows: list[tuple[int, int, int]] = []
    cursor = 0
    for k in np.flatnonzero(full):
        if beats.s1_on[k] > cursor:
            rows.append((cursor, int(beats.s1_on[k]), STATE_UNANNOTATED))
        rows += [
            (int(beats.s1_on[k]), int(beats.s1_off[k]), STATE_S1),
            (int(beats.s1_off[k]), int(beats.s2_on[k]), STATE_SYSTOLE),
            (int(beats.s2_on[k]), int(beats.s2_off[k]), STATE_S2),
            (int(beats.s2_off[k]), int(beats.next_on[k]), STATE_DIASTOLE),
        ]
        cursor = int(beats.next_on[k])
    if cursor < n:
        rows.append((cursor, n, STATE_UNANNOTATED))
    return rows


def synthesize_recording(
    patient: HeartPatient, site: str, rng: np.random.Generator, fs: int = FS_HZ
) -> tuple[np.ndarray, list[tuple[int, int, int]], float]:
    """One auscultation recording at `site`: (int16 PCM (n,), .tsv rows in samples, peak fraction)."""
    n = int(round(rng.uniform(*DURATION_S) * fs))
    resp_phase = rng.uniform(0.0, 2.0 * np.pi)
    beats = beat_schedule(patient.heart_rate_bpm, patient.resp_rate_hz, resp_phase, n, fs, rng)
    x, ref = heart_sounds(beats, site, n, fs, patient.s3, patient.s4, rng)

    if patient.murmur is not None:
        level = ref * float(db_to_gain(patient.murmur.site_db[site]))
        x += level * murmur_source(patient.murmur, n, fs, rng) * murmur_envelope(beats, patient.murmur, n, fs)

    # Noise, in dB re S1 at the apex; "Unknown" patients (too noisy to call) get it loud.
    noisy = patient.murmur_status == "Unknown"

    def breath_drive(i: np.ndarray) -> np.ndarray:  # breath noise swells on inspiration
        return 0.15 + inspiration(i / fs, patient.resp_rate_hz, resp_phase) ** 2

    breath_env = smooth_curve(n, int(0.005 * fs), breath_drive)
    breath_db = rng.uniform(-12.0, -6.0) if noisy else rng.uniform(-34.0, -26.0)
    x += ref * float(db_to_gain(breath_db)) * band_noise(n, 100.0, 600.0, fs, rng) * breath_env / rms(breath_env)
    x += ref * float(db_to_gain(-42.0)) * rng.standard_normal(n)  # sensor noise
    if rng.random() < 0.3:
        x += ref * float(db_to_gain(rng.uniform(-38.0, -30.0))) * mains_hum(n, fs, rng)
    friction_level = ref * float(db_to_gain(3.0 if noisy else -3.0))
    x += friction_bursts(n, fs, rng, rate_per_s=0.6 if noisy else 0.04, level=friction_level)

    clipped = rng.random() < (0.35 if noisy else 0.04)
    peak = rng.uniform(1.3, 2.5) if clipped else rng.uniform(0.3, 0.8)
    return to_pcm(x * edge_taper(n, int(0.005 * fs)), peak), segmentation(beats, n), peak


# ------------------------------------------------------------------------ CirCor layout writers

CSV_COLUMNS = [  # training_data.csv of the final release (v1.0.3)
    "Patient ID", "Recording locations:", "Age", "Sex", "Height", "Weight", "Pregnancy status",
    "Murmur", "Murmur locations", "Most audible location",
    "Systolic murmur timing", "Systolic murmur shape", "Systolic murmur grading",
    "Systolic murmur pitch", "Systolic murmur quality",
    "Diastolic murmur timing", "Diastolic murmur shape", "Diastolic murmur grading",
    "Diastolic murmur pitch", "Diastolic murmur quality",
    "Outcome", "Campaign", "Additional ID",
]


def recording_names(patient: HeartPatient) -> list[tuple[str, str]]:
    """(site, record name) per recording: <pid>_<SITE>, or <pid>_<SITE>_1/_2 for a repeated site."""
    counts = {s: patient.sites.count(s) for s in patient.sites}
    seen: dict[str, int] = {}
    names = []
    for s in patient.sites:
        seen[s] = seen.get(s, 0) + 1
        names.append((s, f"{patient.patient_id}_{s}" + (f"_{seen[s]}" if counts[s] > 1 else "")))
    return names


def _fmt_time(sample: int, fs: int) -> str:
    """Seconds as CirCor writes them: '0', '0.242', '9.813882' (exact for 4 kHz sample times)."""
    return f"{sample / fs:.6f}".rstrip("0").rstrip(".") or "0"


def tsv_text(rows: list[tuple[int, int, int]], fs: int) -> str:
    return "".join(f"{_fmt_time(a, fs)}\t{_fmt_time(b, fs)}\t{s}\n" for a, b, s in rows)


def hea_text(name: str, site: str, n: int, fs: int) -> str:
    """WFDB header pointing into the .wav (format 16, byte offset 44), CRLF like CirCor's."""
    return f"{name} 1 {fs} {n}\r\n{name}.wav 16+44 1 16 0 0 0 0 {site}\r\n"


def metadata_fields(patient: HeartPatient) -> dict[str, str]:
    """CirCor's `#Key: value` fields (and CSV columns), 'nan' where CirCor writes nan."""
    known = patient.murmur_status == "Present"
    m = patient.murmur if known else None
    sysm = m if m is not None and m.phase == "systolic" else None
    diam = m if m is not None and m.phase == "diastolic" else None

    def num(v: float | None) -> str:
        return "nan" if v is None else f"{v:.1f}"

    def part(mm: Murmur | None, attr: str) -> str:
        if mm is None:
            return "nan"
        return mm.grading if attr == "grading" else getattr(mm, attr)

    fields = {
        "Age": patient.age_group or "nan",
        "Sex": patient.sex,
        "Height": num(patient.height_cm),
        "Weight": num(patient.weight_kg),
        "Pregnancy status": str(patient.pregnant),
        "Murmur": patient.murmur_status,
        "Murmur locations": "+".join(patient.murmur_locations) or "nan",
        "Most audible location": patient.most_audible or "nan",
    }
    for prefix, mm in (("Systolic", sysm), ("Diastolic", diam)):
        for attr in ("timing", "shape", "grading", "pitch", "quality"):
            fields[f"{prefix} murmur {attr}"] = part(mm, attr)
    fields["Campaign"] = patient.campaign
    fields["Additional ID"] = "nan"
    fields["Outcome"] = "Abnormal" if patient.abnormal else "Normal"
    return fields


def patient_txt(patient: HeartPatient, names: list[tuple[str, str]], fs: int) -> str:
    """The patient .txt: CRLF, no newline after the last line (as in the CirCor files)."""
    lines = [f"{patient.patient_id} {len(names)} {fs}"]
    lines += [f"{site} {name}.hea {name}.wav {name}.tsv" for site, name in names]
    lines += [f"#{k}: {v}" for k, v in metadata_fields(patient).items()]  # Outcome last, as in v1.0.3
    return "\r\n".join(lines)


def csv_row(patient: HeartPatient) -> list[str]:
    fields = metadata_fields(patient)
    return [patient.patient_id, "+".join(patient.sites)] + [fields[c] for c in CSV_COLUMNS[2:]]


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def write_patient(folder: Path, patient: HeartPatient, rng: np.random.Generator) -> dict:
    """Write one patient's .wav/.hea/.tsv files and its .txt into `folder` (training_data/).

    The .txt comes last: it is the index that names the other files. Returns the CSV row and
    the ground truth the layout cannot hold (lesion, heart rate, S3/S4, hidden murmur).
    """
    names = recording_names(patient)
    clipped = []
    for site, name in names:
        pcm, rows, peak = synthesize_recording(patient, site, rng)
        (folder / f"{name}.wav").write_bytes(wav_bytes(pcm, FS_HZ, "PCM_16"))
        (folder / f"{name}.hea").write_bytes(hea_text(name, site, pcm.size, FS_HZ).encode())
        (folder / f"{name}.tsv").write_bytes(tsv_text(rows, FS_HZ).encode())
        clipped.append(peak > 1.0)
    (folder / f"{patient.patient_id}.txt").write_bytes(patient_txt(patient, names, FS_HZ).encode())
    m = patient.murmur
    return {
        "csv": csv_row(patient),
        "truth": {
            "patient_id": patient.patient_id,
            "lesion": patient.lesion,
            "murmur_status": patient.murmur_status,
            "murmur_synthesised": m is not None,
            "murmur_phase": m.phase if m else "",
            "murmur_grade": m.grade if m else "",
            "heart_rate_bpm": patient.heart_rate_bpm,
            "s3": patient.s3,
            "s4": patient.s4,
            "age_years": round(patient.age_years, 2),
            "recordings": len(names),
            "clipped_recordings": int(sum(clipped)),
        },
        "recordings": len(names),
    }
