"""The heart simulator: CirCor layout, exact segmentation, audible murmurs, clinical label relations.

The files are read back with a small parser written here (independent of the circor adapter),
and every acoustic claim is checked on the written .wav + .tsv, not on internal arrays.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal
from sklearn.metrics import roc_auc_score

from clinlm.simulate import patient_rng, run_simulation
from clinlm.simulate import heart
from clinlm.simulate.patients import AUDIBLE_DB, GRADE_DB, draw_heart_patient

CIRCOR_KEYS = [  # the final release's #Key order (v1.0.3): Outcome last
    "Age", "Sex", "Height", "Weight", "Pregnancy status", "Murmur", "Murmur locations",
    "Most audible location", "Systolic murmur timing", "Systolic murmur shape",
    "Systolic murmur grading", "Systolic murmur pitch", "Systolic murmur quality",
    "Diastolic murmur timing", "Diastolic murmur shape", "Diastolic murmur grading",
    "Diastolic murmur pitch", "Diastolic murmur quality", "Campaign", "Additional ID", "Outcome",
]


# ----------------------------------------------------------------------------- tiny readers

def read_patient(txt: Path) -> tuple[str, int, int, list[tuple[str, str, str, str]], dict[str, str]]:
    """(pid, n recordings, fs, [(site, hea, wav, tsv)], {key: value}) from a CirCor patient file."""
    lines = txt.read_bytes().decode().split("\r\n")
    pid, n, fs = lines[0].split()
    recs = [tuple(l.split()) for l in lines[1:] if not l.startswith("#")]
    meta = dict(l[1:].split(": ", 1) for l in lines[1:] if l.startswith("#"))
    return pid, int(n), int(fs), recs, meta


def read_tsv(path: Path, fs: int) -> list[tuple[int, int, int]]:
    """(start sample, end sample, state) rows."""
    rows = [l.split("\t") for l in path.read_text().splitlines()]
    return [(round(float(a) * fs), round(float(b) * fs), int(s)) for a, b, s in rows]


def state_energy(e: np.ndarray, rows, state: int, margin: int = 0) -> float:
    """Median over beats of the mean of e inside the windows of `state` (shrunk by margin)."""
    return float(np.median([e[a + margin : b - margin].mean() for a, b, s in rows if s == state]))


def murmur_feature(wav: Path, tsv: Path) -> float:
    """log10 energy (60-600 Hz) inside systole or diastole, whichever is louder, re the louder of S1/S2."""
    x, fs = sf.read(wav)
    e = signal.sosfiltfilt(signal.butter(4, [60, 600], btype="bandpass", fs=fs, output="sos"), x) ** 2
    rows = read_tsv(tsv, fs)
    m = int(0.02 * fs)  # stay clear of the heart sounds' edges
    between = max(state_energy(e, rows, 2, m), state_energy(e, rows, 4, m))
    return float(np.log10(between / max(state_energy(e, rows, 1), state_energy(e, rows, 3))))


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    run_simulation(out, patients=12, seed=0, modality="heart", workers=1, progress=False)
    return out


def patients(sim: Path):
    return [read_patient(p) for p in sorted((sim / "circor" / "training_data").glob("*.txt"))]


# ----------------------------------------------------------------------------- layout

def test_layout_parses_like_circor(sim):
    td = sim / "circor" / "training_data"
    listed: set[str] = set()
    for pid, n, fs, recs, meta in patients(sim):
        assert fs == 4000 and n == len(recs) and list(meta) == CIRCOR_KEYS
        assert (td / f"{pid}.txt").read_bytes().count(b"\n") == (td / f"{pid}.txt").read_bytes().count(b"\r\n")
        for site, hea, wav, tsv in recs:
            assert site in {"AV", "PV", "TV", "MV"} and Path(wav).stem.startswith(f"{pid}_{site}")
            info = sf.info(td / wav)
            assert (info.samplerate, info.channels, info.subtype) == (4000, 1, "PCM_16")
            assert (td / wav).stat().st_size == 44 + 2 * info.frames  # the .hea's "16+44" offset holds
            name, nsig, hfs, nsamp = (td / hea).read_text().splitlines()[0].split()
            assert (name, nsig, int(hfs), int(nsamp)) == (Path(wav).stem, "1", 4000, info.frames)
            assert (td / hea).read_text().splitlines()[1].split()[:2] == [wav, "16+44"]
            rows = read_tsv(td / tsv, fs)
            assert rows[0][0] == 0 and rows[-1][1] == info.frames  # covers the whole recording
            assert all(a < b and b == rows[i + 1][0] for i, (a, b, _) in enumerate(rows[:-1]))
            states = [s for _, _, s in rows if s]
            assert states[0] == 1 and all(b == a % 4 + 1 for a, b in zip(states, states[1:]))
            listed.add(Path(wav).stem)
        if meta["Murmur"] == "Present":
            locs = meta["Murmur locations"].split("+")
            assert locs == sorted(locs) and set(locs) <= {r[0] for r in recs}
            assert meta["Most audible location"] in locs
        else:
            assert all(meta[k] == "nan" for k in CIRCOR_KEYS[6:18])
    assert {p.stem for p in td.glob("*.wav")} == listed  # no orphan files
    assert (sim / "circor" / "RECORDS").read_text().split() == sorted(f"training_data/{s}" for s in listed)

    with open(sim / "circor" / "training_data.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == heart.CSV_COLUMNS
    by_pid = {p[0]: p for p in patients(sim)}
    assert [r["Patient ID"] for r in table] == sorted(by_pid)
    for r in table:
        _, _, _, recs, meta = by_pid[r["Patient ID"]]
        assert r["Recording locations:"] == "+".join(s for s, *_ in recs)
        assert all(r[k] == meta[k] for k in CIRCOR_KEYS)


# ----------------------------------------------------------------------------- the sounds

def test_segmentation_matches_the_sounds(sim):
    """Murmur-free recordings: S1 windows hold far more energy than diastole; a shifted .tsv does not."""
    td = sim / "circor" / "training_data"
    checked = 0
    for pid, _, fs, recs, meta in patients(sim):
        if meta["Murmur"] != "Absent":
            continue
        for _, _, wav, tsv in recs:
            x, _ = sf.read(td / wav)
            e = x**2
            rows = read_tsv(td / tsv, fs)
            ratio_db = 10 * np.log10(state_energy(e, rows, 1) / state_energy(e, rows, 4))
            assert ratio_db > 10.0, f"{wav}: S1 only {ratio_db:.1f} dB above diastole"
            late = [(a + int(0.15 * fs), b + int(0.15 * fs), s) for a, b, s in rows if b + int(0.15 * fs) < x.size]
            assert 10 * np.log10(state_energy(e, late, 1) / state_energy(e, late, 4)) < 10.0
            checked += 1
    assert checked >= 10


def test_heart_sounds_stay_inside_their_windows():
    """Without noise, S1 and S2 are exactly zero outside the S1/S2 windows of complete beats."""
    fs, n = 4000, 4000 * 6
    rng = np.random.default_rng(3)
    beats = heart.beat_schedule(95.0, 0.4, 0.0, n, fs, rng)
    x, ref = heart.heart_sounds(beats, "MV", n, fs, s3=False, s4=False, rng=rng)
    rows = heart.segmentation(beats, n)
    inside = np.zeros(n, bool)
    for a, b, s in rows:
        if s in (1, 3):
            inside[a:b] = True
    annotated = np.zeros(n, bool)
    for a, b, s in rows:
        annotated[a:b] |= s != 0
    assert ref > 0 and np.abs(x[inside]).max() > 0.5
    assert np.abs(x[annotated & ~inside]).max() == 0.0


def test_murmur_is_audible(sim):
    """A simple band-energy feature separates murmur sites from murmur-free patients (AUROC > 0.9)."""
    td = sim / "circor" / "training_data"
    labels, scores = [], []
    for _, _, _, recs, meta in patients(sim):
        for site, _, wav, tsv in recs:
            if meta["Murmur"] == "Present" and site in meta["Murmur locations"].split("+"):
                labels.append(1)
            elif meta["Murmur"] == "Absent":
                labels.append(0)
            else:
                continue
            scores.append(murmur_feature(td / wav, td / tsv))
    assert sum(labels) >= 6 and labels.count(0) >= 15, Counter(labels)
    assert roc_auc_score(labels, scores) > 0.9


def test_grade_and_site_set_loudness(tmp_path):
    """The same patient and noise: a higher grade is louder; a site off the murmur list is quieter."""
    base = next(
        p for i in range(200)
        if (p := draw_heart_patient(str(i), np.random.default_rng(i))).lesion == "ventricular septal defect"
    )
    base = dataclasses.replace(base, murmur_status="Present", sites=["AV", "PV", "TV", "MV"])
    feats = {}
    for grade in (1, 3, 5):
        site_db = {s: GRADE_DB[grade] + (db - GRADE_DB[base.murmur.grade]) for s, db in base.murmur.site_db.items()}
        p = dataclasses.replace(base, murmur=dataclasses.replace(base.murmur, grade=grade, site_db=site_db))
        for site in ("TV", "AV"):
            pcm, rows, _ = synthesize_at(p, site, tmp_path / f"g{grade}{site}")
            feats[grade, site] = murmur_feature(*pcm)
    assert feats[1, "TV"] < feats[3, "TV"] < feats[5, "TV"]
    assert feats[3, "AV"] < feats[3, "TV"]  # VSD: loudest at the left lower sternal border (TV)


def synthesize_at(patient, site: str, stem: Path):
    rng = np.random.default_rng(11)  # the same noise for every variant
    pcm, rows, peak = heart.synthesize_recording(patient, site, rng)
    wav, tsv = stem.with_suffix(".wav"), stem.with_suffix(".tsv")
    sf.write(wav, pcm, heart.FS_HZ, subtype="PCM_16")
    tsv.write_text(heart.tsv_text(rows, heart.FS_HZ))
    return (wav, tsv), rows, peak


# ----------------------------------------------------------------------------- labels

def test_lesions_give_clinical_labels():
    drawn = [draw_heart_patient(str(i), patient_rng(0, "heart", i)) for i in range(600)]
    status = Counter(p.murmur_status for p in drawn)
    assert 0.25 <= status["Present"] / len(drawn) <= 0.35
    assert 0.02 <= status["Unknown"] / len(drawn) <= 0.12
    expect = {  # lesion: (phase, timing, shape, quality, most audible)
        "aortic stenosis": ("systolic", "Mid-systolic", "Diamond", "Harsh", "AV"),
        "mitral regurgitation": ("systolic", "Holosystolic", "Plateau", "Blowing", "MV"),
        "ventricular septal defect": ("systolic", "Holosystolic", "Plateau", "Harsh", "TV"),
        "aortic regurgitation": ("diastolic", "Early-diastolic", "Decrescendo", "Blowing", "AV"),
        "innocent murmur": ("systolic", "Early-systolic", None, None, "PV"),
    }
    for p in drawn:
        fields = heart.metadata_fields(p)
        assert fields["Outcome"] == ("Abnormal" if p.lesion not in ("normal", "innocent murmur") else "Normal")
        if p.lesion in expect and p.murmur_status == "Present":
            phase, timing, shape, quality, site = expect[p.lesion]
            prefix = phase.capitalize()
            assert fields[f"{prefix} murmur timing"] == timing
            assert shape is None or fields[f"{prefix} murmur shape"] == shape
            assert quality is None or fields[f"{prefix} murmur quality"] == quality
            assert fields["Most audible location"] == site
        if p.lesion == "innocent murmur":
            assert p.murmur.grade <= 2 and p.age_group in ("Child", "Adolescent", None)
        if p.murmur_status == "Present":  # a louder murmur is heard at more sites
            assert all(p.murmur.site_db[s] >= AUDIBLE_DB for s in p.murmur_locations)
        if p.murmur_status == "Unknown":
            assert fields["Murmur locations"] == "nan"
    rates = [p.heart_rate_bpm for p in drawn]
    assert 60 <= min(rates) and max(rates) <= 140
    infants = [p.heart_rate_bpm for p in drawn if p.age_group == "Infant"]
    adolescents = [p.heart_rate_bpm for p in drawn if p.age_group == "Adolescent"]
    assert np.mean(infants) > np.mean(adolescents) + 20


# ----------------------------------------------------------------------------- reproducibility

def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        run_simulation(tmp_path / name, patients=3, seed=seed, modality="heart", workers=1, progress=False)
    a, b, c = (_digest(tmp_path / n / "circor") for n in "abc")
    assert a == b
    wavs = [k for k in a if k.endswith(".wav")]
    assert wavs and all(a[k] != c.get(k) for k in wavs)


def test_patient_does_not_depend_on_how_many_are_written(tmp_path):
    run_simulation(tmp_path / "two", patients=2, seed=1, modality="heart", workers=1, progress=False)
    run_simulation(tmp_path / "four", patients=4, seed=1, modality="heart", workers=1, progress=False)
    two, four = _digest(tmp_path / "two" / "circor" / "training_data"), _digest(tmp_path / "four" / "circor" / "training_data")
    assert two and all(four[k] == v for k, v in two.items())


def test_rerun_replaces_and_refuses_foreign_folders(tmp_path):
    run_simulation(tmp_path, patients=3, seed=0, modality="heart", workers=1, progress=False)
    (tmp_path / ".circor.partial" / "training_data").mkdir(parents=True)  # as a killed run leaves it
    (tmp_path / ".circor.partial" / "training_data" / "99999.txt").write_text("half written")
    run_simulation(tmp_path, patients=1, seed=0, modality="heart", workers=1, progress=False)
    assert len(list((tmp_path / "circor" / "training_data").glob("*.txt"))) == 1  # no stale patients
    assert not list(tmp_path.glob(".circor*"))  # no partial or old folders left
    foreign = tmp_path / "real"
    (foreign / "circor").mkdir(parents=True)
    with pytest.raises(ValueError, match="not written by `clinlm simulate`"):
        run_simulation(foreign, patients=1, modality="heart", workers=1, progress=False)
    with pytest.raises(ValueError, match="unknown modality"):
        run_simulation(tmp_path, patients=1, modality="eeg", progress=False)
