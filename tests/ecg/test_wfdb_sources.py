"""The WFDB-based ECG adapters (wfdb, physionet2017, physionet2021, cpsc2021), the image-folder
adapter, and load_ecg, on the real samples in ../shared/data and on small broken copies.

Every expected count is computed here from the files themselves (csv, scipy.io, numpy, wfdb).
"""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb
from wfdb.io.annotation import is_qrs

from clinlm.records import Record, Reject
from clinlm.signals.ecg import EcgError, load_ecg, read_ecg_header
from clinlm.sources import ADAPTERS, get_adapter


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def test_ecg_adapters_are_registered():
    for name in ("ptbxl", "wfdb", "physionet2017", "physionet2021", "cpsc2021", "ecg-images"):
        assert name in ADAPTERS and callable(get_adapter(name))


# --- generic WFDB folder -----------------------------------------------------------------


@pytest.fixture(scope="module")
def wfdb_sample(shared_data):
    root = shared_data / "wfdb_python_sample_ecg"
    records, rejects = _split(get_adapter("wfdb")(root))
    return root, {r.record_id.split("/")[-1]: r for r in records}, rejects


def test_wfdb_folder_reads_every_header(wfdb_sample):
    root, records, rejects = wfdb_sample
    assert rejects == [] and sorted(records) == sorted(p.stem for p in root.rglob("*.hea"))


def test_mitbih_100_comment_line_blank_line_and_annotations(wfdb_sample):
    root, records, _ = wfdb_sample
    r = records["100"]
    lines = (root / "sample-data" / "100.hea").read_bytes().decode().replace("\r", "").split("\n")
    assert lines[0].startswith("#") and lines[3] == ""  # the quirks: a comment first, a blank line between signals
    assert r.sample_rate == 360 and r.num_frames == 650000 and r.leads == ["V5", "MLII"]
    assert "unnecessary comment" in r.metadata["header_comments"]
    assert (r.age_years, r.sex) == (69.0, "male")  # from "69 M 1085 1629 x1"
    ann = wfdb.rdann(str(root / "sample-data" / "100"), "atr", return_label_elements=["symbol", "label_store"])
    beats = Counter(s for s, code in zip(ann.symbol, ann.label_store) if is_qrs[code])
    assert Counter(e.label for e in r.events if e.kind == "beat") == beats
    rhythm = [e for e in r.events if e.kind == "rhythm"]
    first_mark = next(s for s, n in zip(ann.sample, ann.aux_note) if n.startswith("("))
    assert len(rhythm) == 1 and rhythm[0].label == "normal"
    assert rhythm[0].start_s == pytest.approx(first_mark / 360) and rhythm[0].end_s == pytest.approx(650000 / 360)
    assert r.rhythm == "normal" and 60 < r.heart_rate_bpm < 90


def test_wfdb_non_ecg_channels_and_lower_case_leads(wfdb_sample):
    _, records, _ = wfdb_sample
    a103l = records["a103l"]
    assert a103l.leads == ["II", "V"] and a103l.metadata["other_channels"] == ["PLETH"]
    assert a103l.media_format == "mat" and a103l.num_channels == 2
    ptb = records["s0010_re"]
    assert ptb.leads[:12] == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert ptb.leads[12:] == ["vx", "vy", "vz"] and (ptb.age_years, ptb.sex) == (81.0, "female")
    x, fs, leads = load_ecg(ptb, duration_s=2.0)
    raw = wfdb.rdrecord(ptb.media[0], sampto=2000)
    np.testing.assert_allclose(x[leads.index("aVR")], raw.p_signal[:, raw.sig_name.index("avr")], atol=1e-6)


