"""CPSC 2021 (4th China Physiological Signal Challenge): paroxysmal AF in two-lead Holter ECGs.

Layout (https://physionet.org/content/cpsc2021/): folders of WFDB records `data_<patient>_<n>`:

    data_84_1.hea   2 leads (I, II), 200 Hz; one comment line naming the record's class:
                    "persistent atrial fibrillation" | "paroxysmal atrial fibrillation" |
                    "non atrial fibrillation"
    data_84_1.dat   format 16
    data_84_1.atr   beats (N, V, A, ...) and rhythm marks: "+" with aux "(AFIB", "(AFL", "(N"

Quirks: the gains and baselines are not integers in the usual sense (`34043.46727318676(-167477)/mV`)
and several records sit on a DC offset of about 5 mV after conversion (as published; filter
before use); the `.atr` writes the text "None" as the aux note of every beat; an AF episode that
reaches the end of the record is closed by "(N" on its last sample.

One Record per header:
- `record_id` "cpsc2021/data_<p>_<n>", `patient_id` "cpsc2021/<p>" (the number after "data_"
  is the patient: data_84_1 .. data_84_3 are one person).
- `rhythm` the record's class as the dataset defines it: "persistent af" (AF throughout),
  "paroxysmal af" (AF episodes between non-AF rhythm), "non af"; the header line is kept in
  `source_labels["class"]`.
- `events` from the `.atr`: beats (kind "beat") and rhythm intervals (kind "rhythm", labels "af",
  "afl", "normal"; see `clinlm.sources._ecg.annotation_events`); `metadata["af_seconds"]` the
  time inside AF/AFL intervals and `metadata["af_burden"]` its fraction of the record.
- gains, baselines and units as written in `metadata["channels"]`.

Rejected, with the reason: an unreadable header, a missing or truncated `.dat`, an unreadable
`.atr`, a class line that is none of the three. A missing `.atr` keeps the record without
events (`metadata["missing_annotations"]`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from clinlm.records import Record, Reject
from clinlm.signals.ecg import EcgError
from clinlm.sources._ecg import annotation_events, ecg_fields

DATASET = "cpsc2021"
CLASSES = {
    "persistent atrial fibrillation": "persistent af",
    "paroxysmal atrial fibrillation": "paroxysmal af",
    "non atrial fibrillation": "non af",
}
_NAME = re.compile(r"^data_(\d+)_(\d+)$")


def read(root: Path) -> Iterator[Record | Reject]:
    root = Path(root)
    headers = sorted(root.rglob("*.hea"))
    if not headers:
        yield Reject(DATASET, str(root), "no .hea files under this folder")
        return
    for hea in headers:
        yield _record(hea)


def _record(hea: Path) -> Record | Reject:
    name = hea.stem
    rid = f"{DATASET}/{name}"
    m = _NAME.match(name)
    patient = m.group(1) if m else name
    try:
        fields, metadata, header = ecg_fields(hea)
    except EcgError as exc:
        return Reject(DATASET, str(hea), str(exc), rid)
    class_line = next((c for c in header.comments if c.strip().lower() in CLASSES), None)
    if class_line is None:
        return Reject(DATASET, str(hea), f"no record class in the header comments ({header.comments!r}); expected one of: {', '.join(CLASSES)}", rid)
    events = []
    atr = hea.with_suffix(".atr")
    if atr.exists():
        try:
            events, summary = annotation_events(hea, header.fs, header.num_samples)
        except (OSError, ValueError, IndexError) as exc:
            return Reject(DATASET, str(atr), f"unreadable annotation file ({type(exc).__name__}: {exc})", rid)
        metadata["annotations"] = summary
        af = sum(e.end_s - e.start_s for e in events if e.kind == "rhythm" and e.label in ("af", "afl"))
        metadata["af_seconds"] = round(af, 3)
        metadata["af_burden"] = round(af / header.duration_s, 4)
    else:
        metadata["missing_annotations"] = True
    return Record(
        record_id=rid,
        patient_id=f"{DATASET}/{patient}",
        dataset=DATASET,
        modality="ecg",
        **fields,
        events=events,
        rhythm=CLASSES[class_line.strip().lower()],
        source_labels={"class": class_line.strip()},
        metadata=metadata,
        source_path=str(hea.resolve()),
    )
