"""PhysioNet/CinC 2016 adapter, on tiny files written here in the publisher's layout.

The real audio is not in ../shared/data; the layout (training-a ... training-f, validation,
REFERENCE.csv `name,-1|1`, REFERENCE-SQI.csv / REFERENCE_withSQI.csv `name,label,sqi`, 2 kHz wav
with a WFDB .hea) follows https://physionet.org/content/challenge-2016/1.0.0/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_wav

from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject
from clinlm.sources.physionet2016 import read

SR = 2000


def write_set(folder: Path, labels: dict[str, str], sqi: dict[str, str] | None = None,
              sqi_name: str = "REFERENCE-SQI.csv", seconds: float = 0.5) -> None:
    """One set folder: a wav + .hea per record, REFERENCE.csv (LF, like the release), optional SQI file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in labels:
        write_wav(folder / f"{name}.wav", seconds=seconds, sr=SR)
        (folder / f"{name}.hea").write_text(f"{name} 1 {SR} {int(seconds * SR)}\n{name}.wav 16+44 1 16 0 0 0 0 PCG\n")
    (folder / "REFERENCE.csv").write_text("".join(f"{n},{v}\n" for n, v in labels.items()))
    if sqi is not None:
        (folder / sqi_name).write_text("".join(f"{n},{labels[n]},{q}\n" for n, q in sqi.items()))
    (folder / "RECORDS").write_text("".join(f"{n}\n" for n in labels))


def split(items) -> tuple[dict[str, Record], list[Reject]]:
    items = list(items)
    assert all(isinstance(i, (Record, Reject)) for i in items)
    return {i.record_id: i for i in items if isinstance(i, Record)}, [i for i in items if isinstance(i, Reject)]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    write_set(tmp_path / "training-a", {"a0001": "1", "a0002": "-1", "a0003": "1"}, sqi={"a0001": "1", "a0002": "0", "a0003": "1"})
    write_set(tmp_path / "training-b", {"b0001": "-1", "b0002": "-1"}, sqi={"b0001": "1", "b0002": "1"}, sqi_name="REFERENCE_withSQI.csv")
    write_set(tmp_path / "validation", {"a0001": "1", "b0002": "-1"})
    return tmp_path


def test_labels_quality_and_ids(dataset):
    records, rejects = split(read(dataset))
    assert rejects == []
    assert sorted(records) == sorted(
        ["physionet2016/training-a/a0001", "physionet2016/training-a/a0002", "physionet2016/training-a/a0003",
         "physionet2016/training-b/b0001", "physionet2016/training-b/b0002",
         "physionet2016/validation/a0001", "physionet2016/validation/b0002"]
    )
    a1, a2 = records["physionet2016/training-a/a0001"], records["physionet2016/training-a/a0002"]
    assert (a1.abnormal, a2.abnormal) == (True, False)
    assert (a1.metadata["signal_quality"], a2.metadata["signal_quality"]) == ("good", "poor")
    assert records["physionet2016/training-b/b0001"].metadata["signal_quality"] == "good"  # REFERENCE_withSQI.csv
    assert "signal_quality" not in records["physionet2016/validation/a0001"].metadata
    assert a2.source_labels == {"label": "-1", "sqi_file_label": "-1", "sqi": "0"}
    assert a1.sample_rate == SR and a1.num_frames == SR // 2 and a1.modality == "heart"
    assert a1.metadata["set"] == "training-a" and a1.site is None
    # a record name found in validation/ and in a training set is one subject
    assert records["physionet2016/validation/a0001"].patient_id == a1.patient_id == "physionet2016/a0001"


def test_a_single_set_folder_is_a_root(dataset):
    records, rejects = split(read(dataset / "training-b"))
    assert sorted(records) == ["physionet2016/training-b/b0001", "physionet2016/training-b/b0002"] and rejects == []


def test_no_patient_in_two_splits(dataset, tmp_path):
    write_set(dataset / "training-e", {f"e{i:05d}": ("1" if i % 4 == 0 else "-1") for i in range(1, 25)})
    result = run_ingest("physionet2016", dataset, tmp_path / "out", progress=False)
    splits: dict[str, set[str]] = {}
    for r in result.records:
        splits.setdefault(r.patient_id, set()).add(r.split)
    assert all(len(s) == 1 for s in splits.values())
    assert len(result.records) == 7 + 24 and {r.split for r in result.records} == {"train", "val", "test"}


def test_bad_inputs_each_give_a_reject_or_a_noted_record(tmp_path):
    folder = tmp_path / "training-c"
    write_set(folder, {"c0001": "1", "c0002": "-1", "c0003": "1", "c0004": "-1", "c0005": "0", "c0006": "1"})
    (folder / "c0001.wav").write_bytes(b"")  # empty
    (folder / "c0002.wav").write_bytes(b"not audio at all" * 10)  # not audio
    write_wav(folder / "c0003.wav", seconds=0.5, sr=4000)  # .hea says 2000 Hz
    (folder / "c0004.wav").unlink()  # listed, audio missing
    write_wav(folder / "c0099.wav", seconds=0.5, sr=SR)  # not listed in REFERENCE.csv
    with open(folder / "REFERENCE.csv", "a") as fh:
        fh.write("c0006,1\r\n\r\nbroken-row\r\n")  # a duplicate row, a blank line, a malformed row
    records, rejects = split(read(tmp_path))
    reasons = {Path(r.path).name: r.reason for r in rejects}
    assert reasons["c0001.wav"].startswith("empty")
    assert reasons["c0002.wav"].startswith("not a readable wav")
    assert "c0003.hea says 2000 Hz" in reasons["c0003.wav"] and "4000 Hz" in reasons["c0003.wav"]
    assert reasons["c0099.wav"] == "unlabelled recording: not listed in training-c/REFERENCE.csv"
    assert any(r.reason.startswith("duplicate REFERENCE.csv row: c0006") for r in rejects)
    assert any(r.reason.startswith("malformed REFERENCE.csv row") for r in rejects)
    assert len(rejects) == 6
    missing = records["physionet2016/training-c/c0004"]
    assert missing.media == [] and missing.metadata["missing_media"] == [str((folder / "c0004.wav").resolve())]
    unknown = records["physionet2016/training-c/c0005"]
    assert unknown.abnormal is None and unknown.metadata["unrecognised_labels"] == {"label": ["0"]}
    assert sorted(records) == ["physionet2016/training-c/c0004", "physionet2016/training-c/c0005", "physionet2016/training-c/c0006"]


def test_folder_without_reference_rejects_each_wav(tmp_path):
    write_set(tmp_path / "training-d", {"d0001": "1", "d0002": "-1"})
    (tmp_path / "training-d" / "REFERENCE.csv").unlink()
    records, rejects = split(read(tmp_path))
    assert records == {}
    assert [(Path(r.path).name, r.reason) for r in rejects] == [
        ("d0001.wav", "unlabelled recording: training-d/REFERENCE.csv is missing"),
        ("d0002.wav", "unlabelled recording: training-d/REFERENCE.csv is missing"),
    ]


def test_nothing_to_read_is_one_reject(tmp_path):
    records, rejects = split(read(tmp_path))
    assert records == {} and len(rejects) == 1 and "no PhysioNet 2016 set folder" in rejects[0].reason
