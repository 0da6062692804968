"""A folder of ECG pictures (scans, phone photos, screenshots, renders) with an optional labels CSV.

Many settings only have printed or photographed ECGs (PULSE / ECGInstruct). This adapter indexes
`.png`, `.jpg`/`.jpeg` and `.bmp` files under `root` (recursively) as Records of modality "ecg"
whose media is the image; Pillow reads each file's header only (format, size, mode, dpi).

Labels: a CSV (or TSV: the delimiter is sniffed, ecg-image-kit's `ecg-samples-metadata.csv` is
tab-separated) under `root` whose key column is one of `FILE_COLUMNS` and names the images by
file name (or by path relative to the CSV). Pass `labels=` to use one file; by default every
`.csv`/`.tsv` under `root` with such a column is used. Each row's other columns are kept
verbatim in `source_labels`; these are also typed:
- `rhythm` (lower-case), `superclasses`/`superclass` (";" or "," separated, upper-case),
  `statements`, `codes` (";" or "," separated), `code_system`, `diagnosis`;
- `patient_id` (else each image is its own patient, "ecg-images/<path>"), `age`, `sex`, `split`.

One Record per image: `record_id` "ecg-images/<path under root without extension>",
`media_format` Pillow's name for the content ("png", "jpeg", "bmp"), `metadata` width_px,
height_px, mode, dpi (when the file says), the labels file. No sampling rate or leads: a picture
is not a signal.

Rejected, with the reason: a file Pillow cannot open, and a CSV row naming an image that is not
in the folder (the sample's metadata lists 51 pictures, 12 are present).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

from clinlm.records import Record, Reject
from clinlm.sources._values import is_missing, text

DATASET = "ecg-images"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
FILE_COLUMNS = ("fname", "filename", "file_name", "file", "image", "image_path", "path")
SEX = {"m": "male", "male": "male", "f": "female", "female": "female"}
SPLITS = {"train", "val", "test"}


def _read_table(path: Path) -> tuple[str | None, list[dict[str, str]]]:
    """(key column, rows) of a labels file; key None when it has no file-name column."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",\t;")
        except csv.Error:
            dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(fh, dialect=dialect)]
    columns = {c.lower(): c for c in (rows[0].keys() if rows else [])}
    key = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
    return key, rows


def _split_list(value: str | None) -> list[str]:
    if not value:
        return []
    sep = ";" if ";" in value else ","
    return [v.strip() for v in value.split(sep) if v.strip()]


def read(root: Path, labels: Path | None = None) -> Iterator[Record | Reject]:
    root = Path(root)
    images = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    tables = [Path(labels)] if labels else sorted(p for p in root.rglob("*") if p.suffix.lower() in (".csv", ".tsv"))
    by_image: dict[Path, tuple[Path, dict[str, str]]] = {}
    for table in tables:
        key, rows = _read_table(table)
        if key is None:
            if labels:
                yield Reject(DATASET, str(table), f"labels file has no file-name column (one of: {', '.join(FILE_COLUMNS)})")
            continue
        for row in rows:
            name = row.get(key, "")
            if not name:
                continue
            image = (table.parent / name).resolve()
            if not image.exists():
                yield Reject(DATASET, str(table), f"{name} is listed in {table.name} but the image is not in the folder")
                continue
            by_image[image] = (table, {k: v for k, v in row.items() if k != key})
    if not images:
        yield Reject(DATASET, str(root), f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under this folder")
    for image in images:
        yield _record(root, image, by_image.get(image.resolve()))


def _record(root: Path, image: Path, labelled: tuple[Path, dict[str, str]] | None) -> Record | Reject:
    from PIL import Image, UnidentifiedImageError

    rel = image.relative_to(root).with_suffix("").as_posix()
    rid = f"{DATASET}/{rel}"
    try:
        with Image.open(image) as im:  # lazy: reads the header, not the pixels
            fmt, (width, height), mode, dpi = im.format, im.size, im.mode, im.info.get("dpi")
    except (UnidentifiedImageError, OSError) as exc:
        return Reject(DATASET, str(image), f"not a readable image ({type(exc).__name__}: {exc})", rid)
    metadata: dict[str, Any] = {"width_px": width, "height_px": height, "mode": mode}
    if dpi:
        metadata["dpi"] = [round(float(d), 2) for d in dpi]
    row: dict[str, str] = {}
    if labelled:
        metadata["labels_file"] = str(labelled[0])
        row = {k: v for k, v in labelled[1].items() if not is_missing(v)}
    low = {k.lower(): v for k, v in row.items()}
    age = text(low.get("age"))
    split = (low.get("split") or "").lower()
    return Record(
        record_id=rid,
        patient_id=f"{DATASET}/{low['patient_id']}" if low.get("patient_id") else rid,
        dataset=DATASET,
        modality="ecg",
        media=[str(image.resolve())],
        media_format=(fmt or image.suffix.lstrip(".")).lower(),
        age_years=float(age) if age and age.replace(".", "", 1).isdigit() else None,
        sex=SEX.get((low.get("sex") or "").lower()),
        rhythm=(low.get("rhythm") or "").lower() or None,
        superclasses=[s.upper() for s in _split_list(low.get("superclasses") or low.get("superclass"))],
        statements=_split_list(low.get("statements")),
        codes=_split_list(low.get("codes")),
        code_system=low.get("code_system") or None,
        diagnosis=[d.lower() for d in _split_list(low.get("diagnosis"))],
        source_labels=row,
        metadata=metadata,
        source_path=str(labelled[0]) if labelled else None,
        split=split if split in SPLITS else None,
    )
