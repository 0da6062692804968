"""Simulated 12-lead ECGs with exactly known labels, written in the PTB-XL layout.

Why a dipole model: the limb and augmented leads are fixed linear combinations of three electrode
potentials, so a simulator that draws each lead on its own (neurokit2's "multileads") breaks
Einthoven's law (II = I + III) and the hexaxial geometry a model (or a student) should learn.
Here the heart is a time-varying current dipole d(t) (3 components, x = patient's left,
y = inferior, z = anterior, in mV-equivalent units); each electrode sees its projection
phi_e(t) = L_e . d(t) (+ its own noise), and the leads are the clinical differences:

    I = LA - RA, II = LL - RA, III = LL - LA,
    aVR = RA - (LA + LL) / 2, aVL = LA - (RA + LL) / 2, aVF = LL - (RA + LA) / 2,
    Vi = phi_Vi - WCT,  WCT = (RA + LA + LL) / 3   (Wilson's central terminal)

so II = I + III and aVR + aVL + aVF = 0 hold exactly before the 1 uV quantisation of format 16.
The limb electrode vectors sit at -150 (RA), -30 (LA) and +90 (LL) degrees of the frontal plane,
which gives the hexaxial lead axes (I 0, II 60, III 120, aVF 90 degrees); the precordial ones
sweep the transverse plane from V1 (right sternal border, anterior) to V6 (left mid-axillary).

Each beat is a sum of Gaussian waves of the dipole (P, septal Q, R, S, T; the approach of
ECGSYN, McSharry et al. 2003, extended to a 3-D vector as in Sameni et al. 2007), each wave
with a time offset from the R peak (s), a width (s), an amplitude and a direction. The classes
change only what defines them:

| class | SCP codes (PTB-XL) | what changes |
|---|---|---|
| normal | NORM, SR | 60-95 bpm, small sinus variability |
| stach | NORM 80, STACH | 105-140 bpm |
| sbrad | NORM 80, SBRAD | 40-55 bpm |
| af | AFIB | no P wave, irregular RR (log-normal, CV ~0.2), 4-8 Hz fibrillatory baseline |
| pvc | PVC, SR | 1-3 premature (60 % RR) wide beats without P, discordant T, compensatory pause |
| clbbb | CLBBB, SR | QRS ~150 ms, broad notched leftward-posterior R, no septal q, discordant T |
| crbbb | CRBBB, SR | QRS ~130 ms, terminal rightward-anterior wave (rsR' in V1, wide S in I/V6) |
| ste | STE_, NST_, SR | ST segment raised 0.15-0.35 mV towards an anterior, inferior or lateral territory |
| std | STD_, NST_, SR | ST segment depressed 0.12-0.3 mV in the lateral/inferior leads, flat T |

Every record also gets noise at the electrodes (so it obeys the lead relations too): baseline
wander (0.05-0.5 Hz), powerline (50 or 60 Hz) and muscle noise (band-limited white noise), each at
a random level per record. Per patient the electrical axis (+-20 degrees), the amplitude
(x0.8-1.2), age and sex vary.

Output (`simulate_ecg(out, patients, seed)`), the PTB-XL layout read by `clinlm ingest ptbxl`:

    out/ptbxl_database.csv   PTB-XL's columns; scp_codes a dict literal; strat_fold 1-10
                             (stratified by class: 9 val, 10 test as in PTB-XL); an English report
    out/scp_statements.csv   the rows for the codes used (PTB-XL's own descriptions and classes)
    out/records500/00000/00001_hr.{hea,dat}   WFDB format 16, 1000 units/mV, 12 leads, 10 s
    out/records100/00000/00001_lr.{hea,dat}   the same ECG at 100 Hz
    out/simulation_truth.csv  per record: class, heart rate, RR coefficient of variation, QRS
                             width, ST shift, noise levels (what the labels were drawn from)

One patient, one ECG. The same seed writes the same files. The folder is written beside `out`
and swapped in at the end; an existing `out` is replaced only when the simulator wrote it.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FS = 500  # Hz, PTB-XL's high-rate copy
SECONDS = 10.0
LEADS_PTBXL = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")  # as PTB-XL writes them
CLASSES = ("normal", "stach", "sbrad", "af", "pvc", "clbbb", "crbbb", "ste", "std")
CODES = {
    "normal": {"NORM": 100.0, "SR": 0.0},
    "stach": {"NORM": 80.0, "STACH": 0.0},
    "sbrad": {"NORM": 80.0, "SBRAD": 0.0},
    "af": {"AFIB": 100.0},
    "pvc": {"PVC": 100.0, "SR": 0.0},
    "clbbb": {"CLBBB": 100.0, "SR": 0.0},
    "crbbb": {"CRBBB": 100.0, "SR": 0.0},
    "ste": {"STE_": 100.0, "NST_": 100.0, "SR": 0.0},
    "std": {"STD_": 100.0, "NST_": 100.0, "SR": 0.0},
}
# scp_statements.csv rows for the codes above, as PTB-XL 1.0.3 defines them:
# code: (description, diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass)
STATEMENTS = {
    "NORM": ("normal ECG", 1, None, None, "NORM", "NORM"),
    "SR": ("sinus rhythm", None, None, 1, None, None),
    "STACH": ("sinus tachycardia", None, None, 1, None, None),
    "SBRAD": ("sinus bradycardia", None, None, 1, None, None),
    "AFIB": ("atrial fibrillation", None, None, 1, None, None),
    "PVC": ("ventricular premature complex", None, 1, None, None, None),
    "CLBBB": ("complete left bundle branch block", 1, None, None, "CD", "CLBBB"),
    "CRBBB": ("complete right bundle branch block", 1, None, None, "CD", "CRBBB"),
    "STE_": ("non-specific ST elevation", None, 1, None, None, None),
    "STD_": ("non-specific ST depression", None, 1, None, None, None),
    "NST_": ("non-specific ST changes", 1, 1, None, "STTC", "NST_"),
}
DATABASE_COLUMNS = (
    "ecg_id", "patient_id", "age", "sex", "height", "weight", "nurse", "site", "device", "recording_date",
    "report", "scp_codes", "heart_axis", "infarction_stadium1", "infarction_stadium2", "validated_by",
    "second_opinion", "initial_autogenerated_report", "validated_by_human", "baseline_drift", "static_noise",
    "burst_noise", "electrodes_problems", "extra_beats", "pacemaker", "strat_fold", "filename_lr", "filename_hr",
)
STATEMENT_COLUMNS = (
    "", "description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass",
    "Statement Category", "SCP-ECG Statement Description", "AHA code", "aECG REFID", "CDISC Code", "DICOM Code",
)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _frontal(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([np.cos(a), np.sin(a), 0.0])


# Electrode lead vectors (x left, y inferior, z anterior). Precordial gains > 1: the chest
# electrodes sit closer to the heart than the limbs.
LIMB = {name: 0.6 * _frontal(deg) for name, deg in (("RA", -150), ("LA", -30), ("LL", 90))}
PRECORDIAL = [
    g * _unit([np.cos(np.deg2rad(a)), y, np.sin(np.deg2rad(a))])
    for g, a, y in ((1.6, 115, 0.0), (2.4, 95, 0.0), (2.4, 75, 0.05), (2.2, 55, 0.1), (1.8, 30, 0.1), (1.4, 0, 0.1))
]


@dataclass
class Wave:
    offset_s: float  # centre relative to the beat's R peak
    width_s: float  # Gaussian sigma
    amplitude: float  # mV-equivalent dipole magnitude
    direction: np.ndarray  # unit 3-vector


def sinus_waves(rr: float) -> list[Wave]:
    """One normal beat's waves; the T wave moves with the RR interval (QT ~ sqrt(RR), Bazett)."""
    qt_shift = 0.26 * np.sqrt(rr)
    return [
        Wave(-0.165, 0.022, 0.14, _unit([0.55, 0.8, 0.15])),  # P: atria, leftward-inferior
        Wave(-0.024, 0.008, 0.14, _unit([-0.6, 0.1, 0.8])),  # septal q: rightward-anterior
        Wave(0.0, 0.011, 1.15, _unit([0.7, 0.6, -0.2])),  # R: left ventricle
        Wave(0.027, 0.011, 0.4, _unit([-0.3, -0.3, -0.9])),  # S: basal, posterior
        Wave(qt_shift, 0.048, 0.32, _unit([0.7, 0.55, 0.2])),  # T: concordant with R
    ]


