"""BUET Multi-disease Heart Sound dataset (BMD-HS), read as its GitHub repository lays it out.

Layout (https://github.com/mHealthBuet/BMD-HS-Dataset, mirrored at sani002/BMD-HS-Dataset; read
from the repository's train.csv / additional_metadata.csv and PyHealth's `BMDHSDataset` loader):

    <root>/train.csv                  patient_id, AS, AR, MR, MS, N, recording_1 ... recording_8
    <root>/additional_metadata.csv    patient_id, Age, Gender (M/F), Smoker (0/1), Lives (U/R)
    <root>/train/<recording>.wav      20 s, ~4 kHz; names like `MD_001_sup_Mit`

Labels are per patient and multi-label: AS aortic stenosis, AR aortic regurgitation, MR mitral
regurgitation, MS mitral stenosis (1 present, 0 absent), N normal (1 healthy). The recording
name is `<class>_<nnn>_<sup|sit>_<Mit|Tri|Pul|Aor>`: the class prefix (AS, AR, MR, MS, N, or MD
for multi-disease), posture (supine/sitting) and site (mitral, tricuspid, pulmonic, aortic
area), 8 recordings per patient. The label columns are the authority, not the file prefix (the
real train.csv has patient_022 with N=1 and files named `MD_022_...`); the prefix is kept in
`metadata["file_class"]`.

One Record per recording cell of train.csv: `record_id` "bmdhs/<recording>", `patient_id`
"bmdhs/<patient_id>", `diagnosis` the present diseases ("aortic stenosis", "aortic
regurgitation", "mitral regurgitation", "mitral stenosis") or ["normal"], `abnormal` True when any
disease is present, False when N=1 and none is; None (with `metadata["label_problem"]`) when the
row marks nothing, or marks N=1 together with a disease. `site` is the dataset's own name (Mit,
Tri, Pul, Aor) with `metadata["valve_area"]` and `metadata["posture"]`; age (years), sex, smoker
and residence (urban/rural) come from additional_metadata.csv. `source_labels` holds the raw
cells of both CSVs for the patient.

Kept with a note: a named recording whose wav is missing (`media=[]`, `metadata["missing_media"]`),
label values we do not recognise (`metadata["unrecognised_labels"]`). Rejected: an unusable wav
(AudioError message), a duplicate patient row, a wav in train/ that no row names, a patient in
additional_metadata.csv with no train.csv row. The real audio is not in ../shared/data: the tests
write tiny files in this layout.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Iterator

from clinlm.records import Record, Reject
from clinlm.signals.audio import AudioError
from clinlm.sources._values import SEX, Unrecognised, media_fields, text

DATASET = "bmdhs"
LABELS_CSV = "train.csv"
METADATA_CSV = "additional_metadata.csv"
AUDIO_DIR = "train"
DISEASES = {
    "AS": "aortic stenosis",
    "AR": "aortic regurgitation",
    "MR": "mitral regurgitation",
    "MS": "mitral stenosis",
}
NAME = re.compile(r"(?P<cls>[A-Za-z]+)_(?P<num>\d+)_(?P<posture>sup|sit)_(?P<site>mit|tri|pul|aor)", re.IGNORECASE)
POSTURE = {"sup": "supine", "sit": "sitting"}
SITES = {"mit": ("Mit", "mitral"), "tri": ("Tri", "tricuspid"), "pul": ("Pul", "pulmonic"), "aor": ("Aor", "aortic")}
RESIDENCE = {"u": "urban", "r": "rural"}


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per recording named in train.csv, and a Reject per unusable input."""
    root = Path(root)
    audio_dir = root / AUDIO_DIR if (root / AUDIO_DIR).is_dir() else root
    named: set[str] = set()
    labels_csv = root / LABELS_CSV
    if not labels_csv.is_file():
        yield Reject(DATASET, str(root), f"no {LABELS_CSV} here: BMD-HS lists its patients, labels and "
                     "recordings there (point at the dataset folder holding train.csv and train/)")
        rows: list[dict[str, str]] = []
    else:
        rows = yield from _read_rows(labels_csv)
    extra = {}
    if (root / METADATA_CSV).is_file():
        extra = {r.get("patient_id", "").strip(): r for r in (yield from _read_rows(root / METADATA_CSV))}

    seen: set[str] = set()
    for rowno, row in enumerate(rows, start=2):
        pid = (row.get("patient_id") or "").strip()
        if not pid:
            yield Reject(DATASET, f"{labels_csv}:{rowno}", f"row of {LABELS_CSV} without a patient_id")
            continue
        if pid in seen:
            yield Reject(DATASET, f"{labels_csv}:{rowno}", f"duplicate {LABELS_CSV} row for {pid}")
            continue
        seen.add(pid)
        yield from _patient(pid, row, extra.get(pid, {}), labels_csv, audio_dir, named)

    for pid in sorted(set(extra) - seen - {""}):
        yield Reject(DATASET, str(root / METADATA_CSV), f"patient without labels: {pid} is in {METADATA_CSV} but not in {LABELS_CSV}")
    for wav in sorted(audio_dir.glob("*.wav")):
        if wav.name not in named:
            yield Reject(DATASET, str(wav), f"unlabelled recording: no row of {LABELS_CSV} names it")


