"""CirCor DigiScope phonocardiograms (PhysioNet Challenge 2022), read as PhysioNet lays them out.

Layout (https://physionet.org/content/circor-heart-sound/, training set):

    <root>/training_data.csv               one row per patient (942), labels repeated from the .txt
    <root>/training_data/<pid>.txt         the patient file (CRLF in the release; LF accepted)
    <root>/training_data/<pid>_<loc>[_<n>].wav   4 kHz 16-bit mono
    <root>/training_data/<pid>_<loc>[_<n>].hea   WFDB header for the wav
    <root>/training_data/<pid>_<loc>[_<n>].tsv   segmentation (no header): start_s, end_s, state

`root` is the dataset folder or the `training_data` folder itself; `training_data.csv` is read from
the dataset folder, or from inside `training_data` when that is the root (never from a parent the
caller did not name). `RECORDS` and `SHA256SUMS.txt` are not read: the patient files name the
recordings.

Patient file: line 1 is `<pid> <number of recordings> <sample rate Hz>`; then one line per
recording, `<location> <file>.hea <file>.wav [<file>.tsv]`; then `#Key: value` lines (Age, Sex,
Height, Weight, Pregnancy status, Murmur, Murmur locations, Most audible location, Systolic and
Diastolic murmur timing / shape / grading / pitch / quality, Campaign, Additional ID, and in the
final release, 1.0.3, `Outcome: Abnormal|Normal`; the early release has no Outcome).

One Record per recording line:
- `record_id` "circor/<wav stem>" (e.g. circor/50782_AV_1); `site` the location (AV, PV, TV, MV,
  Phc); a repeated location (`_AV_1`, `_AV_2`) gives two records with site "AV".
- `patient_id` "circor/<pid>". CirCor's `Additional ID` is the same child's id in the other
  screening campaign (CC2014 / CC2015; e.g. 49595 <-> 69079, both files name each other), so the
  patient id is the smaller of the two ids: both visits of one child land in one split.
  `metadata["circor_patient_id"]` keeps the file's own id.
- Sample rate, frames, channels come from the wav header (never the samples); the `.hea` and the
  patient file's rate must agree with it, or the recording is rejected with both numbers.
- `events` from the `.tsv` (kind "heart_state", labels unannotated/S1/systole/S2/diastole for
  states 0-4); `heart_rate_bpm` = 60 / median interval between consecutive S1 onsets that no
  unannotated stretch separates, when there are at least two such intervals (three S1 onsets).
- Labels mapped to the shared vocabulary (`clinlm.records`): murmur present/absent/unknown,
  locations split on "+", most audible site, timing ("Early-systolic" -> "early",
  "Holosystolic" -> "holosystolic"), shape, grade (Levine "III/VI" -> 3, diastolic "I/IV" -> 1),
  pitch, quality (lower-case); Age is a group ("Neonate", "Infant", "Child", "Adolescent",
  "Young Adult") kept in `age_group`, `age_years` only when a number; Outcome -> `abnormal`.
  Height (cm), weight (kg), pregnancy, campaign, additional id go into `metadata`.
  `source_labels` is the `#Key: value` dict verbatim. "nan" means unknown (None). A value we do
  not recognise (e.g. "Murmur: Maybe") leaves the field None, stays verbatim in `source_labels`,
  and is listed in `metadata["unrecognised_labels"]`.

Kept with a note (the labels are still useful): a wav that is missing (`media=[]`,
`metadata["missing_media"]`), a missing `.tsv` or `.hea` (`missing_segmentation`,
`missing_header`), an unreadable `.tsv` or `.hea` (`segmentation_problem`, `header_problem`).
Rejected, with the reason: an unreadable patient file or recording line, an unusable wav (empty,
truncated, not audio: the AudioError message), a `.hea` or patient-file rate that disagrees with
the wav, a `.wav`/`.hea`/`.tsv` that no recording line names (patient 50782's `50782_MV.tsv`), and
each patient listed in training_data.csv whose `<pid>.txt` is not in the folder. Records +
rejects account for every recording line, every file and every listed patient.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

import numpy as np  # median of S1 intervals

from clinlm.records import Event, Record, Reject
from clinlm.signals.audio import AudioError
from clinlm.sources._hea import HeaderError, hea_conflict
from clinlm.sources._values import SEX, Unrecognised, is_missing, media_fields, text

DATASET = "circor"
SITES = {s.lower(): s for s in ("AV", "PV", "TV", "MV", "Phc")}
STATES = {0: "unannotated", 1: "S1", 2: "systole", 3: "S2", 4: "diastole"}
AGE_GROUPS = {"neonate", "infant", "child", "adolescent", "young adult"}
MURMUR = {"present": "present", "absent": "absent", "unknown": "unknown"}
OUTCOME = {"abnormal": True, "normal": False}
TIMING = {
    "systolic": {"early-systolic": "early", "mid-systolic": "mid", "late-systolic": "late", "holosystolic": "holosystolic"},
    "diastolic": {"early-diastolic": "early", "mid-diastolic": "mid", "late-diastolic": "late", "holodiastolic": "holodiastolic"},
}
SHAPE = {s: s for s in ("crescendo", "decrescendo", "diamond", "plateau")}
PITCH = {s: s for s in ("low", "medium", "high")}
QUALITY = {s: s for s in ("blowing", "harsh", "musical")}
ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}
GRADE_SCALE = {"systolic": 6, "diastolic": 4}  # Levine: systolic out of VI, diastolic out of IV
COMPANION_SUFFIXES = {".wav": "recording", ".hea": "header", ".tsv": "segmentation"}


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per recording line of every `<pid>.txt`, and a Reject per unusable input."""
    data_dir, csv_path = _locate(Path(root))
    patient_files = sorted(data_dir.glob("*.txt"), key=_id_order)
    if not patient_files:
        yield Reject(DATASET, str(data_dir), "no CirCor patient files (<pid>.txt) in this folder: "
                     "point at the dataset folder (with training_data/) or at training_data/ itself")
    named: set[str] = set()  # file names some recording line mentions
    for txt in patient_files:
        yield from _read_patient(txt, data_dir, named)
    yield from _orphans(data_dir, named)
    if csv_path is not None:
        yield from _listed_without_file(csv_path, {p.stem for p in patient_files})


