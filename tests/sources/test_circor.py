"""CirCor adapter: the real sample (counts computed from the files), bad inputs, the CLI."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from conftest import write_wav
from typer.testing import CliRunner

from clinlm.cli import app
from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject, read_records, read_rejects
from clinlm.sources.circor import read

ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
LABELS = {  # a final-release patient file's #Key: value lines, in the publisher's order
    "Age": "Child",
    "Sex": "Female",
    "Height": "98.0",
    "Weight": "15.9",
    "Pregnancy status": "False",
    "Murmur": "Present",
    "Murmur locations": "AV+MV",
    "Most audible location": "MV",
    "Systolic murmur timing": "Early-systolic",
    "Systolic murmur shape": "Decrescendo",
    "Systolic murmur grading": "II/VI",
    "Systolic murmur pitch": "High",
    "Systolic murmur quality": "Blowing",
    "Diastolic murmur timing": "Holodiastolic",
    "Diastolic murmur shape": "Plateau",
    "Diastolic murmur grading": "I/IV",
    "Diastolic murmur pitch": "Low",
    "Diastolic murmur quality": "Harsh",
    "Campaign": "CC2015",
    "Additional ID": "nan",
    "Outcome": "Abnormal",
}


# --- writing the CirCor layout ---------------------------------------------------------------


def _tsv(path: Path, seconds: float, period: float = 0.8, gap_after: float | None = None) -> None:
    """Segmentation with one S1 every `period` s (60/period bpm): 0 until 0.1 s, then cycles.

    With `gap_after`, the cycle starting after that time is unannotated (state 0).
    """
    rows, t = [(0.0, 0.1, 0)], 0.1
    while t + period <= seconds:
        if gap_after is not None and gap_after < t < gap_after + period:
            rows.append((t, t + period, 0))
        else:
            parts = [(0.1, 1), (0.2, 2), (0.1, 3), (period - 0.4, 4)]
            start = t
            for dur, state in parts:
                rows.append((start, start + dur, state))
                start += dur
        t += period
    rows.append((t, seconds, 0))
    path.write_text("".join(f"{a:.5f}\t{b:.5f}\t{s}\n" for a, b, s in rows))


def write_patient(
    folder: Path,
    pid: int,
    locations: tuple[str, ...] = ("AV", "MV"),
    labels: dict[str, str] | None = None,
    newline: str = "\r\n",
    sr: int = 4000,
    seconds: float = 3.0,
    drop: tuple[str, ...] = (),
) -> list[str]:
    """Write <pid>.txt and its recordings; returns the wav stems. `drop` removes keys from LABELS."""
    folder.mkdir(parents=True, exist_ok=True)
    counts, seen, stems = Counter(locations), Counter(), []
    lines = [f"{pid} {len(locations)} {sr}"]
    for loc in locations:
        seen[loc] += 1
        stem = f"{pid}_{loc}_{seen[loc]}" if counts[loc] > 1 else f"{pid}_{loc}"
        write_wav(folder / f"{stem}.wav", seconds=seconds, sr=sr)
        (folder / f"{stem}.hea").write_text(
            f"{stem} 1 {sr} {int(seconds * sr)}\r\n{stem}.wav 16+44 1 16 0 0 0 0 {loc}\r\n"
        )
        _tsv(folder / f"{stem}.tsv", seconds)
        lines.append(f"{loc} {stem}.hea {stem}.wav {stem}.tsv")
        stems.append(stem)
    values = {k: v for k, v in {**LABELS, **(labels or {})}.items() if k not in drop}
    lines += [f"#{k}: {v}" for k, v in values.items()]
    (folder / f"{pid}.txt").write_bytes(newline.join(lines).encode())
    return stems


def split(items) -> tuple[dict[str, Record], list[Reject]]:
    items = list(items)
    assert all(isinstance(i, (Record, Reject)) for i in items)
    return {i.record_id: i for i in items if isinstance(i, Record)}, [i for i in items if isinstance(i, Reject)]


# --- the real sample -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def circor_root(shared_data: Path) -> Path:
    root = shared_data / "circor_physionet2022"
    if not root.is_dir():
        pytest.skip(f"CirCor sample not found at {root}")
    return root


@pytest.fixture(scope="module")
def expected(circor_root: Path) -> dict:
    """What the files say, read here independently of the adapter."""
    data = circor_root / "training_data"
    lines, named = [], set()
    for txt in data.glob("*.txt"):
        for line in txt.read_text().splitlines()[1:]:
            if line.strip() and not line.startswith("#"):
                tokens = line.split()
                lines.append(tokens)
                named.update(tokens[1:])
    companions = {p.name for p in data.iterdir() if p.suffix in {".wav", ".hea", ".tsv"}}
    with open(circor_root / "training_data.csv", newline="") as fh:
        listed = {row["Patient ID"] for row in csv.DictReader(fh)}
    return {
        "lines": lines,
        "wavs_present": sum((data / t[2]).exists() for t in lines),
        "orphans": companions - named,
        "csv_only": listed - {p.stem for p in data.glob("*.txt")},
        "patients": {p.stem for p in data.glob("*.txt")},
    }


@pytest.fixture(scope="module")
def ingested(circor_root: Path, tmp_path_factory):
    return run_ingest("circor", circor_root, tmp_path_factory.mktemp("circor"), progress=False)


def test_real_sample_counts_match_the_files(ingested, expected):
    records, rejects = ingested.records, ingested.rejects
    assert len(records) == len(expected["lines"])  # one record per recording line
    assert sum(bool(r.media) for r in records) == expected["wavs_present"]
    assert ingested.summary["records_without_media"] == len(expected["lines"]) - expected["wavs_present"]
    assert len(rejects) == len(expected["orphans"]) + len(expected["csv_only"])
    assert len(expected["csv_only"]) > 900  # the CSV lists the whole release, the folder holds 30
    missing = [r for r in rejects if r.reason.startswith("patient file missing")]
    assert {r.reason.split(" but ")[1].split(".txt")[0] for r in missing} == expected["csv_only"]
    assert {Path(r.path).name for r in rejects if "orphan" in r.reason} == expected["orphans"]
    assert {r.patient_id.split("/")[1] for r in records} <= expected["patients"] | {
        r.metadata["additional_id"] for r in records if r.metadata["additional_id"]
    }
    assert all(r.sample_rate == 4000 and r.num_channels == 1 and r.num_frames > 0 for r in records if r.media)


def test_real_sample_orphan_tsv_and_duplicate_locations(ingested):
    by_id = {r.record_id: r for r in ingested.records}
    orphan = [r for r in ingested.rejects if Path(r.path).name == "50782_MV.tsv"]
    assert len(orphan) == 1 and orphan[0].reason == "orphan segmentation file: no recording line names it"
    assert by_id["circor/50782_AV_1"].site == by_id["circor/50782_AV_2"].site == "AV"
    assert by_id["circor/50782_AV_1"].media != by_id["circor/50782_AV_2"].media
    no_tsv = by_id["circor/50782_MV_1"]  # its recording line names no .tsv
    assert no_tsv.events == [] and no_tsv.heart_rate_bpm is None and no_tsv.media
    assert by_id["circor/50782_MV_2"].events and by_id["circor/50782_MV_2"].heart_rate_bpm
    assert by_id["circor/50782_AV_1"].age_years is None and by_id["circor/50782_AV_1"].age_group is None  # Age: nan


def test_real_sample_murmur_fields_match_the_patient_file(ingested, circor_root):
    txt = circor_root / "training_data" / "50734.txt"
    raw = dict(
        line[1:].split(": ", 1) for line in txt.read_text().splitlines() if line.startswith("#")
    )
    records = [r for r in ingested.records if r.metadata["circor_patient_id"] == "50734"]
    assert len(records) == int(txt.read_text().split()[1])
    for r in records:
        assert r.source_labels == raw
        assert r.murmur == raw["Murmur"].lower() == "present"
        assert r.murmur_locations == raw["Murmur locations"].split("+")
        assert r.murmur_most_audible == raw["Most audible location"]
        assert r.systolic_grade == ROMAN[raw["Systolic murmur grading"].split("/")[0]] == 3
        assert r.systolic_shape == raw["Systolic murmur shape"].lower()
        assert r.systolic_pitch == raw["Systolic murmur pitch"].lower()
        assert r.systolic_quality == raw["Systolic murmur quality"].lower()
        assert r.systolic_timing == "holosystolic"
        assert r.diastolic_grade is None and r.diastolic_timing is None
        assert r.sex == raw["Sex"].lower() and r.metadata["height_cm"] == float(raw["Height"])
        assert r.abnormal is None  # the early release has no Outcome
    assert sorted(r.site for r in records) == sorted(line.split()[0] for line in txt.read_text().splitlines()[1:6])


def test_real_sample_segmentation_and_heart_rate(ingested, circor_root):
    r = next(r for r in ingested.records if r.record_id == "circor/2530_AV")
    rows = [line.split() for line in (circor_root / "training_data" / "2530_AV.tsv").read_text().splitlines()]
    assert len(r.events) == len(rows)
    assert {e.label for e in r.events} <= {"unannotated", "S1", "systole", "S2", "diastole"}
    assert [e.start_s for e in r.events] == sorted(float(row[0]) for row in rows)
    with_rate = [r.heart_rate_bpm for r in ingested.records if r.heart_rate_bpm is not None]
    assert len(with_rate) >= len(ingested.records) - 1 and all(40 < hr < 220 for hr in with_rate)


def test_real_sample_no_patient_in_two_splits(ingested, tmp_path):
    table = read_records(ingested.out)
    splits: dict[str, set[str]] = {}
    for r in table:
        splits.setdefault(r.patient_id, set()).add(r.split)
    assert all(len(s) == 1 for s in splits.values())
    assert {s for ss in splits.values() for s in ss} <= {"train", "val", "test"}
    assert len(read_rejects(ingested.out)) == len(ingested.rejects)


def test_training_data_folder_as_root_gives_the_same_records(circor_root, expected):
    records, rejects = split(read(circor_root / "training_data"))
    assert len(records) == len(expected["lines"])
    assert len(rejects) == len(expected["orphans"])  # training_data.csv is outside this root


def test_cli_ingest_and_show(circor_root, tmp_path):
    out = tmp_path / "rec"
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "circor", str(circor_root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rejects" in result.output and "patient file missing" in result.output
    assert "without media" in result.output
    shown = runner.invoke(app, ["records", "show", str(out)])
    assert shown.exit_code == 0, shown.output
    for title in ("murmur", "site", "split", "rejects"):
        assert title in shown.output
    assert "present" in shown.output and "orphan segmentation file" in shown.output


# --- bad input, written in the CirCor layout -------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _case_truncated(d: Path):
    write_patient(d, 1001)
    _truncate(d / "1001_AV.wav")
    return "1001_AV.wav", ("truncated",)


def _case_truncated_no_hea(d: Path):
    write_patient(d, 1001)
    _truncate(d / "1001_AV.wav")
    (d / "1001_AV.hea").unlink()
    return "1001_AV.wav", ("truncated wav", "header promises")


def _case_empty(d: Path):
    write_patient(d, 1001)
    (d / "1001_AV.wav").write_bytes(b"")
    return "1001_AV.wav", ("empty",)


def _case_wrong_rate(d: Path):
    write_patient(d, 1001)
    write_wav(d / "1001_AV.wav", seconds=3.0, sr=8000)  # .hea and .txt still say 4000
    return "1001_AV.wav", ("sample rate mismatch", "1001_AV.hea", "4000", "8000")


def _case_wrong_rate_in_patient_file(d: Path):
    write_patient(d, 1001)
    write_wav(d / "1001_AV.wav", seconds=3.0, sr=8000)
    (d / "1001_AV.hea").write_text("1001_AV 1 8000 24000\n1001_AV.wav 16+44 1 16 0 0 0 0 AV\n")  # agrees with the wav
    return "1001_AV.wav", ("sample rate mismatch", "1001.txt", "4000", "8000")


def _case_not_audio(d: Path):
    write_patient(d, 1001)
    (d / "1001_AV.wav").write_bytes(b"<html>this is a web page, not a recording</html>" * 20)
    return "1001_AV.wav", ("not a readable wav",)


@pytest.mark.parametrize(
    "case",
    [_case_truncated, _case_truncated_no_hea, _case_empty, _case_wrong_rate, _case_wrong_rate_in_patient_file, _case_not_audio],
    ids=lambda f: f.__name__[6:],
)
def test_unusable_wav_is_one_reject_with_a_clear_reason(tmp_path, case):
    bad_file, words = case(tmp_path)
    records, rejects = split(read(tmp_path))
    assert len(rejects) == 1, rejects
    assert Path(rejects[0].path).name == bad_file and rejects[0].record_id == f"circor/{Path(bad_file).stem}"
    for word in words:
        assert word in rejects[0].reason, rejects[0].reason
    assert list(records) == ["circor/1001_MV"]  # the patient's other recording is unaffected


def test_missing_wav_keeps_the_labelled_record(tmp_path):
    write_patient(tmp_path, 1001)
    (tmp_path / "1001_AV.wav").unlink()
    records, rejects = split(read(tmp_path))
    r = records["circor/1001_AV"]
    assert rejects == []
    assert r.media == [] and r.sample_rate is None
    assert r.metadata["missing_media"] == [str((tmp_path / "1001_AV.wav").resolve())]
    assert r.murmur == "present" and r.events  # labels and segmentation are still there
    result = run_ingest("circor", tmp_path, tmp_path / "out", progress=False)
    assert result.summary["records_without_media"] == 1


def test_orphan_tsv_is_rejected(tmp_path):
    write_patient(tmp_path, 1001)
    _tsv(tmp_path / "1001_PV.tsv", 3.0)
    records, rejects = split(read(tmp_path))
    assert len(records) == 2
    assert [(Path(r.path).name, r.reason) for r in rejects] == [
        ("1001_PV.tsv", "orphan segmentation file: no recording line names it")
    ]


def test_nan_metadata_is_unknown_not_zero(tmp_path):
    write_patient(tmp_path, 1001, labels={"Age": "nan", "Height": "nan", "Weight": "nan", "Sex": "nan", "Outcome": "nan"})
    records, _ = split(read(tmp_path))
    r = records["circor/1001_AV"]
    assert (r.age_years, r.age_group, r.sex, r.abnormal) == (None, None, None, None)
    assert r.metadata["height_cm"] is None and r.metadata["weight_kg"] is None
    assert "unrecognised_labels" not in r.metadata
    assert r.source_labels["Age"] == "nan"


def test_crlf_and_lf_read_the_same(tmp_path):
    write_patient(tmp_path / "crlf", 1001, newline="\r\n")
    write_patient(tmp_path / "lf", 1001, newline="\n")
    a, _ = split(read(tmp_path / "crlf"))
    b, _ = split(read(tmp_path / "lf"))
    assert (tmp_path / "crlf" / "1001.txt").read_bytes().count(b"\r\n") > 10
    assert a.keys() == b.keys() == {"circor/1001_AV", "circor/1001_MV"}
    for rid in a:
        ra, rb = a[rid].__dict__.copy(), b[rid].__dict__.copy()
        for name in ("media", "source_path"):
            ra.pop(name), rb.pop(name)
        assert ra == rb
    assert a["circor/1001_AV"].source_labels["Outcome"] == "Abnormal"  # no stray "\r"


def test_duplicate_locations_are_two_records(tmp_path):
    write_patient(tmp_path, 1001, locations=("AV", "AV", "PV", "MV", "MV", "Phc"))
    records, rejects = split(read(tmp_path))
    assert rejects == []
    assert sorted(records) == sorted(
        f"circor/{s}" for s in ("1001_AV_1", "1001_AV_2", "1001_PV", "1001_MV_1", "1001_MV_2", "1001_Phc")
    )
    assert records["circor/1001_AV_1"].site == records["circor/1001_AV_2"].site == "AV"
    assert records["circor/1001_Phc"].site == "Phc"


def test_unknown_label_strings_stay_verbatim_and_unknown(tmp_path):
    write_patient(tmp_path, 1001, labels={"Murmur": "Maybe", "Systolic murmur grading": "VII/VI", "Sex": "X", "Age": "Toddler"})
    records, rejects = split(read(tmp_path))
    r = records["circor/1001_AV"]
    assert rejects == []
    assert r.murmur is None and r.systolic_grade is None and r.sex is None and r.age_group is None
    assert r.source_labels["Murmur"] == "Maybe"
    assert r.metadata["unrecognised_labels"] == {
        "Age": ["Toddler"], "Sex": ["X"], "Murmur": ["Maybe"], "Systolic murmur grading": ["VII/VI"]
    }
    assert r.systolic_shape == "decrescendo"  # the recognised fields are unaffected


def test_final_release_vocabulary(tmp_path):
    write_patient(tmp_path, 1001)
    r = split(read(tmp_path))[0]["circor/1001_MV"]
    assert r.abnormal is True and r.murmur == "present"
    assert r.murmur_locations == ["AV", "MV"] and r.murmur_most_audible == "MV"
    assert (r.systolic_timing, r.systolic_shape, r.systolic_grade, r.systolic_pitch, r.systolic_quality) == (
        "early", "decrescendo", 2, "high", "blowing"
    )
    assert (r.diastolic_timing, r.diastolic_shape, r.diastolic_grade, r.diastolic_pitch, r.diastolic_quality) == (
        "holodiastolic", "plateau", 1, "low", "harsh"
    )
    assert r.age_group == "Child" and r.age_years is None and r.sex == "female"
    assert r.metadata["pregnant"] is False and r.metadata["campaign"] == "CC2015"
    assert r.source_labels == LABELS


@pytest.mark.parametrize("outcome, abnormal", [("Abnormal", True), ("Normal", False), (None, None)])
def test_outcome_early_and_final_release(tmp_path, outcome, abnormal):
    if outcome is None:
        write_patient(tmp_path, 1001, drop=("Outcome",))
    else:
        write_patient(tmp_path, 1001, labels={"Outcome": outcome})
    records, _ = split(read(tmp_path))
    assert {r.abnormal for r in records.values()} == {abnormal}
    assert ("Outcome" in records["circor/1001_AV"].source_labels) == (outcome is not None)


def test_heart_rate_from_s1_onsets_skips_unannotated_gaps(tmp_path):
    write_patient(tmp_path, 1001, seconds=6.0)
    _tsv(tmp_path / "1001_MV.tsv", 6.0, period=0.6, gap_after=2.0)  # 100 bpm, one cycle unannotated
    _tsv(tmp_path / "1001_AV.tsv", 1.8, period=0.8)  # only two S1 onsets: too few for a rate
    records, _ = split(read(tmp_path))
    assert records["circor/1001_MV"].heart_rate_bpm == pytest.approx(100.0, abs=0.1)
    assert records["circor/1001_AV"].heart_rate_bpm is None
    assert [e.label for e in records["circor/1001_AV"].events][:5] == ["unannotated", "S1", "systole", "S2", "diastole"]


def test_one_child_in_two_campaigns_is_one_patient(tmp_path):
    write_patient(tmp_path, 69079, labels={"Additional ID": "49595"})
    write_patient(tmp_path, 49595, labels={"Additional ID": "69079", "Campaign": "CC2014"})
    write_patient(tmp_path, 50000)
    result = run_ingest("circor", tmp_path, tmp_path / "out", progress=False)
    by_id = {r.record_id: r for r in result.records}
    assert by_id["circor/69079_AV"].patient_id == by_id["circor/49595_MV"].patient_id == "circor/49595"
    assert by_id["circor/69079_AV"].metadata["circor_patient_id"] == "69079"
    assert by_id["circor/69079_AV"].split == by_id["circor/49595_AV"].split
    assert by_id["circor/50000_AV"].patient_id == "circor/50000"


def test_unreadable_patient_file_and_csv_only_patients(tmp_path):
    root = tmp_path / "dataset"
    write_patient(root / "training_data", 1001)
    write_patient(root / "training_data", 1002)
    (root / "training_data" / "1002.txt").write_text("this is not a patient file\n")
    (root / "training_data.csv").write_text("Patient ID,Murmur\n1001,Present\n1002,Absent\n1003,Absent\n")
    records, rejects = split(read(root))
    reasons = sorted(r.reason for r in rejects)
    assert sorted(records) == ["circor/1001_AV", "circor/1001_MV"]
    assert reasons[0] == "orphan header file: no recording line names it"  # 1002's files, now unnamed
    assert sum("orphan" in r for r in reasons) == 6  # 2 x (.wav, .hea, .tsv)
    assert "patient file missing: listed in training_data.csv but 1003.txt is not in the folder" in reasons
    assert sum(r.startswith("unreadable patient file") for r in reasons) == 1
    assert len(rejects) == 8  # 6 orphans + the bad .txt + the CSV-only patient; 1002 has a .txt


def test_empty_folder_is_one_reject(tmp_path):
    records, rejects = split(read(tmp_path))
    assert records == {} and len(rejects) == 1 and "no CirCor patient files" in rejects[0].reason


def test_indexing_reads_headers_not_samples(tmp_path, monkeypatch):
    import soundfile

    write_patient(tmp_path, 1001)

    def refuse(*args, **kwargs):
        raise AssertionError("the adapter read audio samples while indexing")

    monkeypatch.setattr(soundfile, "read", refuse)
    monkeypatch.setattr(soundfile.SoundFile, "read", refuse)
    records, rejects = split(read(tmp_path))
    assert len(records) == 2 and rejects == []
    assert records["circor/1001_AV"].num_frames == 12000 and records["circor/1001_AV"].duration_s == 3.0


def test_bad_segmentation_keeps_the_record_with_a_note(tmp_path):
    write_patient(tmp_path, 1001, locations=("AV", "PV", "MV"))
    (tmp_path / "1001_AV.tsv").write_text("0\t0.5\t0\n0.5\tabc\t1\n")
    (tmp_path / "1001_PV.tsv").write_text("0\t0.1\t1\n0.1\t0.3\t7\n0.3\t0.4\t3\n")
    (tmp_path / "1001_MV.tsv").unlink()
    records, rejects = split(read(tmp_path))
    assert rejects == []
    av, pv, mv = records["circor/1001_AV"], records["circor/1001_PV"], records["circor/1001_MV"]
    assert av.events == [] and "line 2" in av.metadata["segmentation_problem"]
    assert [e.label for e in pv.events] == ["S1", "S2"] and "[7.0]" in pv.metadata["segmentation_problem"]
    assert mv.events == [] and mv.metadata["missing_segmentation"].endswith("1001_MV.tsv")
    assert all(r.media for r in (av, pv, mv))