def _read_rows(path: Path):
    """csv.DictReader rows (a generator that yields a Reject and returns [] when unreadable)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        yield Reject(DATASET, str(path), f"unreadable {path.name} ({exc})")
        return []


def _patient(
    pid: str, row: dict[str, str], extra: dict[str, str], labels_csv: Path, audio_dir: Path, named: set[str]
) -> Iterator[Record | Reject]:
    u = Unrecognised()
    present = {col: u.flag(col, row.get(col)) for col in (*DISEASES, "N")}
    diagnosis = [name for col, name in DISEASES.items() if present[col]]
    metadata: dict[str, Any] = {
        "smoker": u.flag("Smoker", extra.get("Smoker")),
        "residence": u.choice("Lives", extra.get("Lives"), RESIDENCE),
    }
    if diagnosis and present["N"]:
        abnormal = None
        metadata["label_problem"] = f"N=1 together with {', '.join(c for c in DISEASES if present[c])}"
    elif diagnosis:
        abnormal = True
    elif present["N"]:
        abnormal, diagnosis = False, ["normal"]
    else:
        abnormal = None
        metadata["label_problem"] = "no disease column and no N column is 1"
    source_labels = {k: v for k, v in row.items() if k and not k.startswith("recording_") and v is not None}
    source_labels.update({k: v for k, v in extra.items() if k and k != "patient_id" and v is not None})
    fields = {
        "age_years": u.number("Age", extra.get("Age")),
        "sex": u.choice("Gender", extra.get("Gender"), SEX),
        "abnormal": abnormal,
        "diagnosis": diagnosis,
    }

    recordings = [text(v) for k, v in sorted(row.items(), key=lambda kv: kv[0] or "") if k and k.startswith("recording_")]
    for name in filter(None, recordings):
        wav = audio_dir / (name if name.lower().endswith(".wav") else f"{name}.wav")
        named.add(wav.name)
        record_id = f"{DATASET}/{wav.stem}"
        meta = dict(metadata)
        ru = Unrecognised()
        ru.values = {k: list(v) for k, v in u.values.items()}
        site = None
        match = NAME.fullmatch(wav.stem)
        if match:
            site, meta["valve_area"] = SITES[match["site"].lower()]
            meta["posture"] = POSTURE[match["posture"].lower()]
            meta["file_class"] = match["cls"].upper()
        else:
            ru.add("recording name", wav.stem)
        media: dict[str, Any] = {}
        if wav.exists():
            try:
                media = media_fields(wav)  # header only; raises AudioError when unusable
            except AudioError as exc:
                yield Reject(DATASET, str(wav), str(exc), record_id)
                continue
        else:
            meta["missing_media"] = [str(wav.resolve())]
        yield Record(
            record_id=record_id,
            patient_id=f"{DATASET}/{pid}",
            dataset=DATASET,
            modality="heart",
            site=site,
            source_labels=dict(source_labels),
            metadata=ru.into(meta),
            source_path=str(labels_csv.resolve()),
            **media,
            **{k: list(v) if isinstance(v, list) else v for k, v in fields.items()},  # no shared lists
        )