def _rotation(frontal_deg: float, transverse_deg: float) -> np.ndarray:
    """Rotate about z (frontal plane: moves the axis) then about y (transverse plane)."""
    a, b = np.deg2rad(frontal_deg), np.deg2rad(transverse_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rz


def _beat_times(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """R-peak times (s), which beats are premature ventricular, and the mean heart rate."""
    hr = {"stach": rng.uniform(105, 140), "sbrad": rng.uniform(40, 55), "af": rng.uniform(70, 120)}.get(kind, rng.uniform(60, 95))
    mean_rr = 60.0 / hr
    times, t = [], rng.uniform(0.1, mean_rr)
    while t < SECONDS + 1.0:
        times.append(t)
        if kind == "af":  # irregularly irregular
            rr = mean_rr * float(np.clip(rng.lognormal(0.0, 0.22), 0.5, 1.9))
        else:  # sinus: slight variability plus respiratory sinus arrhythmia
            rr = mean_rr * (1 + 0.02 * rng.standard_normal() + 0.02 * np.sin(2 * np.pi * 0.25 * t))
        t += rr
    times = np.array(times)
    pvc = np.zeros(len(times), dtype=bool)
    if kind == "pvc":
        # A premature beat at 60 % of the RR after a sinus beat, then a full compensatory pause:
        # the sinus beat it replaces would have come one RR later.
        candidates = np.arange(1, len(times) - 2)
        for i in rng.choice(candidates, size=min(len(candidates), int(rng.integers(1, 4))), replace=False):
            pvc[i] = True
        shift = np.where(pvc, -0.4 * mean_rr, 0.0)
        times = times + shift
    return times, pvc, hr


def _dipole(kind: str, times: np.ndarray, pvc: np.ndarray, rot: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The heart vector (3, samples) for one record, and what was drawn."""
    t = np.arange(int(SECONDS * FS)) / FS
    d = np.zeros((3, t.size))
    truth: dict = {}
    st_dir, st_amp = None, 0.0
    if kind == "ste":
        territory = str(rng.choice(["anterior", "inferior", "lateral"]))
        st_dir = {"anterior": _unit([0.1, 0.15, 1.0]), "inferior": _unit([0.1, 1.0, 0.2]), "lateral": _unit([1.0, -0.3, 0.3])}[territory]
        st_amp = rng.uniform(0.15, 0.35)
        truth.update(st_territory=territory)
    elif kind == "std":
        st_dir, st_amp = _unit([-0.6, -0.6, -0.3]), rng.uniform(0.12, 0.3)  # depressed in II, V4-V6
    truth["st_shift_mv"] = round(float({"ste": st_amp, "std": -st_amp}.get(kind, 0.0)), 3)
    qrs_ms = {"clbbb": 150, "crbbb": 130}.get(kind, 90)
    pvc_dir = _unit(rng.normal(size=3) + np.array([-0.3, -0.6, 0.6]))
    for i, r in enumerate(times):
        rr = np.diff(times)[min(i, len(times) - 2)] if len(times) > 1 else 1.0
        rr = max(rr, 0.3)
        if pvc[i]:  # ventricular origin: no P, slow wide QRS in another direction, discordant T
            waves = [Wave(0.0, 0.035, 1.4, pvc_dir), Wave(0.30, 0.07, 0.45, -pvc_dir)]
        else:
            waves = sinus_waves(rr)
            if kind == "af":
                waves = waves[1:]  # no organised atrial activity
            if kind == "clbbb":  # the septum fires right-to-left: no septal q; slow notched R
                main = _unit([0.75, 0.2, -0.65])
                waves = [waves[0], Wave(-0.025, 0.022, 0.95, main), Wave(0.035, 0.024, 0.85, main), Wave(0.26 * np.sqrt(rr), 0.06, 0.38, _unit([-0.6, -0.1, 0.6]))]
            elif kind == "crbbb":  # late, slow activation of the right ventricle
                waves = waves[:4] + [Wave(0.072, 0.02, 0.65, _unit([-0.6, 0.0, 0.8])), Wave(0.28 * np.sqrt(rr), 0.05, 0.3, _unit([0.7, 0.5, -0.25]))]
            if kind == "std":  # flattened T
                waves[-1] = Wave(waves[-1].offset_s, waves[-1].width_s, waves[-1].amplitude * 0.4, waves[-1].direction)
        for w in waves:
            g = np.exp(-0.5 * ((t - r - w.offset_s) / w.width_s) ** 2)
            d += (scale * w.amplitude * (rot @ w.direction))[:, None] * g[None, :]
        if st_dir is not None and not pvc[i]:
            # ST plateau: from the J point (end of QRS) to the T wave's peak, smooth edges.
            j, tpk = qrs_ms / 2000 + 0.01, 0.26 * np.sqrt(rr)
            plateau = 0.5 * (np.tanh((t - r - j) / 0.008) - np.tanh((t - r - tpk) / 0.04))
            d += (scale * st_amp * (rot @ st_dir))[:, None] * plateau[None, :]
    if kind == "af":
        # Fibrillatory waves: 4-8 Hz with a wandering frequency, strongest towards V1 / inferior.
        f0 = rng.uniform(4.5, 7.5)
        freq = f0 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3))
        phase = 2 * np.pi * np.cumsum(freq) / FS + rng.uniform(0, 6.3)
        amp = rng.uniform(0.04, 0.09)
        f_wave = amp * (np.sin(phase) + 0.35 * np.sin(2 * phase + rng.uniform(0, 6.3)))
        d += _unit([0.3, 0.6, 0.75])[:, None] * f_wave[None, :]
        truth["f_wave_hz"] = round(float(f0), 2)
    truth["qrs_ms"] = qrs_ms
    return d, truth


def _noise(n_electrodes: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Electrode noise (electrodes, samples) in mV: baseline wander, powerline, muscle."""
    from scipy.signal import butter, sosfiltfilt

    t = np.arange(int(SECONDS * FS)) / FS
    wander_mv, line_mv, muscle_mv = rng.uniform(0.0, 0.15), rng.uniform(0.0, 0.02), rng.uniform(0.0, 0.025)
    line_hz = float(rng.choice([50.0, 60.0]))
    out = np.zeros((n_electrodes, t.size))
    sos = butter(4, [20, 150], btype="bandpass", fs=FS, output="sos")
    muscle = sosfiltfilt(sos, rng.standard_normal((n_electrodes, t.size)), axis=1)
    muscle *= muscle_mv / max(muscle.std(), 1e-12)
    for e in range(n_electrodes):
        for _ in range(2):
            out[e] += wander_mv * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 6.3))
        out[e] += line_mv * rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * line_hz * t + rng.uniform(0, 6.3))
    out += muscle
    return out, {"wander_mv": round(wander_mv, 4), "powerline_mv": round(line_mv, 4), "powerline_hz": line_hz, "muscle_mv": round(muscle_mv, 4)}


