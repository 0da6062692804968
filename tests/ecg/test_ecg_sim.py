"""The ECG simulator: PTB-XL layout read back by the ptbxl adapter, lead physics, rhythm physics."""

from __future__ import annotations

import ast
import csv

import numpy as np
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt

from clinlm.records import Record, Reject
from clinlm.signals.ecg import STANDARD_LEADS, load_ecg
from clinlm.simulate.ecg import CLASSES, CODES, simulate_ecg, simulate_one
from clinlm.sources.ptbxl import read


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("ecg_sim")
    summary = simulate_ecg(out, patients=len(CLASSES), seed=3)  # one patient per class
    items = list(read(out))
    return out, summary, [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ptbxl_adapter_reads_simulation_without_rejects(sim):
    out, summary, records, rejects = sim
    assert rejects == [] and len(records) == summary["records"] == len(CLASSES)
    truth = {int(r["ecg_id"]): r["kind"] for r in _rows(out / "simulation_truth.csv")}
    assert sorted(truth.values()) == sorted(CLASSES)
    for r in records:
        kind = truth[int(r.record_id.split("/")[1])]
        assert r.codes == list(CODES[kind])  # labels round-trip
        assert r.leads == list(STANDARD_LEADS) and r.sample_rate == 500 and r.num_frames == 5000
        assert r.split in ("train", "val", "test")
        expected_super = {"normal": ["NORM"], "stach": ["NORM"], "sbrad": ["NORM"], "clbbb": ["CD"], "crbbb": ["CD"], "ste": ["STTC"], "std": ["STTC"]}
        assert r.superclasses == expected_super.get(kind, [])
        assert r.rhythm == {"af": "af", "stach": "sinus tachycardia", "sbrad": "sinus bradycardia"}.get(kind, "normal")
    db = _rows(out / "ptbxl_database.csv")
    assert all(isinstance(ast.literal_eval(row["scp_codes"]), dict) for row in db)
    assert {int(row["strat_fold"]) for row in db} <= set(range(1, 11))


def test_limb_leads_obey_einthoven_and_goldberger(sim):
    _, _, records, _ = sim
    for r in records:
        x, _, leads = load_ecg(r)
        lead = {name: x[i].astype(np.float64) for i, name in enumerate(leads)}
        # Stored at 1 uV steps: the relations hold to a few quantisation steps.
        assert np.abs(lead["II"] - (lead["I"] + lead["III"])).max() < 0.003
        assert np.abs(lead["aVR"] + lead["aVL"] + lead["aVF"]).max() < 0.003
        assert np.abs(lead["aVF"] - (lead["II"] + lead["III"]) / 2).max() < 0.003
        assert 0.3 < np.ptp(lead["II"]) < 6 and 0.3 < np.ptp(lead["V5"]) < 8  # plausible mV


def _rr(x_lead: np.ndarray, fs: float) -> np.ndarray:
    """R-R intervals (s) from one lead: 5-25 Hz band-pass, squared, peaks >= 0.25 s apart."""
    y = sosfiltfilt(butter(3, [5, 25], btype="bandpass", fs=fs, output="sos"), x_lead) ** 2
    peaks, _ = find_peaks(y, height=0.25 * np.percentile(y, 99.5), distance=int(0.25 * fs))
    return np.diff(peaks) / fs


def test_af_is_irregular_and_rates_match_the_class(sim):
    _, _, records, _ = sim
    by_kind = {}
    for r in records:
        x, fs, leads = load_ecg(r)
        by_kind[r.codes[0] if r.codes[0] != "NORM" else r.codes[1]] = _rr(x[leads.index("II")], fs)
    hr = {k: 60 / np.median(v) for k, v in by_kind.items()}
    assert hr["STACH"] > 100 and hr["SBRAD"] < 60 and 55 < hr["SR"] < 100
    # More records straight from the generator (no files) for a stable comparison.
    rng = np.random.default_rng(11)
    cv = {k: [] for k in ("af", "normal")}
    for k in cv:
        for _ in range(4):
            x, truth = simulate_one(k, rng)
            rr = _rr(x[1], 500)
            cv[k].append(np.std(rr) / np.mean(rr))
    assert min(cv["af"]) > 2 * max(cv["normal"])
    rr_af = by_kind["AFIB"]
    assert np.std(rr_af) / np.mean(rr_af) > 2 * np.std(by_kind["SR"]) / np.mean(by_kind["SR"])


def test_bundle_branch_block_widens_qrs():
    """QRS width measured on the spatial velocity (sum over leads of |dx/dt|) above 30 % of its peak."""

    def qrs_ms(kind):
        widths = []
        for seed in range(3):
            x, _ = simulate_one(kind, np.random.default_rng(seed))
            v = np.abs(np.diff(sosfiltfilt(butter(2, 40, fs=500, output="sos"), x, axis=1), axis=1)).sum(axis=0)
            peaks, _ = find_peaks(v, distance=150, height=0.5 * v.max())
            for p in peaks[1:-1]:
                win = v[p - 60 : p + 60] > 0.3 * v[p]
                widths.append(win.sum() * 2.0)
        return np.median(widths)

    assert qrs_ms("clbbb") > qrs_ms("normal") + 20
    assert qrs_ms("crbbb") > qrs_ms("normal") + 10


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        simulate_ecg(out, patients=2, seed=seed)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    dat = next(f for f in files if f.suffix == ".dat")
    assert (a / dat).read_bytes() != (c / dat).read_bytes()
    with pytest.raises(ValueError, match="at least 1"):
        simulate_ecg(tmp_path / "d", patients=0, seed=0)


def test_rerun_replaces_its_own_folder_but_not_a_foreign_one(tmp_path):
    out = tmp_path / "sim"
    simulate_ecg(out, patients=3, seed=0)
    simulate_ecg(out, patients=1, seed=0)  # fewer records: no stale files from the first run
    items = list(read(out))
    assert len(items) == 1 and isinstance(items[0], Record)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not written by the ECG simulator"):
        simulate_ecg(foreign, patients=1, seed=0)
    assert (foreign / "notes.txt").read_text() == "keep me"
