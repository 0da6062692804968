"""SPRSound (SJTU Paediatric Respiratory Sound database, IEEE BioCAS 2022 challenge): one Record per JSON.

Layout (github.com/SJTU-YONGFU-RESEARCH-GRP/SPRSound, `BioCAS2022/README.md`):
```
BioCAS2022/train2022_wav/<stem>.wav        train2022_json/<stem>.json
BioCAS2022/test2022_wav/<stem>.wav         test2022_json/{inter_test_json,intra_test_json}/<stem>.json
```
`<stem>` = `<patient number>_<age in years>_<gender>_<location>_<recording number>`, per the
publishers' README: gender 0 = male, 1 = female; location p1 left posterior, p2 left lateral,
p3 right posterior, p4 right lateral (p5-p8 are extra sites of the 2024/2025 releases). Children
aged 1 month to 18 years, recorded at Shanghai Children's Medical Center with Yunting model II
stethoscopes; wavs are 8 kHz. A patient can have several visits (the age differs between names):
`patient_id` is the patient number alone.

JSON: `{"record_annotation": "Normal|CAS|DAS|CAS & DAS|Poor Quality", "event_annotation":
[{"start": "<ms>", "end": "<ms>", "type": ...}]}`: start/end are strings in milliseconds and the
events are not sorted. Event types: Normal, Rhonchi, Wheeze, Stridor, Coarse Crackle, Fine Crackle
and Wheeze+Crackle (the files spell it with "+"; "Wheeze & Crackle" is accepted as the same label).

Mapping:
- events sorted by start, kind `sound_event`, label = the dataset's own type, times in seconds;
- crackle = any Fine/Coarse Crackle or Wheeze+Crackle event; wheeze = any Wheeze, Rhonchi or
  Wheeze+Crackle event (rhonchi are low-pitched wheezes; stridor is neither). An unknown event
  type is kept as the event's label and listed in `metadata["unrecognised_labels"]`; then a
  crackle/wheeze that was not found stays None (unknown), not False.
- abnormal: Normal -> False, CAS / DAS / CAS & DAS -> True, Poor Quality -> None with
  `metadata["quality"] = "poor"`.
- split: the folder (train2022 -> train, test2022 -> test). The inter-subject test set has new
  patients; the intra-subject test set re-uses training patients on purpose. Splits here are by
  patient, so an intra-test recording of a training patient goes to train (an inter-test patient
  seen in train goes to test); `metadata["official_subset"]` keeps train / inter_test / intra_test
  so the challenge's own evaluation can still be rebuilt.
- Audio: the `.wav` with the same stem anywhere under the root (the sibling `*_wav` folder),
  header only; when absent `media=[]` and `metadata["missing_media"]` names the expected path.
  The real sample in ../shared/data has the JSONs only; the tests write wavs in this layout.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from clinlm.records import Event, Record, Reject
from clinlm.signals.audio import AudioError
from clinlm.sources._values import Unrecognised, abspath, media_fields, relative_parts

DATASET = "sprsound"
STEM_RE = re.compile(r"^(?P<pid>\d+)_(?P<age>\d+(?:\.\d+)?)_(?P<sex>[^_]+)_(?P<loc>p\d+)_(?P<rec>\d+)$")
SEX = {"0": "male", "1": "female"}
LOCATIONS = {
    "p1": "left posterior",
    "p2": "left lateral",
    "p3": "right posterior",
    "p4": "right lateral",
}
RECORD_LABELS = {"normal": False, "cas": True, "das": True, "cas & das": True, "poor quality": None}
CRACKLE_EVENTS = {"Fine Crackle", "Coarse Crackle", "Wheeze+Crackle", "Wheeze & Crackle"}
WHEEZE_EVENTS = {"Wheeze", "Rhonchi", "Wheeze+Crackle", "Wheeze & Crackle"}
EVENT_TYPES = {"Normal", "Stridor"} | CRACKLE_EVENTS | WHEEZE_EVENTS


def subset(path: Path, root: Path) -> str | None:
    """train / inter_test / intra_test / test from the folder names below the root."""
    for part in reversed(relative_parts(path, root)):
        if "intra" in part:
            return "intra_test"
        if "inter" in part:
            return "inter_test"
        if "test" in part:
            return "test"
        if "train" in part:
            return "train"
    return None


def expected_wav(path: Path, root: Path) -> Path:
    """Where the publishers put the wav: `<split>_wav/<stem>.wav` beside the top `<split>_json` folder."""
    root, path = Path(abspath(root)), Path(abspath(path))
    rel = path.relative_to(root)
    for i, part in enumerate(rel.parts[:-1]):
        if part.lower().endswith("_json"):
            return root.joinpath(*rel.parts[:i], part[: -len("_json")] + "_wav", f"{path.stem}.wav")
    return path.with_suffix(".wav")


def parse_events(data: object) -> tuple[str, list[Event], list[str]] | str:
    """(record annotation, sorted events, unknown event types), or the reason the JSON is unusable."""
    if not isinstance(data, dict):
        return "JSON is not an object with record_annotation and event_annotation"
    if "record_annotation" not in data or "event_annotation" not in data:
        missing = [k for k in ("record_annotation", "event_annotation") if k not in data]
        return f"JSON lacks required keys: {', '.join(missing)}"
    raw_events = data["event_annotation"]
    if not isinstance(raw_events, list):
        return "event_annotation is not a list"
    events, unknown = [], []
    for i, ev in enumerate(raw_events):
        if not isinstance(ev, dict) or not {"start", "end", "type"} <= set(ev):
            return f"malformed event: event {i} lacks start/end/type ({str(ev)[:80]})"
        try:
            start_ms, end_ms = float(ev["start"]), float(ev["end"])
        except (TypeError, ValueError):
            return f"malformed event: event {i} has non-numeric start/end ({ev['start']!r}, {ev['end']!r})"
        if not (0 <= start_ms < end_ms) or end_ms == float("inf"):
            return f"malformed event: event {i} must start at >= 0 ms and end after it starts ({ev['start']!r}, {ev['end']!r})"
        label = str(ev["type"]).strip()
        if label not in EVENT_TYPES and label not in unknown:
            unknown.append(label)
        events.append(Event(start_ms / 1000.0, end_ms / 1000.0, "sound_event", label))
    events.sort(key=lambda e: (e.start_s, e.end_s, e.label))
    return str(data["record_annotation"]), events, unknown


def _official_splits(files: list[tuple[Path, re.Match, str | None]]) -> dict[Path, str | None]:
    """Patient-level split per JSON from the official folders (see module docstring)."""
    patients: dict[str, set[str]] = defaultdict(set)
    for _, m, sub in files:
        if sub:
            patients[m["pid"]].add(sub)
    out: dict[Path, str | None] = {}
    for path, m, sub in files:
        subs = patients[m["pid"]]
        if sub is None:
            out[path] = None
        elif "inter_test" in subs or "test" in subs:
            out[path] = "test"
        elif "train" in subs:
            out[path] = "train"
        else:  # intra-test recordings of a patient whose training recordings are not here
            out[path] = "test"
    return out


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per SPRSound annotation JSON under `root`, a Reject for anything unusable."""
    root = Path(root)
    wavs: dict[str, list[Path]] = defaultdict(list)
    files: list[tuple[Path, re.Match, str | None]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix == ".wav":
            wavs[path.stem].append(path)
        elif suffix == ".json":
            m = STEM_RE.match(path.stem)
            if m is None:
                yield Reject(DATASET, str(path), "file name does not follow <patient>_<age>_<gender 0/1>_<location p1-p4>_<recording>.json")
                continue
            files.append((path, m, subset(path, root)))
    splits = _official_splits(files)

    annotated = set()
    for path, m, sub in files:
        stem = path.stem
        annotated.add(stem)
        record_id = f"{DATASET}/{stem}"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            yield Reject(DATASET, str(path), f"not valid JSON: {exc}", record_id)
            continue
        parsed = parse_events(data)
        if isinstance(parsed, str):
            yield Reject(DATASET, str(path), parsed, record_id)
            continue
        record_label, events, unknown_types = parsed

        unknown = Unrecognised()
        for t in unknown_types:
            unknown.add("event_type", t)
        abnormal = unknown.choice("record_annotation", record_label, RECORD_LABELS)
        metadata: dict = {
            "recording_number": m["rec"],
            "location_name": LOCATIONS.get(m["loc"]),
            "n_events": len(events),
        }
        if record_label.strip().lower() == "poor quality":
            metadata["quality"] = "poor"
        if sub:
            metadata["official_subset"] = sub
        if m["loc"] not in LOCATIONS:
            unknown.add("location", m["loc"])
        sex = unknown.choice("gender", m["sex"], SEX)

        labels = {e.label for e in events}
        crackle = True if labels & CRACKLE_EVENTS else (None if unknown_types else False)
        wheeze = True if labels & WHEEZE_EVENTS else (None if unknown_types else False)

        expected = expected_wav(path, root)
        candidates = wavs.get(stem, [])
        # Prefer the wav that shares the most folders with the JSON (train vs test copies).
        candidates = sorted(candidates, key=lambda w: -len(set(w.parts) & set(path.parts)))
        media: dict = {}
        if candidates:
            try:
                media = media_fields(candidates[0])
            except AudioError as exc:
                yield Reject(DATASET, str(candidates[0]), f"audio unreadable: {exc}", record_id)
                continue
        else:
            metadata["missing_media"] = [str(expected)]

        yield Record(
            record_id=record_id,
            patient_id=f"{DATASET}/{m['pid']}",
            dataset=DATASET,
            modality="lung",
            age_years=float(m["age"]),
            sex=sex,
            site=m["loc"],
            abnormal=abnormal,
            crackle=crackle,
            wheeze=wheeze,
            events=events,
            source_labels={
                "record_annotation": record_label,
                "gender": m["sex"],
                "age": m["age"],
                "location": m["loc"],
                "event_types": ", ".join(sorted(labels)),
            },
            metadata=unknown.into(metadata),
            source_path=abspath(path),
            split=splits[path],
            **media,
        )

    for stem, paths in sorted(wavs.items()):
        if stem not in annotated:
            for p in paths:
                yield Reject(DATASET, str(p), "recording has no annotation .json with the same name", f"{DATASET}/{stem}")
