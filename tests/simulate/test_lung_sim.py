"""The lung simulator: ICBHI layout, cycle annotations that match the sounds, clinical diagnoses.

Crackle and wheeze claims are checked on the written .wav + cycle .txt with simple features
computed here: crackles are short transients standing out of their local background, wheezes
are spectral peaks that persist for at least 100 ms.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import ndimage, signal
from sklearn.metrics import roc_auc_score

from clinlm.simulate import patient_rng, run_simulation
from clinlm.simulate.patients import draw_lung_patient

STEM = re.compile(r"^(\d+)_(\w+)_(Tc|Al|Ar|Pl|Pr|Ll|Lr)_(sc|mc)_(Meditron|LittC2SE|Litt3200|AKGC417L)$")


def read_cycles(txt: Path) -> list[tuple[float, float, int, int]]:
    return [(float(a), float(b), int(c), int(w)) for a, b, c, w in (l.split("\t") for l in txt.read_text().splitlines())]


def crackle_rates(x: np.ndarray, fs: int, cycles) -> list[float]:
    """Per cycle: rate (per s) of short (<= 24 ms) high-passed bursts 2.5x above the local median."""
    y = signal.sosfiltfilt(signal.butter(4, 150, btype="highpass", fs=fs, output="sos"), x)
    frame = int(0.004 * fs)
    rates = []
    for a, b, _, _ in cycles:
        seg = y[int(a * fs) : int(b * fs)]
        e = np.sqrt(np.mean(seg[: seg.size // frame * frame].reshape(-1, frame) ** 2, axis=1))
        above = e > 2.5 * ndimage.median_filter(e, size=30, mode="nearest")  # 120 ms background
        edges = np.diff(np.concatenate([[0], above.astype(int), [0]]))
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        rates.append(float(np.sum(runs <= 6) / (b - a)))
    return rates


def crackle_score(x: np.ndarray, fs: int, cycles) -> float:
    return max(crackle_rates(x, fs, cycles))


def wheeze_score(x: np.ndarray, fs: int, cycles) -> float:
    """Highest spectral peakiness (peak / median power, 150-1000 Hz) sustained for 100 ms."""
    best = -np.inf
    for a, b, _, _ in cycles:
        nper, hop = int(0.064 * fs), int(0.016 * fs)
        f, _, z = signal.stft(x[int(a * fs) : int(b * fs)], fs, nperseg=nper, noverlap=nper - hop)
        p = np.abs(z[(f >= 150) & (f <= 1000)]) ** 2 + 1e-20
        peaky = np.log10(p.max(0) / np.median(p, 0))
        if peaky.size >= 7:
            best = max(best, float(ndimage.minimum_filter1d(peaky, 7).max()))  # 7 hops ~ 100 ms
    return best


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    run_simulation(out, patients=16, seed=0, modality="lung", workers=1, progress=False)
    return out


def recordings(sim: Path):
    for txt in sorted((sim / "icbhi" / "audio_and_txt_files").glob("*.txt")):
        x, fs = sf.read(txt.with_suffix(".wav"))
        yield txt, x, fs, read_cycles(txt)


def test_layout_parses_like_icbhi(sim):
    folder = sim / "icbhi" / "audio_and_txt_files"
    pids = set()
    for txt, x, fs, cycles in recordings(sim):
        m = STEM.match(txt.stem)
        assert m, txt.name
        pids.add(m.group(1))
        info = sf.info(txt.with_suffix(".wav"))
        assert info.samplerate == (4000 if m.group(5) == "Litt3200" else 8000)
        assert info.subtype in ("PCM_16", "PCM_24") and info.channels == 1
        assert 15.0 <= info.duration <= 18.0
        assert cycles and all(c in (0, 1) and w in (0, 1) for *_, c, w in cycles)
        assert all(0 <= a < b <= info.duration for a, b, *_ in cycles)
        assert all(cycles[i][1] == cycles[i + 1][0] for i in range(len(cycles) - 1))  # back to back
        assert all(1.4 <= b - a <= 7.0 for a, b, *_ in cycles)
        assert all(re.fullmatch(r"\d+(\.\d{1,3})?", v) for l in txt.read_text().splitlines() for v in l.split("\t")[:2])
    assert {p.suffix for p in folder.iterdir()} == {".wav", ".txt"}

    diag = (sim / "icbhi" / "data_info" / "patient_diagnosis.csv").read_bytes().decode()
    assert not diag.endswith("\n") and "\n" not in diag.replace("\r\n", "")
    rows = [l.split(",") for l in diag.split("\r\n")]
    assert {r[0] for r in rows} == pids and all(len(r) == 2 for r in rows)

    demo = (sim / "icbhi" / "data_info" / "demographic_info.txt").read_bytes().decode()
    assert demo.startswith("\r\n")
    for line in demo.split("\r\n")[1:]:
        pid, age, sex, bmi, weight, height = line.split(" ")
        assert pid in pids and sex in ("M", "F")
        adult = float(age) >= 18
        assert (bmi != "NA") == adult and (weight != "NA") == (height != "NA") == (not adult)


def test_crackles_are_audible(sim):
    labels, scores = [], []
    for _, x, fs, cycles in recordings(sim):
        labels.append(int(any(c for *_, c, _ in cycles)))
        scores.append(crackle_score(x, fs, cycles))
    assert 5 <= sum(labels) <= len(labels) - 5
    assert roc_auc_score(labels, scores) > 0.9


def test_wheezes_are_audible(sim):
    labels, scores = [], []
    for _, x, fs, cycles in recordings(sim):
        labels.append(int(any(w for *_, w in cycles)))
        scores.append(wheeze_score(x, fs, cycles))
    assert 4 <= sum(labels) <= len(labels) - 5
    assert roc_auc_score(labels, scores) > 0.9


def test_cycle_labels_are_per_cycle(sim):
    """A crackle label sits on the cycles that crackle: those cycles score higher than clean ones."""
    crackling, clean = [], []
    for _, x, fs, cycles in recordings(sim):
        for cycle, rate in zip(cycles, crackle_rates(x, fs, cycles)):
            (crackling if cycle[2] else clean).append(rate)
    assert len(crackling) >= 5
    assert np.median(crackling) > 3 * max(np.median(clean), 0.05)
    assert roc_auc_score([1] * len(crackling) + [0] * len(clean), crackling + clean) > 0.85


def test_diagnoses_are_drawn_clinically():
    drawn = [draw_lung_patient(str(1001 + i), patient_rng(0, "lung", i)) for i in range(400)]
    by_dx = defaultdict(list)
    for p in drawn:
        by_dx[p.diagnosis].append(p)
    assert min(p.age_years for p in by_dx["COPD"]) >= 50 and max(p.age_years for p in by_dx["Bronchiolitis"]) <= 2

    def mean(dx: str, attr: str) -> float:
        return float(np.mean([getattr(r, attr) for p in by_dx[dx] for r in p.recordings]))

    assert mean("Asthma", "wheeze_prob") > 5 * mean("Asthma", "crackle_prob")
    assert mean("Pneumonia", "crackle_prob") > 5 * mean("Pneumonia", "wheeze_prob")
    assert mean("COPD", "crackle_prob") > 5 * mean("Healthy", "crackle_prob")
    assert mean("COPD", "wheeze_prob") > 5 * mean("Healthy", "wheeze_prob")
    for p in drawn:
        assert (p.bmi is not None) == (p.age_years >= 18)
        assert len({r.site for r in p.recordings}) == len(p.recordings)


def test_same_seed_same_bytes(tmp_path):
    for name, seed in (("a", 2), ("b", 2), ("c", 3)):
        run_simulation(tmp_path / name, patients=2, seed=seed, modality="lung", workers=1, progress=False)
    files = lambda n: {p.name: p.read_bytes() for p in sorted((tmp_path / n / "icbhi").rglob("*")) if p.is_file()}
    assert files("a") == files("b") and files("a") != files("c")
