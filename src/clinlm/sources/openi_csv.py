"""`openi-csv`: the Indiana University chest X-ray reports (OpenI) in the Kaggle CSV layout.

Layout (one folder):
- `indiana_reports.csv`: uid, MeSH, Problems, image, indication, comparison, findings, impression
  (one row per study; MeSH terms and Problems are ";"-separated; `XXXX` marks de-identified words);
- `indiana_projections.csv` (optional): uid, filename, projection (Frontal/Lateral), one row per image.

IU reports carry no patient identifier, only the study `uid`, so `patient_id` is "openi/<uid>" and
every split of this dataset is by study: two studies of one person may land in different splits
(nothing in the data lets anyone do better). Record ids are "openi/<uid>", the same ids the
`openi-xml` adapter gives the same study, so the two layouts can be compared row by row.

Labels: `source_labels` keeps MeSH and Problems verbatim; `diagnosis` is the lower-cased MeSH
headings ("normal" and "No Indexing" are not conditions) and `abnormal` is False for "normal"
studies, True when any condition is indexed, None for "No Indexing".
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from clinlm.records import Record, Reject
from clinlm.sources.reports import clean_section, mesh_labels, report_record

DATASET = "openi"
REPORTS_CSV = "indiana_reports.csv"
PROJECTIONS_CSV = "indiana_projections.csv"
_COLUMNS = ("uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression")


def _projections(path: Path) -> dict[str, list[dict[str, str]]]:
    """uid -> [{"filename", "projection"}, ...] in file order; empty when the file is absent."""
    by_uid: dict[str, list[dict[str, str]]] = defaultdict(list)
    if not path.exists():
        return by_uid
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            uid = (row.get("uid") or "").strip()
            if uid:
                by_uid[uid].append({"filename": (row.get("filename") or "").strip(), "projection": (row.get("projection") or "").strip()})
    return by_uid


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per report with findings and impression, one Reject per other row."""
    root = Path(root)
    reports = root / REPORTS_CSV if root.is_dir() else root
    if not reports.exists():
        raise FileNotFoundError(
            f"no {REPORTS_CSV} in {root}: `openi-csv` reads the Kaggle layout ({REPORTS_CSV} + {PROJECTIONS_CSV}); "
            "for the original one-XML-per-study download use `openi-xml`"
        )
    projections = _projections(reports.parent / PROJECTIONS_CSV)
    seen: set[str] = set()
    with open(reports, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{reports} lacks the column(s) {', '.join(absent)}: is this the Kaggle indiana_reports.csv?")
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            uid = (row["uid"] or "").strip()
            where = f"{reports}:{line}"
            if not uid:
                yield Reject(DATASET, where, "row has no uid")
                continue
            seen.add(uid)
            majors = [t.strip() for t in (row["MeSH"] or "").split(";") if t.strip()]
            diagnosis, abnormal = mesh_labels(majors)
            images = projections.get(uid, [])
            yield report_record(
                dataset=DATASET,
                study_id=uid,
                patient_id=f"{DATASET}/{uid}",  # no patient ids in IU: one "patient" per study
                source_path=where,
                findings=row["findings"],
                impression=row["impression"],
                indication=row["indication"],
                comparison=row["comparison"],
                diagnosis=diagnosis,
                abnormal=abnormal,
                source_labels={"MeSH": row["MeSH"] or "", "Problems": row["Problems"] or ""},
                metadata={
                    "study_uid": uid,
                    "image_description": clean_section(row["image"]),
                    "images": [p["filename"] for p in images],
                    "projections": [p["projection"] for p in images],
                },
            )
    # Images listed for a study that has no report row: account for them rather than drop silently.
    for uid in sorted(set(projections) - seen, key=lambda u: (len(u), u)):
        yield Reject(DATASET, str(reports.parent / PROJECTIONS_CSV), f"images listed but no report row in {REPORTS_CSV}", f"{DATASET}/{uid}")
