"""ICBHI 2017 adapter: the real samples (920 annotations, 4 recordings) and ill-formed inputs."""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from clinlm.cli import app
from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject, read_records
from clinlm.sources.icbhi import read

from conftest import write_wav

STEM = re.compile(r"^\d+_[0-9A-Za-z]+_[A-Za-z]{2}_(sc|mc)_[0-9A-Za-z]+$")
LABEL = {("0", "0"): "normal", ("1", "0"): "crackle", ("0", "1"): "wheeze", ("1", "1"): "crackle+wheeze"}


def _split(items):
    records = [i for i in items if isinstance(i, Record)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(records) + len(rejects) == len(items)
    return records, rejects


def _cycles_from_files(folder: Path) -> dict[str, list[tuple[float, float, str]]]:
    """Read every cycle .txt directly (plain split), independent of the adapter."""
    out = {}
    for txt in folder.rglob("*.txt"):
        if STEM.match(txt.stem):
            rows = [line.split("\t") for line in txt.read_text().splitlines() if line.strip()]
            out[txt.stem] = sorted((float(r[0]), float(r[1]), LABEL[(r[2].strip(), r[3].strip())]) for r in rows)
    return out


def _one_split_per_patient(records) -> None:
    splits = defaultdict(set)
    for r in records:
        splits[r.patient_id].add(r.split)
    assert all(len(s) == 1 and None not in s for s in splits.values()), {p: s for p, s in splits.items() if len(s) != 1}


@pytest.mark.shared_data
def test_annotation_only_release_matches_the_cycle_files(shared_data, tmp_path):
    root = shared_data / "icbhi2017_annotations_only"
    expected = _cycles_from_files(root)
    records, rejects = _split(list(read(root)))
    assert rejects == []
    assert len(records) == len(expected) == 920

    # Cycle counts from the files equal the published figures and the Records' events.
    per_cycle = Counter(label for cycles in expected.values() for _, _, label in cycles)
    assert sum(per_cycle.values()) == 6898
    assert (per_cycle["crackle"], per_cycle["wheeze"], per_cycle["crackle+wheeze"]) == (1864, 886, 506)
    for r in records:
        stem = r.record_id.split("/", 1)[1]
        assert [(e.start_s, e.end_s, e.label) for e in r.events] == expected[stem]
        assert r.crackle == any(lab in ("crackle", "crackle+wheeze") for _, _, lab in expected[stem])
        assert r.wheeze == any(lab in ("wheeze", "crackle+wheeze") for _, _, lab in expected[stem])
        # No audio in this release: the Record stays, and says which file it lacks.
        assert r.media == [] and r.metadata["missing_media"][0].endswith(f"{stem}.wav")
        assert r.site == stem.split("_")[2] and r.metadata["acquisition_mode"] == stem.split("_")[3]
    assert len({r.patient_id for r in records}) == len({s.split("_")[0] for s in expected})

    result = run_ingest("icbhi", root, tmp_path / "out", progress=False)
    assert len(result.records) == 920
    _one_split_per_patient(read_records(tmp_path / "out"))


@pytest.mark.shared_data
def test_recordings_with_audio_have_header_rates_and_patient_labels(shared_data):
    root = shared_data / "icbhi2017_respiratory"
    records, rejects = _split(list(read(root)))
    assert rejects == []
    wavs = sorted((root / "audio_and_txt_files").glob("*.wav"))
    assert sorted(r.record_id for r in records) == sorted(f"icbhi/{w.stem}" for w in wavs)
    diagnosis = dict(line.strip().split(",") for line in (root / "data_info" / "patient_diagnosis.csv").read_text().splitlines())
    demographics = {t[0]: t[1:] for t in (line.split() for line in (root / "data_info" / "demographic_info.txt").read_text().splitlines()) if t}
    by_id = {r.record_id: r for r in records}
    for wav in wavs:
        info = sf.info(str(wav))
        r = by_id[f"icbhi/{wav.stem}"]
        assert (r.sample_rate, r.num_frames, r.num_channels) == (info.samplerate, info.frames, info.channels)
        assert r.media == [os.path.abspath(wav)]
        pid = wav.stem.split("_")[0]
        assert r.diagnosis == [diagnosis[pid].lower()]
        assert r.abnormal == (diagnosis[pid].lower() != "healthy")
        age, sex = demographics[pid][0], demographics[pid][1]
        assert r.age_years == float(age) and r.sex == {"F": "female", "M": "male"}[sex]
    # Bit depths really differ in this sample (16, 24 and 32 bit): all read from headers.
    assert len({sf.info(str(w)).subtype for w in wavs}) >= 2


@pytest.mark.shared_data
def test_cli_ingest_of_the_real_sample_exits_0(shared_data, tmp_path):
    out = tmp_path / "rec"
    result = CliRunner().invoke(app, ["ingest", "icbhi", str(shared_data / "icbhi2017_respiratory"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = read_records(out)
    assert len(records) == 4
    _one_split_per_patient(records)


# --- a tiny tree in the official flat layout, with the official split file ---

DX = "101,URTI\n103,Asthma\n156,COPD\n"
DEMO = "\n101 3 F NA 19 99\n103 70 F 33 NA NA\n156 80 M 26.1 NA NA\n"
CYCLES = "0.1\t1.5\t0\t0\n1.5\t3.0\t1\t0\n"


def _tree(root: Path, stems: list[str], split: str | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "patient_diagnosis.csv").write_text(DX)
    (root / "demographic_info.txt").write_text(DEMO.replace("\n", "\r\n"))
    for stem in stems:
        (root / f"{stem}.txt").write_text(CYCLES)
        write_wav(root / f"{stem}.wav", seconds=0.2, sr=4000)
    if split is not None:
        (root / "ICBHI_challenge_train_test.txt").write_text(split)


def test_official_split_is_used_and_patients_stay_whole(tmp_path):
    root = tmp_path / "ICBHI_final_database"
    _tree(root, ["101_1b1_Al_sc_Meditron", "103_2b2_Ar_mc_LittC2SE", "156_2b3_Al_mc_AKGC417L", "156_2b3_Ar_mc_AKGC417L"])
    # 101 is listed under its name from before the device-name fix (filename_differences.txt);
    # 156 straddles train and test in the official file, as it really does.
    (root / "ICBHI_challenge_train_test.txt").write_text(
        "101_1b1_Al_sc_AKGC417L\ttest\n103_2b2_Ar_mc_LittC2SE\ttrain\n"
        "156_2b3_Al_mc_AKGC417L\ttest\n156_2b3_Ar_mc_AKGC417L\ttrain\nnot a row\n"
    )
    records, rejects = _split(list(read(root)))
    split = {r.record_id.split("/")[1]: r for r in records}
    assert split["101_1b1_Al_sc_Meditron"].split == "test"
    assert split["101_1b1_Al_sc_Meditron"].metadata["official_split_listed_as"] == "101_1b1_Al_sc_AKGC417L"
    assert split["103_2b2_Ar_mc_LittC2SE"].split == "train"
    assert {split["156_2b3_Al_mc_AKGC417L"].split, split["156_2b3_Ar_mc_AKGC417L"].split} == {"test"}
    assert split["156_2b3_Ar_mc_AKGC417L"].metadata["official_split"] == "train"
    assert [r.reason.split(":")[0] for r in rejects] == ["malformed split row"]

    result = run_ingest("icbhi", root, tmp_path / "out", progress=False)
    _one_split_per_patient(result.records)
    assert {r.patient_id: r.split for r in result.records}["icbhi/156"] == "test"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


GOOD = "101_1b1_Al_sc_Meditron"
# (case, files to write {name: bytes|str|callable}, expected: ("record", check) or ("reject", reason part))
CASES = [
    ("truncated wav", {f"{GOOD}.txt": CYCLES, f"{GOOD}.wav": _truncate}, ("reject", "truncated wav")),
    ("empty wav", {f"{GOOD}.txt": CYCLES, f"{GOOD}.wav": b""}, ("reject", "empty file")),
    ("non-audio bytes", {f"{GOOD}.txt": CYCLES, f"{GOOD}.wav": b"<html>not a wav</html>" * 20}, ("reject", "not a readable wav")),
    ("non-numeric cycle", {f"{GOOD}.txt": CYCLES + "3.0\tabc\t0\t0\n"}, ("reject", "line 3")),
    ("end before start", {f"{GOOD}.txt": "2.0\t1.0\t0\t0\n"}, ("reject", "end after it starts")),
    ("wrong column count", {f"{GOOD}.txt": "0.1\t1.0\t0\n"}, ("reject", "has 3 columns")),
    ("crackle not 0/1", {f"{GOOD}.txt": "0.1\t1.0\t2\t0\n"}, ("reject", "must be 0 or 1")),
    ("no cycles", {f"{GOOD}.txt": "\n\n"}, ("reject", "no respiratory cycles")),
    ("non-text annotation", {f"{GOOD}.txt": b"\xff\xfe\x00\x01"}, ("reject", "not text")),
    ("bad file name", {"101_1b1_Al.txt": CYCLES}, ("reject", "file name does not follow")),
    ("orphan wav", {f"{GOOD}.wav": None}, ("reject", "no cycle annotation")),
    ("CRLF cycles", {f"{GOOD}.txt": CYCLES.replace("\n", "\r\n")}, ("record", lambda r: [e.label for e in r.events] == ["normal", "crackle"] and r.crackle and not r.wheeze)),
    ("missing wav", {f"{GOOD}.txt": CYCLES}, ("record", lambda r: r.media == [] and r.metadata["missing_media"][0].endswith(f"{GOOD}.wav"))),
    ("NA in demographics", {f"{GOOD}.txt": CYCLES, "demographic_info.txt": "101 NA NA NA NA NA\n"}, ("record", lambda r: r.age_years is None and r.sex is None and "unrecognised_labels" not in r.metadata)),
    ("unknown diagnosis", {f"{GOOD}.txt": CYCLES, "patient_diagnosis.csv": "101,Tuberculosis\r\n"},
     ("record", lambda r: r.diagnosis == [] and r.abnormal is None and r.source_labels["diagnosis"] == "Tuberculosis"
      and r.metadata["unrecognised_labels"] == {"diagnosis": ["Tuberculosis"]})),
    ("unknown sex", {f"{GOOD}.txt": CYCLES, "demographic_info.txt": "101 3 X NA 19 99\n"}, ("record", lambda r: r.sex is None and r.metadata["unrecognised_labels"] == {"sex": ["X"]})),
    ("good recording", {f"{GOOD}.txt": CYCLES, f"{GOOD}.wav": None},
     ("record", lambda r: r.sample_rate == 4000 and r.diagnosis == ["urti"] and r.age_years == 3 and r.metadata["child_weight_kg"] == 19)),
]


@pytest.mark.parametrize("case,files,expected", CASES, ids=[c[0] for c in CASES])
def test_ill_formed_inputs_give_a_reject_or_a_correct_record(tmp_path, case, files, expected):
    root = tmp_path / "icbhi"
    root.mkdir()
    (root / "patient_diagnosis.csv").write_text(DX)
    (root / "demographic_info.txt").write_text(DEMO)
    for name, content in files.items():
        path = root / name
        if name.endswith(".wav") and not isinstance(content, bytes):
            write_wav(path, seconds=0.2, sr=4000)
            if content is not None:
                content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, newline="")
    records, rejects = _split(list(read(root)))
    # Records + rejects account for the one recording, whatever went wrong.
    assert len(records) + len(rejects) == 1, (records, rejects)
    kind, check = expected
    if kind == "reject":
        assert not records and check in rejects[0].reason, rejects[0].reason
        assert rejects[0].path.startswith(str(root))
    else:
        assert not rejects, rejects
        assert check(records[0]), records[0]