def _locate(root: Path) -> tuple[Path, Path | None]:
    """(folder with the patient files, training_data.csv or None)."""
    if (root / "training_data").is_dir():
        data_dir = root / "training_data"
    else:
        data_dir = root
    csv_path = root / "training_data.csv"
    return data_dir, csv_path if csv_path.is_file() else None


def _id_order(path: Path) -> tuple:
    stem = path.stem
    return (not stem.isdigit(), int(stem) if stem.isdigit() else 0, stem)


def _canonical_patient(pid: str, additional_id: str | None) -> str:
    """The smaller of a child's two CirCor ids (numeric order), so both campaigns share one id."""
    ids = [pid] + ([additional_id] if additional_id else [])
    return min(ids, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))


def _read_patient(txt: Path, data_dir: Path, named: set[str]) -> Iterator[Record | Reject]:
    try:
        lines = [line.strip() for line in txt.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError as exc:
        yield Reject(DATASET, str(txt), f"unreadable patient file ({exc})")
        return
    lines = [line for line in lines if line]  # splitlines() already handles CRLF and LF
    head = lines[0].split() if lines else []
    try:
        pid, n_declared, file_rate = head[0], int(head[1]), float(head[2])
    except (IndexError, ValueError):
        found = repr(lines[0]) if lines else "an empty file"
        yield Reject(DATASET, str(txt), "unreadable patient file: the first line must be "
                     f"'<patient id> <number of recordings> <sample rate>', found {found}")
        return

    recording_lines: list[tuple[int, str]] = []
    raw: dict[str, str] = {}
    unparsed: list[str] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                raw[key.strip()] = value.strip()
            else:
                unparsed.append(line)
        else:
            recording_lines.append((lineno, line))

    unrecognised = Unrecognised()
    fields, metadata = _patient_labels(raw, unrecognised)
    metadata["circor_patient_id"] = pid
    if unparsed:
        metadata["unparsed_lines"] = unparsed
    if n_declared != len(recording_lines):
        metadata["declared_recordings"] = n_declared  # line 1 promised another count
    patient_id = f"{DATASET}/{_canonical_patient(pid, metadata.get('additional_id'))}"

    for lineno, line in recording_lines:
        tokens = line.split()
        if len(tokens) < 3:
            yield Reject(DATASET, f"{txt}:{lineno}", "malformed recording line: expected "
                         f"'<location> <file>.hea <file>.wav [<file>.tsv]', found {line!r}")
            continue
        named.update(tokens[1:4])
        yield from _recording(tokens, txt, data_dir, file_rate, patient_id, fields, metadata, unrecognised, raw)


def _recording(
    tokens: list[str],
    txt: Path,
    data_dir: Path,
    file_rate: float,
    patient_id: str,
    fields: dict[str, Any],
    patient_metadata: dict[str, Any],
    patient_unrecognised: Unrecognised,
    raw: dict[str, str],
) -> Iterator[Record | Reject]:
    location, hea_name, wav_name = tokens[:3]
    tsv_name = tokens[3] if len(tokens) > 3 else None
    record_id = f"{DATASET}/{Path(wav_name).stem}"
    wav, hea = data_dir / wav_name, data_dir / hea_name
    metadata = dict(patient_metadata)
    unrecognised = Unrecognised()
    unrecognised.values = {k: list(v) for k, v in patient_unrecognised.values.items()}
    if location.lower() not in SITES:
        unrecognised.add("location", location)

    media: dict[str, Any] = {}
    if not wav.exists():
        metadata["missing_media"] = [str(wav.resolve())]
    else:
        try:
            media = media_fields(wav)  # header only; raises AudioError when unusable
        except AudioError as exc:
            yield Reject(DATASET, str(wav), str(exc), record_id)
            return
        rate, conflict = media["sample_rate"], None
        if hea.exists():
            try:
                conflict = hea_conflict(hea, rate, media["num_frames"])
            except HeaderError as exc:
                metadata["header_problem"] = str(exc)
        else:
            metadata["missing_header"] = str(hea.resolve())
        if conflict is None and abs(rate - file_rate) > 1e-6:
            conflict = f"sample rate mismatch: {txt.name} says {file_rate:g} Hz but the wav header says {rate:g} Hz"
        if conflict:
            yield Reject(DATASET, str(wav), conflict, record_id)
            return

    events: list[Event] = []
    heart_rate = None
    if tsv_name:
        tsv = data_dir / tsv_name
        if tsv.exists():
            events, heart_rate, problem = _segmentation(tsv)
            if problem:
                metadata["segmentation_problem"] = problem
        else:
            metadata["missing_segmentation"] = str(tsv.resolve())

    yield Record(
        record_id=record_id,
        patient_id=patient_id,
        dataset=DATASET,
        modality="heart",
        site=location,
        events=events,
        heart_rate_bpm=heart_rate,
        source_labels=dict(raw),
        metadata=unrecognised.into(metadata),
        source_path=str(txt.resolve()),
        **media,
        **{k: list(v) if isinstance(v, list) else v for k, v in fields.items()},  # no shared lists
    )


def _patient_labels(raw: dict[str, str], u: Unrecognised) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Record fields in the shared vocabulary, metadata) from the `#Key: value` dict."""
    fields: dict[str, Any] = {}
    age = raw.get("Age")
    fields["age_years"], fields["age_group"] = None, None
    if not is_missing(age):
        try:
            fields["age_years"] = float(age)
        except ValueError:
            if age.strip().lower() in AGE_GROUPS:
                fields["age_group"] = age.strip()
            else:
                u.add("Age", age)
    fields["sex"] = u.choice("Sex", raw.get("Sex"), SEX)
    fields["murmur"] = u.choice("Murmur", raw.get("Murmur"), MURMUR)
    fields["abnormal"] = u.choice("Outcome", raw.get("Outcome"), OUTCOME)

    locations: list[str] = []
    if not is_missing(raw.get("Murmur locations")):
        for part in raw["Murmur locations"].split("+"):
            site = SITES.get(part.strip().lower())
            if site is None:
                u.add("Murmur locations", raw["Murmur locations"])
            elif site not in locations:
                locations.append(site)
    fields["murmur_locations"] = locations
    fields["murmur_most_audible"] = u.choice("Most audible location", raw.get("Most audible location"), SITES)

    for phase in ("systolic", "diastolic"):
        key = f"{phase.capitalize()} murmur"
        fields[f"{phase}_timing"] = u.choice(f"{key} timing", raw.get(f"{key} timing"), TIMING[phase])
        fields[f"{phase}_shape"] = u.choice(f"{key} shape", raw.get(f"{key} shape"), SHAPE)
        fields[f"{phase}_grade"] = _grade(f"{key} grading", raw.get(f"{key} grading"), GRADE_SCALE[phase], u)
        fields[f"{phase}_pitch"] = u.choice(f"{key} pitch", raw.get(f"{key} pitch"), PITCH)
        fields[f"{phase}_quality"] = u.choice(f"{key} quality", raw.get(f"{key} quality"), QUALITY)

    metadata = {
        "height_cm": u.number("Height", raw.get("Height")),
        "weight_kg": u.number("Weight", raw.get("Weight")),
        "pregnant": u.flag("Pregnancy status", raw.get("Pregnancy status")),
        "campaign": text(raw.get("Campaign")),
        "additional_id": text(raw.get("Additional ID")),
    }
    return fields, metadata


def _grade(field: str, value: str | None, scale: int, u: Unrecognised) -> int | None:
    """Levine grade "III/VI" -> 3 (systolic, out of VI) or "II/IV" -> 2 (diastolic, out of IV)."""
    if is_missing(value):
        return None
    numerator, sep, denominator = value.strip().lower().partition("/")
    grade = ROMAN.get(numerator)
    if not sep or grade is None or ROMAN.get(denominator) != scale or grade > scale:
        u.add(field, value)
        return None
    return grade


def _segmentation(tsv: Path) -> tuple[list[Event], float | None, str | None]:
    """(heart-state events in time order, heart rate in bpm or None, problem or None).

    Three whitespace-separated numbers per line, no header. Parsed with str.split: np.loadtxt
    costs ~1 ms per file, which showed in the ingest benchmark.
    """
    try:
        lines = tsv.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return [], None, f"unreadable segmentation file {tsv.name} ({exc})"
    rows: list[list[float]] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            start, end, state = (float(x) for x in line.split())
        except ValueError:
            return [], None, (f"unreadable segmentation file {tsv.name}: line {lineno} should be "
                              f"'<start s> <end s> <state 0-4>', found {line!r}")
        rows.append([start, end, state])
    if not rows:
        return [], None, f"empty segmentation file {tsv.name}"
    rows.sort(key=lambda row: row[0])  # stable: equal starts keep the file's order
    events, unknown = [], set()
    for start, end, state in rows:
        label = STATES.get(int(state)) if state.is_integer() else None
        if label is None:
            unknown.add(state)
            continue
        events.append(Event(start, end, "heart_state", label))
    problem = f"unknown states {sorted(unknown)} in {tsv.name} were skipped" if unknown else None
    return events, _heart_rate(rows), problem


def _heart_rate(rows: list[list[float]]) -> float | None:
    """60 / median S1-to-S1 interval (s), using only intervals inside annotated stretches."""
    intervals, last_onset = [], None
    for start, _end, state in rows:
        if state == 0:  # an unannotated gap: the next S1 does not follow this one
            last_onset = None
        elif state == 1:
            if last_onset is not None:
                intervals.append(start - last_onset)
            last_onset = start
    if len(intervals) < 2:
        return None
    median = float(np.median(intervals))
    return round(60.0 / median, 1) if median > 0 else None


def _orphans(data_dir: Path, named: set[str]) -> Iterator[Reject]:
    for path in sorted(data_dir.iterdir()):
        kind = COMPANION_SUFFIXES.get(path.suffix.lower())
        if kind and path.name not in named and path.is_file():
            yield Reject(DATASET, str(path), f"orphan {kind} file: no recording line names it")


def _listed_without_file(csv_path: Path, patients_with_file: set[str]) -> Iterator[Reject]:
    """One Reject per patient that training_data.csv lists but whose <pid>.txt is not here."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        yield Reject(DATASET, str(csv_path), f"unreadable training_data.csv ({exc})")
        return
    if rows and "Patient ID" not in rows[0]:
        yield Reject(DATASET, str(csv_path), "training_data.csv has no 'Patient ID' column; "
                     f"columns are {list(rows[0])}")
        return
    seen: set[str] = set()
    for rowno, row in enumerate(rows, start=2):
        pid = (row.get("Patient ID") or "").strip()
        if not pid:
            yield Reject(DATASET, f"{csv_path}:{rowno}", "row of training_data.csv without a Patient ID")
        elif pid not in patients_with_file and pid not in seen:
            seen.add(pid)
            yield Reject(DATASET, str(csv_path),
                         f"patient file missing: listed in training_data.csv but {pid}.txt is not in the folder")