def leads_from_dipole(d: np.ndarray, electrode_noise: np.ndarray | None = None) -> np.ndarray:
    """The 12 standard leads (12, samples) in mV from the heart vector (3, samples).

    `electrode_noise` (9, samples): extra potential at RA, LA, LL, V1..V6.
    """
    names = ["RA", "LA", "LL"]
    phi = np.stack([LIMB[n] @ d for n in names] + [v @ d for v in PRECORDIAL])  # (9, samples)
    if electrode_noise is not None:
        phi = phi + electrode_noise
    ra, la, ll = phi[0], phi[1], phi[2]
    wct = (ra + la + ll) / 3
    limb = [la - ra, ll - ra, ll - la, ra - (la + ll) / 2, la - (ra + ll) / 2, ll - (ra + la) / 2]
    return np.stack(limb + [phi[3 + i] - wct for i in range(6)])


def simulate_one(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One 10 s 12-lead ECG (12, 5000) in mV of class `kind`, and its drawn parameters."""
    if kind not in CLASSES:
        raise ValueError(f"unknown ECG class {kind!r}; choose one of {', '.join(CLASSES)}")
    times, pvc, hr = _beat_times(kind, rng)
    axis, transverse, scale = rng.normal(0, 12), rng.normal(0, 8), rng.uniform(0.8, 1.2)
    d, truth = _dipole(kind, times, pvc, _rotation(axis, transverse), scale, rng)
    noise, noise_truth = _noise(9, rng)
    x = leads_from_dipole(d, noise)
    inside = times[(times >= 0) & (times < SECONDS)]
    rr = np.diff(inside)
    truth.update(
        kind=kind,
        target_heart_rate_bpm=round(float(hr), 1),
        heart_rate_bpm=round(60.0 / float(np.mean(rr)), 1) if rr.size else None,
        rr_cv=round(float(np.std(rr) / np.mean(rr)), 4) if rr.size > 1 else None,
        pvc_beats=int(pvc[(times >= 0) & (times < SECONDS)].sum()),
        axis_rotation_deg=round(float(axis), 1),
        amplitude_scale=round(float(scale), 3),
        **noise_truth,
    )
    return x, truth


def _report(codes: dict[str, float]) -> str:
    return "; ".join(STATEMENTS[c][0] for c in codes) + "."


def _write_wfdb(folder: Path, name: str, x: np.ndarray, fs: int) -> None:
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    # Store as PTB-XL does: int16 at 1000 units per mV (1 uV steps), baseline 0.
    digital = np.clip(np.round(x.T * 1000.0), -32767, 32767).astype(np.int16)
    wfdb.wrsamp(
        name, fs=fs, units=["mV"] * 12, sig_name=list(LEADS_PTBXL), d_signal=digital,
        fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder),
    )


def _csv_text(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def simulate_ecg(out: Path, patients: int, seed: int) -> dict:
    """Write `patients` simulated 12-lead ECGs (one per patient) in the PTB-XL layout under `out`.

    Returns a summary: folder, records, classes, seconds, and the ingest command.
    """
    from scipy.signal import resample_poly

    from clinlm.records import atomic_write_text

    if patients < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    t0 = time.perf_counter()
    final = Path(out)
    if final.exists() and any(final.iterdir()) and not (final / "simulation_truth.csv").exists():
        raise ValueError(f"{final} exists and was not written by the ECG simulator; choose another folder or remove it first")
    # Write beside the target and swap it in at the end: a killed run never leaves a mix of old
    # and new records (which the ptbxl adapter would report as unlisted files).
    out = final.with_name(f".{final.name}.partial")
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(seed)
    # Balanced classes in a seeded order; folds 1-10 dealt round-robin within each class.
    kinds = [CLASSES[i % len(CLASSES)] for i in range(patients)]
    rng.shuffle(kinds)
    seen: dict[str, int] = {}
    fold_offset = {k: int(rng.integers(0, 10)) for k in CLASSES}
    rows, truth_rows = [], []
    for i, kind in enumerate(kinds):
        ecg_id = i + 1
        rec_rng = np.random.default_rng([seed, ecg_id])  # one stream per record: files do not depend on order
        x, truth = simulate_one(kind, rec_rng)
        sub = f"{(ecg_id // 1000) * 1000:05d}"
        hr_name, lr_name = f"{ecg_id:05d}_hr", f"{ecg_id:05d}_lr"
        _write_wfdb(out / "records500" / sub, hr_name, x, FS)
        _write_wfdb(out / "records100" / sub, lr_name, resample_poly(x, 1, 5, axis=1), 100)
        fold = (seen.get(kind, 0) + fold_offset[kind]) % 10 + 1
        seen[kind] = seen.get(kind, 0) + 1
        codes = CODES[kind]
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": f"{90000 + ecg_id}.0",  # PTB-XL writes ids as floats
                "age": f"{int(rec_rng.integers(18, 90))}.0",
                "sex": int(rec_rng.integers(0, 2)),  # PTB-XL: 0 male, 1 female
                "device": "clinlm-sim",
                "recording_date": f"2000-01-01 00:{ecg_id // 60 % 60:02d}:{ecg_id % 60:02d}",
                "report": _report(codes),
                "scp_codes": repr(codes),
                "validated_by_human": "True",
                "second_opinion": "False",
                "initial_autogenerated_report": "False",
                "strat_fold": fold,
                "filename_lr": f"records100/{sub}/{lr_name}",
                "filename_hr": f"records500/{sub}/{hr_name}",
            }
        )
        truth_rows.append({"ecg_id": ecg_id, **truth})
    statement_rows = [
        dict(zip(STATEMENT_COLUMNS, [code, desc] + ["" if v is None else f"{float(v):.1f}" if isinstance(v, int) else v for v in rest]))
        for code, (desc, *rest) in STATEMENTS.items()
    ]
    atomic_write_text(_csv_text(DATABASE_COLUMNS, rows), out / "ptbxl_database.csv")
    atomic_write_text(_csv_text(STATEMENT_COLUMNS, statement_rows), out / "scp_statements.csv")
    truth_columns = sorted({k for r in truth_rows for k in r}, key=lambda k: (k != "ecg_id", k != "kind", k))
    atomic_write_text(_csv_text(truth_columns, truth_rows), out / "simulation_truth.csv")
    if final.exists():
        shutil.rmtree(final)
    out.rename(final)
    counts = {k: kinds.count(k) for k in CLASSES}
    return {
        "folder": str(final),
        "records": patients,
        "patients": patients,
        "classes": counts,
        "seconds": round(time.perf_counter() - t0, 2),
        "ingest": f"clinlm ingest ptbxl {final} --out <records folder>",
    }
