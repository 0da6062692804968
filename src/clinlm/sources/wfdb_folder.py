"""Any folder of WFDB ECG records (`.hea` + signal files, optional `.atr` reference annotations).

For PhysioNet databases with no adapter of their own (MIT-BIH Arrhythmia, PTB Diagnostic, the
2015 alarm challenge, ...) and for files exported from a device or another toolkit. The folder
is searched recursively; every `.hea` is one record (multi-segment records are not supported
and are rejected with the reason wfdb gives).

One Record per header:
- `record_id` and `patient_id` "wfdb/<path under root without extension>" (WFDB headers carry no
  patient id, so each record counts as its own patient; say so when splitting MIT-BIH, whose
  records 201 and 202 are one patient).
- Signal fields from the header only (`clinlm.sources._ecg.ecg_fields`): ECG leads in the fixed
  order, gains, baselines and units as written in `metadata["channels"]`; channels in non-voltage
  units (PLETH, RESP in "NU") are listed in `metadata["other_channels"]`, not in `leads`.
- Header comments verbatim in `metadata["header_comments"]`; "key: value" comments (PTB's
  "age: 81", "sex: female") also in `metadata["header_fields"]`, and age/sex from them; the
  MIT-BIH form "<age> <M|F> ..." (first comment of 100.hea: "69 M 1085 1629 x1") gives age and sex.
- `<record>.atr` (when present): beats as events kind "beat" (label the beat symbol, N, V, A, ...),
  rhythm annotations ("(N", "(AFIB") as events kind "rhythm" over intervals, see
  `clinlm.sources._ecg.annotation_events`; `rhythm` is the record's rhythm when one rhythm covers
  every annotated interval, else None with `metadata["rhythm_seconds"]` per rhythm;
  `heart_rate_bpm` = 60 / median interval between consecutive beats (at least 3 beats).

Rejected, with the reason: an unreadable header, a missing or truncated signal file, a record
without any ECG channel in voltage units, an unreadable `.atr`, and a `.dat`/`.mat`/`.atr` file
that no header in the folder accounts for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from clinlm.records import Record, Reject
from clinlm.signals.ecg import EcgError
from clinlm.sources._ecg import annotation_events, ecg_fields

DATASET = "wfdb"
SEX = {"m": "male", "male": "male", "f": "female", "female": "female"}
_MITBIH_DEMOGRAPHICS = re.compile(r"^(\d{1,3})\s+([MF])\b")


def read(root: Path) -> Iterator[Record | Reject]:
    root = Path(root)
    accounted: set[Path] = set()
    for hea in sorted(root.rglob("*.hea")):
        base = hea.with_suffix("")
        accounted.add(hea.resolve())
        item, files = _record(root, base)
        accounted.update(files)
        yield item
    for path in sorted(p for ext in ("dat", "mat", "atr") for p in root.rglob(f"*.{ext}")):
        if path.resolve() not in accounted and not path.with_suffix(".hea").exists():
            yield Reject(DATASET, str(path), f"{path.suffix} file without a WFDB header ({path.with_suffix('.hea').name} not found)")


def _record(root: Path, base: Path) -> tuple[Record | Reject, set[Path]]:
    """The record (or reject) for one header, and the files it accounts for."""
    rel = base.relative_to(root).as_posix()
    rid = f"{DATASET}/{rel}"
    atr = base.with_name(base.name + ".atr")
    try:
        fields, metadata, header = ecg_fields(base)
    except EcgError as exc:
        return Reject(DATASET, str(base) + ".hea", str(exc), rid), {atr.resolve()}
    files = {(base.parent / c["file"]).resolve() for c in header.channels} | {atr.resolve()}
    age, sex = None, None
    if header.comments:
        metadata["header_comments"] = header.comments
        pairs = {}
        for line in header.comments:
            key, sep, value = line.partition(":")
            if sep and key.strip() and value.strip():
                pairs[key.strip()] = value.strip()
        if pairs:
            metadata["header_fields"] = pairs
        lower = {k.lower(): v for k, v in pairs.items()}
        if "age" in lower and re.fullmatch(r"\d+(\.\d+)?", lower["age"]):
            age = float(lower["age"])
        sex = SEX.get(lower.get("sex", "").lower())
        for line in header.comments:
            m = _MITBIH_DEMOGRAPHICS.match(line)
            if m and age is None and sex is None:
                age, sex = float(m.group(1)), SEX[m.group(2).lower()]
    events, rhythm, heart_rate = [], None, None
    if atr.exists():
        try:
            events, summary = annotation_events(base, header.fs, header.num_samples)
        except (OSError, ValueError, IndexError) as exc:
            return Reject(DATASET, str(atr), f"unreadable annotation file ({type(exc).__name__}: {exc})", rid), files
        metadata["annotation_file"] = str(atr.resolve())
        metadata["annotations"] = summary
        seconds: dict[str, float] = {}
        for e in events:
            if e.kind == "rhythm":
                seconds[e.label] = seconds.get(e.label, 0.0) + e.end_s - e.start_s
        if len(seconds) == 1:
            rhythm = next(iter(seconds))
        elif seconds:
            metadata["rhythm_seconds"] = {k: round(v, 3) for k, v in sorted(seconds.items())}
        beats = np.array([e.start_s for e in events if e.kind == "beat"])
        if len(beats) >= 3:
            heart_rate = round(60.0 / float(np.median(np.diff(beats))), 1)
    record = Record(
        record_id=rid,
        patient_id=rid,
        dataset=DATASET,
        modality="ecg",
        **fields,
        age_years=age,
        sex=sex,
        heart_rate_bpm=heart_rate,
        events=events,
        rhythm=rhythm,
        metadata=metadata,
        source_path=str(base.resolve()) + ".hea",
    )
    return record, files