def test_wfdb_unaccounted_and_truncated_files_are_rejected(shared_data, tmp_path):
    src = shared_data / "wfdb_python_sample_ecg" / "sample-data"
    for name in ("100.hea", "100.dat", "100.atr"):
        shutil.copy(src / name, tmp_path / name)
    shutil.copy(src / "100.atr", tmp_path / "orphan.atr")
    (tmp_path / "v102s.hea").write_bytes((src / "v102s.hea").read_bytes())
    (tmp_path / "v102s.dat").write_bytes((src / "v102s.dat").read_bytes()[:1000])
    records, rejects = _split(get_adapter("wfdb")(tmp_path))
    reasons = {Path(r.path).name: r.reason for r in rejects}
    assert [r.record_id for r in records] == ["wfdb/100"]
    assert "truncated" in reasons["v102s.hea"] and "without a WFDB header" in reasons["orphan.atr"]
    with pytest.raises(EcgError, match="truncated"):
        read_ecg_header(tmp_path / "v102s")


# --- PhysioNet 2017 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pn2017(shared_data):
    folder = shared_data / "physionet2017_af_challenge" / "validation"
    records, rejects = _split(get_adapter("physionet2017")(shared_data / "physionet2017_af_challenge"))
    return folder, records, rejects


def _reference(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        return {row[0]: row[1] for row in csv.reader(fh) if row}


def test_physionet2017_final_labels_and_missing_records(pn2017):
    folder, records, rejects = pn2017
    final = _reference(folder / "REFERENCE.csv")
    assert final == _reference(folder / "REFERENCE-v3.csv")  # REFERENCE.csv is v3
    present = {n for n in final if (folder / f"{n}.hea").exists()}
    assert {r.record_id.split("/")[1] for r in records} == present
    assert len(rejects) == len(final) - len(present) and all("not in the folder" in r.reason for r in rejects)
    names = {"N": "normal", "A": "af", "O": "other", "~": "noisy"}
    assert Counter(r.rhythm for r in records) == Counter(names[final[n]] for n in present)
    assert all(r.leads == ["I"] and r.metadata["lead_aliases"] == {"ECG": "I"} and r.sample_rate == 300 for r in records)


def test_physionet2017_older_label_versions_recorded(pn2017):
    folder, records, _ = pn2017
    final = _reference(folder / "REFERENCE.csv")
    older = {v: _reference(folder / f"REFERENCE-{v}.csv") for v in ("v0", "v1", "v2")}
    changed = 0
    for r in records:
        name = r.record_id.split("/")[1]
        expected = {f"REFERENCE-{v}.csv": labels[name] for v, labels in older.items() if labels.get(name) != final[name]}
        assert r.metadata.get("label_history", {}) == expected
        changed += bool(expected)
    assert changed > 0  # the versions really differ on this sample


def test_physionet2017_mat_signal_in_mv(pn2017):
    folder, records, _ = pn2017
    r = records[0]
    x, fs, leads = load_ecg(r)
    val = scipy.io.loadmat(folder / f"{r.record_id.split('/')[1]}.mat")["val"]  # (1, N) int16
    gain, baseline = r.metadata["channels"][0]["gain"], r.metadata["channels"][0]["baseline"]
    assert leads == ["I"] and fs == 300 and x.shape == val.shape == (1, r.num_frames)
    np.testing.assert_allclose(x, (val - baseline) / gain, atol=1e-6)


# --- PhysioNet 2021 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pn2021(shared_data):
    root = shared_data / "physionet2021_challenge_torch_ecg"
    records, rejects = _split(get_adapter("physionet2021")(root))
    return root, {r.record_id.split("/")[1]: r for r in records}, rejects


def test_physionet2021_dx_codes_and_names(pn2021):
    root, records, rejects = pn2021
    headers = {p.stem: p for p in root.rglob("*.hea")}
    assert rejects == [] and set(records) == set(headers)
    for name, r in records.items():
        dx = re.search(r"^# ?Dx: ?(.*)$", headers[name].read_text(), re.M).group(1).strip().split(",")
        assert r.codes == dx and r.code_system == "snomed"
    assert records["E07510"].statements == ["right bundle branch block", "sinus bradycardia"]
    assert records["E07510"].rhythm == "sinus bradycardia"
    assert records["E07501"].metadata["unscored_codes"] == ["253352002"]  # not scored: listed, not named
    assert all(r.rhythm in (None, "af", "afl", "normal", "sinus bradycardia", "sinus tachycardia", "sinus arrhythmia", "bradycardia", "paced") for r in records.values())


def test_physionet2021_lower_case_mv_unit(pn2021):
    root, records, _ = pn2021
    hr = [n for n in records if n.startswith("HR")]
    assert hr and all(" 1000.0(0)/mv " in (p.read_text()) for p in root.rglob("HR*.hea"))
    r = records[hr[0]]
    assert {c["units"] for c in r.metadata["channels"]} == {"mv"} and r.metadata["source_database"] == "PTB-XL"
    x, fs, leads = load_ecg(r)
    val = scipy.io.loadmat(Path(r.media[0]).with_suffix(".mat"))["val"].astype(float)  # (12, 5000)
    baseline = np.array([c["baseline"] for c in r.metadata["channels"]])[:, None]
    gain = np.array([c["gain"] for c in r.metadata["channels"]])[:, None]
    assert leads == [c["lead"] for c in r.metadata["channels"]]  # already in the standard order
    np.testing.assert_allclose(x, (val - baseline) / gain, atol=1e-6)
    assert 0.05 < np.abs(x).max() < 10  # millivolts, not microvolts or volts


# --- CPSC 2021 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpsc(shared_data):
    root = shared_data / "cpsc2021_paf"
    records, rejects = _split(get_adapter("cpsc2021")(root))
    return root, {r.record_id.split("/")[1]: r for r in records}, rejects


def test_cpsc2021_non_integer_gains_and_baselines(cpsc):
    root, records, rejects = cpsc
    assert rejects == [] and set(records) == {p.stem for p in root.rglob("*.hea")}
    r = records["data_8_2"]
    line = (Path(r.media[0]).with_suffix(".hea")).read_text().splitlines()[2]  # lead II
    gain, baseline = re.search(r" ([0-9.]+)\((-?\d+)\)/mV", line).groups()
    assert r.metadata["channels"][1]["gain"] == pytest.approx(float(gain)) and float(gain) != int(float(gain))
    assert r.metadata["channels"][1]["baseline"] == int(baseline)
    raw = np.fromfile(Path(r.media[0]).with_suffix(".dat"), dtype="<i2", count=2 * 400).reshape(-1, 2).astype(np.int64)
    x, fs, _ = load_ecg(r, duration_s=2.0)
    np.testing.assert_allclose(x[1], (raw[:, 1] - int(baseline)) / float(gain), rtol=1e-5, atol=1e-6)
    assert r.patient_id == "cpsc2021/8" and records["data_8_3"].patient_id == r.patient_id


def test_cpsc2021_record_classes_and_rhythm_intervals(cpsc):
    root, records, _ = cpsc
    classes = {"persistent atrial fibrillation": "persistent af", "paroxysmal atrial fibrillation": "paroxysmal af", "non atrial fibrillation": "non af"}
    for name, r in records.items():
        comment = [l.strip("# \r\n") for l in Path(r.media[0]).with_suffix(".hea").read_text().splitlines() if l.startswith("#")]
        assert r.rhythm == classes[comment[0]]
        ann = wfdb.rdann(r.media[0], "atr")
        marks = [(int(s), n) for s, n in zip(ann.sample, ann.aux_note) if n.startswith("(")]
        opening = [(s, n) for s, n in marks if s < r.num_frames - 1]  # a mark on the last sample only closes
        rhythm = [e for e in r.events if e.kind == "rhythm"]
        assert [round(e.start_s * r.sample_rate) for e in rhythm] == [s for s, _ in opening]
        assert [e.label for e in rhythm] == [{"(AFIB": "af", "(AFL": "afl", "(N": "normal"}[n] for _, n in opening]
        # beats carrying the literal aux note "None" are still beats, and make no rhythm event
        ann_q = wfdb.rdann(r.media[0], "atr", return_label_elements=["label_store"])
        assert sum(e.kind == "beat" for e in r.events) == sum(is_qrs[c] for c in ann_q.label_store)
        if r.rhythm == "persistent af":
            assert r.metadata["af_burden"] > 0.99
        elif r.rhythm == "non af":
            assert r.metadata["af_burden"] == 0 and rhythm == []
        else:
            assert 0 < r.metadata["af_burden"] < 1
    assert any("None" in wfdb.rdann(r.media[0], "atr").aux_note for r in records.values())


# --- ECG image folder --------------------------------------------------------------------


def test_ecg_images_real_folder(shared_data):
    root = shared_data / "ecg_images_ecg_image_kit"
    records, rejects = _split(get_adapter("ecg-images")(root))
    images = [p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")]
    table = next(root.rglob("ecg-samples-metadata.csv"))
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))  # a .csv that is tab-separated
    listed = {r["fname"] for r in rows}
    assert len(records) == len(images) and len(rejects) == len(listed - {p.name for p in images})
    by_name = {Path(r.media[0]).name: r for r in records}
    assert by_name["ecg00019.bmp"].media_format == "bmp" and by_name["ecg00020.jpg"].media_format == "jpeg"
    assert all(r.modality == "ecg" and r.sample_rate is None for r in records)
    labelled = [r for r in records if Path(r.media[0]).name in listed]
    assert labelled and all(r.source_labels.keys() == {"dpi", "color_model"} for r in labelled)


