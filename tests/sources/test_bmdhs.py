"""BMD-HS adapter, on tiny files written here in the repository's published layout.

The real audio is not in ../shared/data. The layout follows the dataset's GitHub repository
(train.csv: patient_id, AS, AR, MR, MS, N, recording_1..recording_8; additional_metadata.csv:
patient_id, Age, Gender, Smoker, Lives; train/<class>_<nnn>_<sup|sit>_<Mit|Tri|Pul|Aor>.wav).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_wav

from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject
from clinlm.sources.bmdhs import read

HEADER = "patient_id,AS,AR,MR,MS,N," + ",".join(f"recording_{i}" for i in range(1, 9))
SLOTS = [f"{posture}_{site}" for posture in ("sup", "sit") for site in ("Mit", "Tri", "Pul", "Aor")]


def names(prefix: str, number: int) -> list[str]:
    return [f"{prefix}_{number:03d}_{slot}" for slot in SLOTS]


def write_dataset(root: Path, rows: list[tuple[str, str, str]], meta: list[str], audio: bool = True) -> None:
    """rows: (patient_id, "AS,AR,MR,MS,N" flags, file prefix); meta: additional_metadata.csv lines."""
    lines = [HEADER]
    for pid, flags, prefix in rows:
        recordings = names(prefix, int(pid.split("_")[1]))
        lines.append(f"{pid},{flags}," + ",".join(recordings))
        if audio:
            for name in recordings:
                write_wav(root / "train" / f"{name}.wav", seconds=0.2, sr=4000)
    (root / "train.csv").write_text("\r\n".join(lines) + "\r\n")
    (root / "additional_metadata.csv").write_text("patient_id,Age,Gender,Smoker,Lives\n" + "\n".join(meta) + "\n")


def split(items) -> tuple[dict[str, Record], list[Reject]]:
    items = list(items)
    assert all(isinstance(i, (Record, Reject)) for i in items)
    return {i.record_id: i for i in items if isinstance(i, Record)}, [i for i in items if isinstance(i, Reject)]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    write_dataset(
        tmp_path,
        [
            ("patient_001", "1,1,1,1,0", "MD"),
            ("patient_002", "0,0,1,0,0", "MR"),
            ("patient_022", "0,0,0,0,1", "MD"),  # real quirk: N=1 but files named MD_022_...
            ("patient_089", "0,0,0,0,1", "N"),
        ],
        ["patient_001,35,M,1,U", "patient_002,37,F,0,R", "patient_022,34,M,1,U", "patient_089,nan,F,0,U"],
    )
    return tmp_path


def test_eight_records_per_patient_with_labels(dataset):
    records, rejects = split(read(dataset))
    assert rejects == [] and len(records) == 32
    md = records["bmdhs/MD_001_sup_Mit"]
    assert md.patient_id == "bmdhs/patient_001" and md.modality == "heart"
    assert md.diagnosis == ["aortic stenosis", "aortic regurgitation", "mitral regurgitation", "mitral stenosis"]
    assert md.abnormal is True
    mr = records["bmdhs/MR_002_sit_Aor"]
    assert mr.diagnosis == ["mitral regurgitation"] and mr.abnormal is True
    assert mr.site == "Aor" and mr.metadata["valve_area"] == "aortic" and mr.metadata["posture"] == "sitting"
    assert (mr.age_years, mr.sex, mr.metadata["smoker"], mr.metadata["residence"]) == (37.0, "female", False, "rural")
    assert mr.sample_rate == 4000 and mr.num_frames == 800
    assert mr.source_labels == {"patient_id": "patient_002", "AS": "0", "AR": "0", "MR": "1", "MS": "0", "N": "0",
                                "Age": "37", "Gender": "F", "Smoker": "0", "Lives": "R"}
    # the label columns decide, not the file prefix
    quirk = records["bmdhs/MD_022_sup_Tri"]
    assert quirk.diagnosis == ["normal"] and quirk.abnormal is False and quirk.metadata["file_class"] == "MD"
    normal = records["bmdhs/N_089_sit_Pul"]
    assert normal.age_years is None and normal.sex == "female"  # Age nan -> unknown
    by_patient: dict[str, list[str]] = {}
    for r in records.values():
        by_patient.setdefault(r.patient_id, []).append(r.site)
    assert all(sorted(sites) == sorted(["Mit", "Tri", "Pul", "Aor"] * 2) for sites in by_patient.values())


def test_no_patient_in_two_splits(dataset, tmp_path):
    result = run_ingest("bmdhs", dataset, tmp_path / "out", progress=False)
    splits: dict[str, set[str]] = {}
    for r in result.records:
        splits.setdefault(r.patient_id, set()).add(r.split)
    assert len(splits) == 4 and all(len(s) == 1 for s in splits.values())


def test_bad_inputs_each_give_a_reject_or_a_noted_record(dataset):
    train = dataset / "train"
    (train / "MD_001_sup_Mit.wav").write_bytes(b"")  # empty
    (train / "MR_002_sup_Tri.wav").write_bytes(b"definitely not a wav" * 10)
    (train / "N_089_sit_Aor.wav").unlink()  # named, missing
    write_wav(train / "AS_500_sup_Mit.wav", seconds=0.2, sr=4000)  # no row names it
    with open(dataset / "train.csv", "a") as fh:
        fh.write("patient_002,1,0,0,0,0," + ",".join(names("AS", 2)) + "\r\n")  # duplicate patient row
        fh.write("patient_300,1,0,0,0,1,AS_300_sup_Mit,,,,,,,\r\n")  # conflicting labels, one recording
    write_wav(train / "AS_300_sup_Mit.wav", seconds=0.2, sr=4000)
    with open(dataset / "additional_metadata.csv", "a") as fh:
        fh.write("patient_400,50,X,maybe,U\n")  # metadata without labels
    records, rejects = split(read(dataset))
    reasons = {Path(r.path).name: r.reason for r in rejects}
    assert reasons["MD_001_sup_Mit.wav"].startswith("empty")
    assert reasons["MR_002_sup_Tri.wav"].startswith("not a readable wav")
    assert reasons["AS_500_sup_Mit.wav"] == "unlabelled recording: no row of train.csv names it"
    assert reasons["additional_metadata.csv"].startswith("patient without labels: patient_400")
    assert any(r.reason == "duplicate train.csv row for patient_002" for r in rejects)
    assert len(rejects) == 5
    missing = records["bmdhs/N_089_sit_Aor"]
    assert missing.media == [] and missing.metadata["missing_media"] == [str((train / "N_089_sit_Aor.wav").resolve())]
    conflict = records["bmdhs/AS_300_sup_Mit"]
    assert conflict.abnormal is None and conflict.diagnosis == ["aortic stenosis"]
    assert conflict.metadata["label_problem"] == "N=1 together with AS"
    assert len(records) == 32 - 2 + 1  # two unusable wavs out, patient_300's one recording in


def test_unknown_values_stay_verbatim(tmp_path):
    write_dataset(tmp_path, [("patient_005", "1,0,yes?,0,0", "AS")], ["patient_005,forty,Q,1,X"])
    records, rejects = split(read(tmp_path))
    r = records["bmdhs/AS_005_sup_Mit"]
    assert rejects == [] and len(records) == 8
    assert r.diagnosis == ["aortic stenosis"] and r.abnormal is True
    assert r.age_years is None and r.sex is None and r.metadata["residence"] is None
    assert r.metadata["unrecognised_labels"] == {"MR": ["yes?"], "Age": ["forty"], "Gender": ["Q"], "Lives": ["X"]}
    assert r.source_labels["MR"] == "yes?" and r.source_labels["Age"] == "forty"


def test_missing_train_csv_is_reported(tmp_path):
    write_wav(tmp_path / "train" / "AS_001_sup_Mit.wav", seconds=0.2, sr=4000)
    records, rejects = split(read(tmp_path))
    assert records == {}
    assert [r.reason.split(":")[0] for r in rejects] == ["no train.csv here", "unlabelled recording"]
