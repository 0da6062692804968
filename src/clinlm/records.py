"""The Record: one recording, signal or report, and its table storage.

Every adapter in `clinlm.sources` turns a dataset's native layout into `Record`s; everything
downstream (bench builder, probes, evaluation) reads only this table. One schema fits every
modality (`heart`, `lung`, `cough`, `ecg`, `report`): a field a dataset does not label stays
None, which always means *unknown*, never *absent*.

Labels are kept twice:
- `source_labels`: the dataset's own fields, verbatim (JSON object of strings), so nothing is lost;
- the shared vocabulary below (murmur, crackle, wheeze, diagnosis, codes, ...), typed, which the
  bench builder and the evaluator understand across datasets.

Shared vocabulary (values are lower-case):
- `murmur`: "present" | "absent" | "unknown" (CirCor's own "Unknown" = annotators could not tell).
- `murmur_locations`: sites where the murmur is audible; `murmur_most_audible`: one site.
- `systolic_*` / `diastolic_*`: timing ("early", "mid", "late", "holosystolic", ...), shape
  ("crescendo", "decrescendo", "diamond", "plateau"), grade (int, Levine 1-6 systolic, 1-4
  diastolic), pitch ("low", "medium", "high"), quality ("blowing", "harsh", "musical").
- `crackle`, `wheeze`: any cycle of the recording has one (None when not annotated).
- `events`: timed annotations, each {start_s, end_s, kind, label}; kinds:
  "heart_state" (label S1/systole/S2/diastole/unannotated, from CirCor .tsv),
  "resp_cycle" (label normal/crackle/wheeze/crackle+wheeze, from ICBHI cycles),
  "sound_event" (label as the dataset names the event, e.g. SPRSound "Fine Crackle"),
  "rhythm" (label e.g. "afib", "normal", from ECG rhythm annotations),
  "beat" (label the beat symbol, e.g. "N", "V").
- `diagnosis`: condition names, lower-case ("copd", "urti", "healthy", "mitral regurgitation").
- `abnormal`: the dataset's normal/abnormal verdict when it gives one (PhysioNet 2016,
  SPRSound record annotation, CirCor Outcome).
- `cough_status`: COUGHVID/Coswara status ("healthy", "covid-19", "symptomatic", "exposed", "recovered").
- ECG: `leads` (fixed order), `codes` + `code_system` ("scp", "snomed", "physionet2017"),
  `statements` (human-readable diagnostic statements), `superclasses` (PTB-XL NORM/MI/STTC/CD/HYP),
  `rhythm`.
- Report: `findings`, `impression`, `indication`, `comparison` text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

MODALITIES = ("heart", "lung", "cough", "ecg", "report")
SPLITS = ("train", "val", "test")
RECORDS_FILE = "records.parquet"
REJECTS_FILE = "rejects.parquet"
SUMMARY_FILE = "summary.json"


@dataclass
class Event:
    start_s: float
    end_s: float
    kind: str  # heart_state | resp_cycle | sound_event | rhythm | beat
    label: str


@dataclass
class Record:
    record_id: str  # unique within the table, e.g. "circor/50782_AV_1"
    patient_id: str  # unique within the table, e.g. "circor/50782"
    dataset: str  # adapter name, e.g. "circor"
    modality: str  # heart | lung | cough | ecg | report
    media: list[str] = field(default_factory=list)  # absolute paths (audio, WFDB base, image)
    media_format: str | None = None  # "wav", "flac", "ogg", "webm", "wfdb", "mat", "png", ...
    sample_rate: float | None = None  # Hz, from the file header
    num_frames: int | None = None  # samples per channel, from the header
    duration_s: float | None = None
    num_channels: int | None = None
    site: str | None = None  # auscultation site as the dataset names it (AV, PV, TV, MV, Phc, Al, Tc, p1 ...)
    device: str | None = None
    age_years: float | None = None
    age_group: str | None = None  # dataset's own group ("Child", "Infant", ...) when no number
    sex: str | None = None  # "female" | "male"
    # --- shared label vocabulary (None = unknown / not labelled) ---
    abnormal: bool | None = None
    diagnosis: list[str] = field(default_factory=list)
    murmur: str | None = None
    murmur_locations: list[str] = field(default_factory=list)
    murmur_most_audible: str | None = None
    systolic_timing: str | None = None
    systolic_shape: str | None = None
    systolic_grade: int | None = None
    systolic_pitch: str | None = None
    systolic_quality: str | None = None
    diastolic_timing: str | None = None
    diastolic_shape: str | None = None
    diastolic_grade: int | None = None
    diastolic_pitch: str | None = None
    diastolic_quality: str | None = None
    crackle: bool | None = None
    wheeze: bool | None = None
    heart_rate_bpm: float | None = None
    cough_status: str | None = None
    events: list[Event] = field(default_factory=list)
    # ECG
    leads: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    code_system: str | None = None
    statements: list[str] = field(default_factory=list)
    superclasses: list[str] = field(default_factory=list)
    rhythm: str | None = None
    # report text
    findings: str | None = None
    impression: str | None = None
    indication: str | None = None
    comparison: str | None = None
    # provenance and the rest
    source_labels: dict[str, str] = field(default_factory=dict)  # the dataset's own terms, verbatim
    metadata: dict[str, Any] = field(default_factory=dict)  # height, weight, campaign, ... (JSON)
    source_path: str | None = None  # the annotation/metadata file the record came from
    split: str | None = None  # train | val | test; an adapter sets it only for official splits

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        self.events = [e if isinstance(e, Event) else Event(**e) for e in self.events]


@dataclass
class Reject:
    """An input that could not become a Record, with a reason a person understands."""

    dataset: str
    path: str
    reason: str
    record_id: str | None = None


_EVENT = pa.struct(
    [("start_s", pa.float64()), ("end_s", pa.float64()), ("kind", pa.string()), ("label", pa.string())]
)
_LIST_STR = pa.list_(pa.string())
_TYPES = {
    "str": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "list[str]": _LIST_STR,
    "list[Event]": pa.list_(_EVENT),
    "dict[str, str]": pa.string(),  # stored as JSON text
    "dict[str, Any]": pa.string(),
}
_JSON_FIELDS = ("source_labels", "metadata")


def _arrow_type(annotation: str) -> pa.DataType:
    base = annotation.replace(" | None", "")
    return _TYPES[base]


RECORD_SCHEMA = pa.schema(
    [pa.field(f.name, _arrow_type(f.type)) for f in dataclasses.fields(Record)]
)
REJECT_SCHEMA = pa.schema([pa.field(f.name, pa.string()) for f in dataclasses.fields(Reject)])


def record_to_row(record: Record) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every Event and was a third of ingest time.
    row = {f.name: getattr(record, f.name) for f in dataclasses.fields(Record)}
    row["events"] = [{"start_s": e.start_s, "end_s": e.end_s, "kind": e.kind, "label": e.label} for e in record.events]
    for name in _JSON_FIELDS:
        row[name] = json.dumps(row[name], ensure_ascii=False, sort_keys=True, default=str)
    return row


def row_to_record(row: dict[str, Any]) -> Record:
    row = dict(row)
    for name in _JSON_FIELDS:
        row[name] = json.loads(row[name]) if row.get(name) else {}
    for f in dataclasses.fields(Record):
        if f.type.startswith("list") and row.get(f.name) is None:
            row[f.name] = []
    return Record(**row)


def records_to_table(records: Iterable[Record]) -> pa.Table:
    return pa.Table.from_pylist([record_to_row(r) for r in records], schema=RECORD_SCHEMA)


def rejects_to_table(rejects: Iterable[Reject]) -> pa.Table:
    return pa.Table.from_pylist([dataclasses.asdict(r) for r in rejects], schema=REJECT_SCHEMA)


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that a reader never sees half of it (tmp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(text: str, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
    os.replace(tmp, path)


def _records_path(path: Path) -> Path:
    path = Path(path)
    return path / RECORDS_FILE if path.is_dir() or path.suffix != ".parquet" else path


def read_records_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The record table of an ingest folder (or a records.parquet path)."""
    p = _records_path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"no {RECORDS_FILE} in {path}: run `clinlm ingest <adapter> <data folder> --out {path}` first"
        )
    return pq.read_table(p, columns=columns)


def iter_records(path: Path, batch_size: int = 1024) -> Iterator[Record]:
    """Stream Records from an ingest folder without loading the whole table."""
    p = _records_path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"no {RECORDS_FILE} in {path}: run `clinlm ingest <adapter> <data folder> --out {path}` first"
        )
    for batch in pq.ParquetFile(p).iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield row_to_record(row)


def read_records(path: Path) -> list[Record]:
    return list(iter_records(path))


def read_rejects(path: Path) -> list[Reject]:
    p = Path(path) / REJECTS_FILE
    if not p.exists():
        return []
    return [Reject(**row) for row in pq.read_table(p).to_pylist()]