def test_ecg_images_typed_labels_and_bad_file(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), "white").save(tmp_path / "a.png")
    Image.new("RGB", (40, 30), "white").save(tmp_path / "b.jpg")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "labels.csv").write_text(
        "filename,patient_id,rhythm,superclasses,age,sex,split\n"
        "a.png,p1,AF,MI;STTC,70,F,test\n"
        "gone.png,p2,normal,NORM,40,M,train\n"
    )
    records, rejects = _split(get_adapter("ecg-images")(tmp_path))
    a = next(r for r in records if r.media[0].endswith("a.png"))
    assert (a.patient_id, a.rhythm, a.superclasses, a.age_years, a.sex, a.split) == ("ecg-images/p1", "af", ["MI", "STTC"], 70.0, "female", "test")
    assert a.metadata["width_px"] == 40 and a.metadata["height_px"] == 30
    b = next(r for r in records if r.media[0].endswith("b.jpg"))
    assert b.patient_id == "ecg-images/b" and b.rhythm is None and b.source_labels == {}
    reasons = sorted(r.reason for r in rejects)
    assert len(rejects) == 2 and "gone.png is listed" in reasons[0] and "not a readable image" in reasons[1]


# --- load_ecg ----------------------------------------------------------------------------


def test_load_ecg_fixed_lead_order_and_missing_leads(shared_data):
    path = shared_data / "cpsc2021_paf" / "sample-data" / "cpsc2021" / "data_35_4"
    x, fs, leads = load_ecg(path, duration_s=1.0)
    assert leads == ["I", "II"] and x.shape == (2, 200)
    with pytest.raises(EcgError, match="no lead 'V1'"):
        load_ecg(path, duration_s=1.0, leads=["I", "V1"])
    y, _, out = load_ecg(str(path) + ".hea", duration_s=1.0, leads=["II", "aVR", "I"], missing="zeros")
    assert out == ["II", "aVR", "I"] and np.array_equal(y[0], x[1]) and not y[1].any() and np.array_equal(y[2], x[0])
    z, fs2, _ = load_ecg(path, fs=500, duration_s=1.0)
    assert fs2 == 500 and z.shape == (2, 500) and z.dtype == np.float32
    with pytest.raises(EcgError, match="outside the record"):
        load_ecg(path, start_s=1e6)
    with pytest.raises(EcgError, match="header not found"):
        load_ecg(path.with_name("nope"))


def test_model_features_read_the_single_physionet2017_channel_as_lead_i(shared_data):
    """The model's ECG input (signals/ecg_features.py) reads AliveCor's one "ECG" channel as lead I,
    the alias the adapter records, and leaves the other eleven leads empty."""
    from clinlm.signals.ecg_features import EcgFeatureConfig, ecg_matrix

    path = shared_data / "physionet2017_af_challenge" / "validation" / "A00016"
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"{path}.hea not in the shared sample")
    cfg = EcgFeatureConfig(sample_rate=100, seconds=10)
    m = ecg_matrix(path, cfg)  # (samples, 12)
    assert m.shape == (1000, 12)
    assert np.abs(m[:, cfg.leads.index("I")]).max() > 0.1  # a real signal, in mV
    assert not m[:, 1:].any()
