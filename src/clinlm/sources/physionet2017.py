"""PhysioNet/CinC Challenge 2017: single-lead AF classification (AliveCor), as PhysioNet lays it out.

Layout (https://physionet.org/content/challenge-2017/):

    <root>/training2017/ or <root>/validation/   (or <root> itself)
        REFERENCE.csv            "<record>,<label>" (no header), the final labels (= v3)
        REFERENCE-v0.csv ... -v3.csv             the earlier label versions
        RECORDS, RECORDS-af, ...                 record lists (not read: REFERENCE names them)
        A00001.mat  A00001.hea   `val` int16 (1, N), 300 Hz, 9-61 s; gain in the header

Every folder under `root` that holds a REFERENCE file is read. The labels of the final version
are used: `REFERENCE.csv`, or the highest `REFERENCE-v<N>.csv` when it is absent. The labels
changed between versions (re-annotation after the challenge); for a record whose label differs
in an older version, `metadata["label_history"]` maps that file name to its label there, e.g.
{"REFERENCE-v0.csv": "O"} for A00005, final "A".

One Record per REFERENCE row:
- `record_id` / `patient_id` "physionet2017/<record>" (the challenge publishes no patient ids);
  `metadata["subset"]` the folder name (training2017, validation).
- `rhythm`: N -> "normal", A -> "af", O -> "other" (another rhythm), ~ -> "noisy" (too noisy to
  classify); `codes` [the letter], `code_system` "physionet2017"; `statements` the challenge's
  class names.
- the single channel (named `ECG` in the header) is lead I: the AliveCor device is held with one
  hand on each electrode (Clifford et al., CinC 2017). `leads` is ["I"] and
  `metadata["lead_aliases"]` is {"ECG": "I"}, which `load_ecg` applies.
- no official split (the challenge's test set is hidden): `split` None.

Rejected, with the reason: a REFERENCE row whose `.hea`/`.mat` is not in the folder (the sample
keeps the whole REFERENCE.csv but only some records), a label outside N/A/O/~, an unusable header
or signal file. A `.hea` that REFERENCE does not name becomes a Record with `rhythm` None and
`metadata["unlabelled"]` True.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterator

from clinlm.records import Record, Reject
from clinlm.signals.ecg import EcgError
from clinlm.sources._ecg import ecg_fields

DATASET = "physionet2017"
LABELS = {"N": "normal", "A": "af", "O": "other", "~": "noisy"}
STATEMENTS = {"N": "normal sinus rhythm", "A": "atrial fibrillation", "O": "other rhythm", "~": "too noisy to classify"}
ALIASES = {"ECG": "I"}
_VERSION = re.compile(r"^REFERENCE-v(\d+)\.csv$")


def read_reference(path: Path) -> dict[str, str]:
    """{record: label} from a REFERENCE file (CRLF or LF, no header)."""
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[0].strip():
                out[row[0].strip()] = row[1].strip()
    return out


def _reference_files(folder: Path) -> tuple[Path, list[Path]]:
    """(the final label file, the older versions) of one folder."""
    versions = sorted((p for p in folder.iterdir() if _VERSION.match(p.name)), key=lambda p: int(_VERSION.match(p.name).group(1)))
    final = folder / "REFERENCE.csv"
    if not final.exists():
        final = versions.pop()
    return final, [v for v in versions if v.name != final.name]


def read(root: Path) -> Iterator[Record | Reject]:
    root = Path(root)
    folders = sorted({p.parent for pattern in ("REFERENCE.csv", "REFERENCE-v*.csv") for p in root.rglob(pattern)})
    if not folders:
        yield Reject(DATASET, str(root), "no REFERENCE.csv (or REFERENCE-v<N>.csv) under this folder: point at the challenge's training2017/validation folder")
        return
    for folder in folders:
        final, older = _reference_files(folder)
        labels = read_reference(final)
        history = {p.name: read_reference(p) for p in older}
        for name, label in labels.items():
            yield _record(folder, name, label, final, history)
        for hea in sorted(folder.glob("*.hea")):
            if hea.stem not in labels:
                yield _record(folder, hea.stem, None, final, history)


def _record(folder: Path, name: str, label: str | None, final: Path, history: dict[str, dict[str, str]]) -> Record | Reject:
    rid = f"{DATASET}/{name}"
    if label is not None and label not in LABELS:
        return Reject(DATASET, str(final), f"label {label!r} of {name} is not one of N, A, O, ~", rid)
    if not (folder / f"{name}.hea").exists():
        return Reject(DATASET, str(folder / f"{name}.hea"), f"listed in {final.name} but {name}.hea is not in the folder", rid)
    try:
        fields, metadata, _ = ecg_fields(folder / name, ALIASES)
    except EcgError as exc:
        return Reject(DATASET, str(folder / f"{name}.hea"), str(exc), rid)
    metadata["subset"] = folder.name
    metadata["label_file"] = final.name
    changed = {f: labels[name] for f, labels in history.items() if name in labels and labels[name] != label}
    if changed:
        metadata["label_history"] = changed
    if label is None:
        metadata["unlabelled"] = True
    return Record(
        record_id=rid,
        patient_id=rid,
        dataset=DATASET,
        modality="ecg",
        **fields,
        codes=[label] if label else [],
        code_system=DATASET if label else None,
        statements=[STATEMENTS[label]] if label else [],
        rhythm=LABELS.get(label) if label else None,
        source_labels={"label": label} if label else {},
        metadata=metadata,
        source_path=str(final),
    )
