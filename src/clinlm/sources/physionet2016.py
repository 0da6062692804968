"""PhysioNet/CinC Challenge 2016 heart sounds (normal/abnormal), read as PhysioNet lays them out.

Layout (https://physionet.org/content/challenge-2016/1.0.0/), one folder per source database:

    <root>/training-a ... training-f/, validation/
        REFERENCE.csv          `<record>,<label>`, no header: -1 normal, 1 abnormal
        REFERENCE-SQI.csv      `<record>,<label>,<sqi>` (1.0.0 name; the 2016-07-25 update calls it
                               REFERENCE_withSQI.csv): sqi 1 = good enough to classify, 0 = poor/unsure
        <record>.wav           2 kHz PCM mono (training-a also has a .dat with a simultaneous ECG)
        <record>.hea           WFDB header (rate, length; training-a lists PCG and ECG)
        RECORDS, RECORDS-normal, RECORDS-abnormal, checksums  (not read: REFERENCE.csv is the list)

`root` is the folder holding the set folders (or a `training/` folder one level down), or a single
set folder. The real audio is not in ../shared/data: the tests write tiny files in this layout.

One Record per REFERENCE.csv row: `record_id` "physionet2016/<set>/<record>", `abnormal` from the
label, `metadata["signal_quality"]` "good"/"poor" from the SQI file when present,
`metadata["set"]` the folder name, `source_labels` the raw label (and sqi file columns). Sample rate
and length come from the wav header and must agree with the .hea (else a Reject with both numbers).

Patients: the publisher does not distribute subject ids ("each subject may have contributed between
one and six recordings", and records of one subject are not numerically adjacent), so no adapter
can group them. `patient_id` is "physionet2016/<record>" (not per folder): record names are unique
across the training sets (the letter prefix names the set), so a name found both in `validation/`
and in a training folder is treated as one subject and lands in one split (the conservative
choice: a copy can never leak across splits). Splits are otherwise by recording, and recordings of
one subject may still straddle splits: a limit of the data, not of this adapter.

Kept with a note: a listed record whose wav is missing (`media=[]`, `metadata["missing_media"]`),
a label or sqi we do not recognise (field None, raw value in `source_labels`,
`metadata["unrecognised_labels"]`). Rejected: an unusable wav (AudioError message), a .hea that
disagrees with the wav, a malformed or duplicate REFERENCE.csv row, and a wav that no REFERENCE.csv
row names (or whose folder has no REFERENCE.csv).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Iterator

from clinlm.records import Record, Reject
from clinlm.signals.audio import AudioError
from clinlm.sources._hea import HeaderError, hea_conflict
from clinlm.sources._values import Unrecognised, media_fields

DATASET = "physionet2016"
SET_NAME = re.compile(r"training-[a-z]|validation", re.IGNORECASE)
REFERENCE = "REFERENCE.csv"
SQI_FILES = ("REFERENCE-SQI.csv", "REFERENCE_withSQI.csv")
LABEL = {"-1": False, "1": True}  # False normal, True abnormal
SQI = {"1": "good", "0": "poor"}


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per REFERENCE.csv row of every set folder, and a Reject per unusable input."""
    root = Path(root)
    folders = _set_folders(root)
    if not folders:
        yield Reject(DATASET, str(root), "no PhysioNet 2016 set folder here: expected training-a ... "
                     "training-f or validation folders with REFERENCE.csv and .wav files")
    for folder in folders:
        yield from _read_set(folder)


def _is_set(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    has_content = (folder / REFERENCE).is_file() or any(folder.glob("*.wav"))
    return has_content and (SET_NAME.fullmatch(folder.name) is not None or (folder / REFERENCE).is_file())


def _set_folders(root: Path) -> list[Path]:
    if _is_set(root):
        return [root]
    return [d for pattern in ("*", "*/*") for d in sorted(root.glob(pattern)) if _is_set(d)]


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [row for row in csv.reader(fh)]


def _read_set(folder: Path) -> Iterator[Record | Reject]:
    ref = folder / REFERENCE
    listed: set[str] = set()
    if not ref.is_file():
        why = f"unlabelled recording: {folder.name}/{REFERENCE} is missing"
    else:
        why = f"unlabelled recording: not listed in {folder.name}/{REFERENCE}"
        try:
            rows = _read_csv(ref)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            yield Reject(DATASET, str(ref), f"unreadable {REFERENCE} ({exc})")
            rows = []
            why = f"unlabelled recording: {folder.name}/{REFERENCE} could not be read"
        sqi = _read_sqi(folder)
        for lineno, row in enumerate(rows, start=1):
            cells = [c.strip() for c in row]
            if not any(cells):
                continue  # a blank line (often the last) is not a row
            if len(cells) < 2 or not cells[0]:
                yield Reject(DATASET, f"{ref}:{lineno}", f"malformed {REFERENCE} row: expected '<record>,<label>', found {row!r}")
                continue
            name, label = cells[0], cells[1]
            if name in listed:
                yield Reject(DATASET, f"{ref}:{lineno}", f"duplicate {REFERENCE} row: {name} is listed twice")
                continue
            listed.add(name)
            yield from _recording(folder, ref, name, label, sqi.get(name))
    for wav in sorted(folder.glob("*.wav")):
        if wav.stem not in listed:
            yield Reject(DATASET, str(wav), why)


def _read_sqi(folder: Path) -> dict[str, list[str]]:
    """record name -> [label, sqi] from the signal-quality file, {} when there is none."""
    for name in SQI_FILES:
        path = folder / name
        if path.is_file():
            try:
                rows = _read_csv(path)
            except (OSError, UnicodeDecodeError, csv.Error):
                return {}
            return {r[0].strip(): [c.strip() for c in r[1:3]] for r in rows if len(r) >= 3 and r[0].strip()}
    return {}


def _recording(folder: Path, ref: Path, name: str, label: str, sqi_row: list[str] | None) -> Iterator[Record | Reject]:
    record_id = f"{DATASET}/{folder.name}/{name}"
    u = Unrecognised()
    source_labels = {"label": label}
    metadata: dict[str, Any] = {"set": folder.name}
    abnormal = u.choice("label", label, LABEL)
    if sqi_row is not None:
        source_labels["sqi_file_label"], source_labels["sqi"] = sqi_row
        metadata["signal_quality"] = u.choice("sqi", sqi_row[1], SQI)

    wav, hea = folder / f"{name}.wav", folder / f"{name}.hea"
    media: dict[str, Any] = {}
    if not wav.exists():
        metadata["missing_media"] = [str(wav.resolve())]
    else:
        try:
            media = media_fields(wav)  # header only; raises AudioError when unusable
        except AudioError as exc:
            yield Reject(DATASET, str(wav), str(exc), record_id)
            return
        if hea.exists():
            try:
                conflict = hea_conflict(hea, media["sample_rate"], media["num_frames"])
            except HeaderError as exc:
                metadata["header_problem"] = str(exc)
                conflict = None
            if conflict:
                yield Reject(DATASET, str(wav), conflict, record_id)
                return
        else:
            metadata["missing_header"] = str(hea.resolve())

    yield Record(
        record_id=record_id,
        patient_id=f"{DATASET}/{name}",
        dataset=DATASET,
        modality="heart",
        abnormal=abnormal,
        source_labels=source_labels,
        metadata=u.into(metadata),
        source_path=str(ref.resolve()),
        **media,
    )
