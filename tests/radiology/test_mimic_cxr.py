"""MIMIC-CXR free-text reports in files/pXX/pXXXXXXXX/sNNNNNNNN.txt, written here in that layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject, read_records
from clinlm.sources import get_adapter
from clinlm.sources.mimic_cxr import section_name, split_sections

STANDARD = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 
 INDICATION:  ___F with new onset ascites  // eval for infection
 
 TECHNIQUE:  Chest PA and lateral
 
 COMPARISON:  None.
 
 FINDINGS: 
 
 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.
 
 IMPRESSION: 
 
 No acute cardiopulmonary process.
"""

CONCLUSION = """                                 FINAL REPORT
 HISTORY:  Shortness of breath at 10:30 today.
 
 FINDINGS:  Mild cardiomegaly.  Small left pleural effusion.
 
 CONCLUSION:  Small left effusion, new since ___.
"""

NO_FINDINGS = """                                 FINAL REPORT
 INDICATION:  Line placement.
 
 IMPRESSION:  Right IJ line ends in the SVC.  No pneumothorax.
"""

COMBINED = """                                 FINAL REPORT
 INDICATION:  Fever.
 
 FINDINGS AND IMPRESSION:  Lungs are clear.  No effusion.
"""

WET_READ_EMPTY_FIRST = (
    " WET READ: ___ ___ ___ 3:56 PM\r\n  No pneumothorax.\r\n"
    " FINAL REPORT\r\n FINDINGS:\r\n \r\n CHEST, PA AND LATERAL:\r\n  Heart size is normal:  lungs are clear.\r\n"
    " IMPRESSION:\r\n  Normal chest.\r\n"
)

NO_IMPRESSION = """ FINAL REPORT
 FINDINGS:  ET tube 4 cm above the carina.  Lungs clear.
"""


def _write(root: Path, patient: str, study: str, text: str) -> Path:
    path = root / "files" / patient[:3] / patient / f"{study}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.fixture()
def mimic(tmp_path: Path) -> Path:
    _write(tmp_path, "p10000032", "s50414267", STANDARD)
    _write(tmp_path, "p10000032", "s53189527", CONCLUSION)
    _write(tmp_path, "p10000764", "s57375967", NO_FINDINGS)
    _write(tmp_path, "p10000898", "s50771383", COMBINED)
    _write(tmp_path, "p10000935", "s51178377", WET_READ_EMPTY_FIRST)
    _write(tmp_path, "p10000935", "s55697293", NO_IMPRESSION)
    (tmp_path / "files" / "p10" / "p10000032" / "s50414267").mkdir()
    (tmp_path / "files" / "p10" / "p10000032" / "s50414267" / "02aa804e.dcm").write_bytes(b"")
    stray = tmp_path / "files" / "p10" / "s59999999.txt"  # a report outside a patient folder
    stray.write_text(STANDARD)
    return tmp_path


def test_sections_and_rejects(mimic: Path) -> None:
    items = list(get_adapter("mimic-cxr")(mimic))
    assert len(items) == 7  # every report file accounted for
    records = {r.record_id: r for r in items if isinstance(r, Record)}
    rejects = {Path(r.path).stem: r.reason for r in items if isinstance(r, Reject)}

    std = records["mimic-cxr/s50414267"]
    assert std.patient_id == "mimic-cxr/p10000032" and std.modality == "report"
    assert std.findings.startswith("There is no focal consolidation") and std.findings.endswith("silhouette is normal.")
    assert "  " not in std.findings and "\n" not in std.findings
    assert std.impression == "No acute cardiopulmonary process."
    assert std.indication == "___F with new onset ascites // eval for infection"  # ___ kept
    assert std.comparison == "None."
    assert std.metadata["technique"] == "Chest PA and lateral" and std.metadata["images"] == ["02aa804e.dcm"]

    concl = records["mimic-cxr/s53189527"]
    assert concl.impression == "Small left effusion, new since ___."  # CONCLUSION is the impression
    assert concl.indication == "Shortness of breath at 10:30 today."  # HISTORY when no INDICATION

    wet = records["mimic-cxr/s51178377"]
    assert wet.findings == "Heart size is normal: lungs are clear."  # empty FINDINGS:, then a view heading
    assert wet.impression == "Normal chest."

    assert rejects["s57375967"].startswith("missing findings section")
    assert rejects["s50771383"].startswith("missing findings section") and "combined" in rejects["s50771383"]
    assert rejects["s55697293"].startswith("missing impression section")
    assert "not in the files/pXX" in rejects["s59999999"]


def test_section_names() -> None:
    assert section_name("CONCLUSION") == "impression"
    assert section_name("FINDINGS AND IMPRESSION") == "impression"
    assert section_name("IMPRESSIONS") == "impression"
    assert section_name("REASON FOR EXAMINATION") == "indication"
    assert section_name("CHEST, PA AND LATERAL") == "findings"
    assert section_name("NOTIFICATION") == "notification"
    sections, headings = split_sections("FINDINGS: a.\nIMPRESSION: b.\nFINDINGS: c.")
    assert sections == {"findings": "a. c.", "impression": "b."} and headings == ["FINDINGS", "IMPRESSION", "FINDINGS"]
    sections, headings = split_sections("no headings at all")
    assert sections == {"preamble": "no headings at all"} and headings == []


def test_ingest_keeps_a_patient_in_one_split(mimic: Path, tmp_path: Path) -> None:
    result = run_ingest("mimic-cxr", mimic, tmp_path / "rec", progress=False)
    records = read_records(tmp_path / "rec")
    assert len(records) == 3 and len(result.rejects) == 4
    by_patient: dict[str, set] = {}
    for r in records:
        by_patient.setdefault(r.patient_id, set()).add(r.split)
    assert by_patient["mimic-cxr/p10000032"] and len(by_patient["mimic-cxr/p10000032"]) == 1


def test_empty_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="files/pXX"):
        list(get_adapter("mimic-cxr")(tmp_path))
