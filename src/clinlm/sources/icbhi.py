"""ICBHI 2017 Respiratory Sound Database: one Record per cycle-annotation `.txt`.

Layouts read (files are found wherever they sit under the root, so both work):
- Kaggle ("Respiratory Sound Database"): `audio_and_txt_files/<stem>.{wav,txt}`,
  `data_info/patient_diagnosis.csv` (no header: `<pid>,<diagnosis>`),
  `data_info/demographic_info.txt`, `filename_format.txt`, `filename_differences.txt`;
- official (`ICBHI_final_database/` flat folder): `<stem>.{wav,txt}`, `ICBHI_Challenge_diagnosis.txt`
  (tab-separated), and the official split `ICBHI_challenge_train_test.txt` (`<stem>\\t<train|test>`).

`<stem>` is `<pid>_<recording index>_<chest location>_<sc|mc>_<device>`: location Tc (trachea),
Al/Ar (anterior left/right), Pl/Pr (posterior), Ll/Lr (lateral); sc = sequential/single channel,
mc = simultaneous/multichannel; devices AKGC417L, LittC2SE, Litt3200, Meditron.
Each `.txt` row is one respiratory cycle: `start_s end_s crackle(0/1) wheeze(0/1)`.

`demographic_info.txt` is space-separated, `NA` for unknown, CRLF in the Kaggle copy, and may
start with a blank line. Columns: patient, age (years; 0.75 = 9 months), sex (F/M), adult BMI
(kg/m2), child weight (kg), child height (cm): adults have BMI only, children weight/height only.

Mapping to the shared vocabulary:
- events: one `resp_cycle` per row, label normal / crackle / wheeze / crackle+wheeze;
  `crackle`/`wheeze` = any cycle has one; `diagnosis` = the patient's diagnosis lower-cased
  (copd, urti, healthy, asthma, lrti, bronchiectasis, pneumonia, bronchiolitis; anything else is
  kept raw in `source_labels` and listed in `metadata["unrecognised_labels"]`);
  `abnormal` = diagnosis != healthy.
- Audio: sample rate, frames and channels from the wav header (rates and bit depths vary:
  44.1 kHz at 16/24/32 bit, 4 kHz at 16 bit). When the wav is absent (the annotation-only
  release) the Record is kept with `media=[]` and `metadata["missing_media"]=[expected path]`:
  its labels still feed the bench and the reports. A wav that is present but unreadable is a Reject.

Quirks handled on purpose:
- A cycle line that is not 4 columns, not numeric, has crackle/wheeze other than 0/1, or ends
  at or before it starts makes the whole file a Reject naming the file and the line: a recording
  with a lost cycle would give wrong recording-level labels.
- `filename_differences.txt` (Kaggle) lists 91 names from before the publishers fixed a bug in
  their naming script (the device part differed, e.g. `101_1b1_Al_sc_AKGC417L` is now
  `101_1b1_Al_sc_Meditron`). A split-file entry with an old name is matched on
  patient/index/location/mode when that identifies exactly one recording.
- Files named `<stem>_<suffix>.txt` (e.g. the event-level annotations the publishers released
  separately) are not cycle annotations and are not read; any other `.txt` starting with a digit
  that does not follow the naming scheme is a Reject.
- The official split is not patient-disjoint: patients 156 and 218 have recordings in both train
  and test. Splits here are by patient, so every recording of such a patient goes to test (the
  official test set stays complete); `metadata["official_split"]` keeps the file's own value.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from clinlm.records import Event, Record, Reject
from clinlm.signals.audio import AudioError
from clinlm.sources._values import SEX, Unrecognised, abspath, media_fields

DATASET = "icbhi"
STEM_RE = re.compile(
    r"^(?P<pid>\d+)_(?P<rec>[0-9A-Za-z]+)_(?P<loc>[A-Za-z]{2})_(?P<mode>sc|mc)_(?P<device>[0-9A-Za-z]+)$"
)
LOCATIONS = {
    "Tc": "trachea",
    "Al": "anterior left",
    "Ar": "anterior right",
    "Pl": "posterior left",
    "Pr": "posterior right",
    "Ll": "lateral left",
    "Lr": "lateral right",
}
MODES = {"sc": "sequential/single channel", "mc": "simultaneous/multichannel"}
DEVICES = {
    "AKGC417L": "AKG C417L microphone",
    "LittC2SE": "3M Littmann Classic II SE stethoscope",
    "Litt3200": "3M Littmann 3200 electronic stethoscope",
    "Meditron": "WelchAllyn Meditron Master Elite electronic stethoscope",
}
DIAGNOSES = {"copd", "urti", "healthy", "asthma", "lrti", "bronchiectasis", "pneumonia", "bronchiolitis"}
CYCLE_LABELS = {(0, 0): "normal", (1, 0): "crackle", (0, 1): "wheeze", (1, 1): "crackle+wheeze"}


def _lines(path: Path) -> list[str]:
    """Text lines with CRLF or LF endings (a UnicodeDecodeError means 'not a text file')."""
    return path.read_text(encoding="utf-8").splitlines()


def _is_header(tokens: list[str]) -> bool:
    return bool(tokens) and not tokens[0].isdigit()


def parse_cycles(path: Path) -> tuple[list[Event], str | None]:
    """The cycles of one annotation file, or the reason it cannot be used."""
    try:
        lines = _lines(path)
    except UnicodeDecodeError:
        return [], "annotation file is not text (UTF-8/ASCII)"
    events: list[Event] = []
    for n, line in enumerate(lines, start=1):
        cols = line.split()
        if not cols:
            continue
        where = f"line {n} ({line.strip()[:60]!r})"
        if len(cols) != 4:
            return [], f"malformed cycle line: {where} has {len(cols)} columns, expected 4 (start end crackle wheeze)"
        try:
            start, end = float(cols[0]), float(cols[1])
        except ValueError:
            return [], f"malformed cycle line: {where} start/end are not numbers"
        if cols[2] not in ("0", "1") or cols[3] not in ("0", "1"):
            return [], f"malformed cycle line: {where} crackle/wheeze must be 0 or 1"
        if not (0 <= start < end) or end == float("inf"):
            return [], f"malformed cycle line: {where} cycle must start at >= 0 s and end after it starts"
        events.append(Event(start, end, "resp_cycle", CYCLE_LABELS[(int(cols[2]), int(cols[3]))]))
    if not events:
        return [], "annotation file has no respiratory cycles"
    events.sort(key=lambda e: (e.start_s, e.end_s))
    return events, None


def _read_diagnoses(path: Path, out: dict[str, str]) -> Iterator[Reject]:
    """`<pid>,<diagnosis>` (Kaggle csv) or `<pid>\\t<diagnosis>` (official txt), no header."""
    try:
        lines = _lines(path)
    except UnicodeDecodeError:
        yield Reject(DATASET, str(path), "diagnosis file is not text")
        return
    for n, line in enumerate(lines, start=1):
        tokens = [t for t in re.split(r"[,\t]+|\s{2,}", line.strip()) if t]
        if not tokens or (n == 1 and _is_header(tokens)):
            continue
        if len(tokens) != 2 or not tokens[0].isdigit():
            yield Reject(DATASET, str(path), f"malformed diagnosis row: line {n} ({line.strip()[:60]!r}), expected '<patient>,<diagnosis>'")
            continue
        out.setdefault(tokens[0], tokens[1].strip())


def _read_demographics(path: Path, out: dict[str, list[str]]) -> Iterator[Reject]:
    """Space/tab-separated: patient, age, sex, adult BMI, child weight, child height (NA = unknown)."""
    try:
        lines = _lines(path)
    except UnicodeDecodeError:
        yield Reject(DATASET, str(path), "demographics file is not text")
        return
    seen_data = False
    for n, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if not seen_data and _is_header(tokens):
            continue  # the official file has a header row; Kaggle's has none
        seen_data = True
        if len(tokens) != 6 or not tokens[0].isdigit():
            yield Reject(DATASET, str(path), f"malformed demographics row: line {n} ({line.strip()[:60]!r}), expected 6 columns")
            continue
        out.setdefault(tokens[0], tokens[1:])


def _read_split(path: Path, out: dict[str, str]) -> Iterator[Reject]:
    """`<stem>\\t<train|test>` per line."""
    try:
        lines = _lines(path)
    except UnicodeDecodeError:
        yield Reject(DATASET, str(path), "split file is not text")
        return
    for n, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2 or tokens[1].lower() not in ("train", "test") or not STEM_RE.match(tokens[0]):
            yield Reject(DATASET, str(path), f"malformed split row: line {n} ({line.strip()[:60]!r}), expected '<recording>\\t<train|test>'")
            continue
        out.setdefault(tokens[0], tokens[1].lower())


def _key(stem: str) -> str:
    """Patient, index, location and mode: what identifies a recording across the device-name fix."""
    return stem.rsplit("_", 1)[0]


def _patient_fields(pid: str, diagnoses: dict[str, str], demographics: dict[str, list[str]], unknown: Unrecognised) -> dict:
    fields: dict = {"source_labels": {}, "metadata": {}}
    dx_raw = diagnoses.get(pid)
    if dx_raw is not None:
        fields["source_labels"]["diagnosis"] = dx_raw
        dx = dx_raw.strip().lower()
        if dx in DIAGNOSES:
            fields["diagnosis"] = [dx]
            fields["abnormal"] = dx != "healthy"
        else:
            unknown.add("diagnosis", dx_raw)
    else:
        fields["metadata"]["missing_diagnosis"] = True
    demo = demographics.get(pid)
    if demo is not None:
        age, sex, bmi, weight, height = demo
        fields["source_labels"].update({"age": age, "sex": sex})
        fields["age_years"] = unknown.number("age", age)
        fields["sex"] = unknown.choice("sex", sex, SEX)
        for name, value in (("adult_bmi_kg_m2", bmi), ("child_weight_kg", weight), ("child_height_cm", height)):
            v = unknown.number(name, value)
            if v is not None:
                fields["metadata"][name] = v
    return fields


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per cycle annotation under `root`, and a Reject for anything unusable."""
    root = Path(root)
    annotations: list[Path] = []
    wavs: dict[str, list[Path]] = defaultdict(list)
    diagnosis_files, demographic_files, split_files = [], [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name, suffix = path.name.lower(), path.suffix.lower()
        if suffix == ".wav":
            wavs[path.stem].append(path)
        elif suffix not in (".txt", ".csv"):
            continue
        elif STEM_RE.match(path.stem) and suffix == ".txt":
            annotations.append(path)
        elif "diagnosis" in name:
            diagnosis_files.append(path)
        elif "demographic" in name:
            demographic_files.append(path)
        elif "train_test" in name:
            split_files.append(path)
        elif STEM_RE.match(path.stem.rsplit("_", 1)[0]):
            continue  # `<stem>_<something>.txt`, e.g. separately published event annotations: not read
        elif suffix == ".txt" and path.stem[:1].isdigit():
            yield Reject(DATASET, str(path), "file name does not follow <patient>_<index>_<location>_<sc|mc>_<device>.txt")

    diagnoses: dict[str, str] = {}
    demographics: dict[str, list[str]] = {}
    official: dict[str, str] = {}
    for path in diagnosis_files:
        yield from _read_diagnoses(path, diagnoses)
    for path in demographic_files:
        yield from _read_demographics(path, demographics)
    for path in split_files:
        yield from _read_split(path, official)

    # Old names (before the naming-script fix) in the split file: match them on all but the device.
    annotated = {p.stem for p in annotations}
    by_key: dict[str, list[str]] = defaultdict(list)
    for stem in annotated:
        by_key[_key(stem)].append(stem)
    official_by_stem = {s: (split, s) for s, split in official.items() if s in annotated}
    for listed, split in official.items():
        stems = by_key.get(_key(listed), [])
        if listed not in annotated and len(stems) == 1:
            official_by_stem.setdefault(stems[0], (split, listed))
    # A patient on both sides of the official split goes to test as a whole (see module docstring);
    # judged on the whole split file, so a partial copy of the dataset gets the same answer.
    patient_splits: dict[str, set[str]] = defaultdict(set)
    for listed, split in official.items():
        patient_splits[listed.split("_")[0]].add(split)

    for path in annotations:
        m = STEM_RE.match(path.stem)
        assert m is not None
        pid, stem = m["pid"], path.stem
        events, problem = parse_cycles(path)
        if problem:
            yield Reject(DATASET, str(path), problem, f"{DATASET}/{stem}")
            continue
        unknown = Unrecognised()
        fields = _patient_fields(pid, diagnoses, demographics, unknown)
        metadata = fields.pop("metadata")
        source_labels = fields.pop("source_labels")
        source_labels.update({"location": m["loc"], "mode": m["mode"], "device": m["device"]})
        if m["loc"] not in LOCATIONS:
            unknown.add("location", m["loc"])
        if m["device"] not in DEVICES:
            unknown.add("device", m["device"])
        metadata.update(
            recording_index=m["rec"],
            acquisition_mode=m["mode"],
            acquisition_mode_name=MODES[m["mode"]],
            location_name=LOCATIONS.get(m["loc"]),
            device_name=DEVICES.get(m["device"]),
            n_cycles=len(events),
        )

        split = None
        if stem in official_by_stem:
            split, listed = official_by_stem[stem]
            metadata["official_split"] = split
            if listed != stem:
                metadata["official_split_listed_as"] = listed
            if len(patient_splits[pid]) > 1:
                split = "test"
                metadata["split_note"] = (
                    f"patient {pid} has recordings in both official train and test; all go to test "
                    "so that no patient is in two splits"
                )

        wav = path.with_suffix(".wav")
        candidates = [wav] if wav.exists() else wavs.get(stem, [])
        media: dict = {}
        if candidates:
            try:
                media = media_fields(candidates[0])
            except AudioError as exc:
                yield Reject(DATASET, str(candidates[0]), f"audio unreadable: {exc}", f"{DATASET}/{stem}")
                continue
        else:
            metadata["missing_media"] = [abspath(wav)]

        crackle = any(e.label in ("crackle", "crackle+wheeze") for e in events)
        wheeze = any(e.label in ("wheeze", "crackle+wheeze") for e in events)
        yield Record(
            record_id=f"{DATASET}/{stem}",
            patient_id=f"{DATASET}/{pid}",
            dataset=DATASET,
            modality="lung",
            site=m["loc"],
            device=m["device"],
            crackle=crackle,
            wheeze=wheeze,
            events=events,
            source_labels=source_labels,
            metadata=unknown.into(metadata),
            source_path=abspath(path),
            split=split,
            **media,
            **fields,
        )

    # Recordings without an annotation: counted, not silently skipped.
    for stem, paths in sorted(wavs.items()):
        if stem not in annotated:
            for p in paths:
                yield Reject(DATASET, str(p), "recording has no cycle annotation .txt beside it", f"{DATASET}/{stem}")
