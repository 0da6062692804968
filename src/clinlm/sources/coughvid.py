"""COUGHVID (EPFL crowdsourced cough recordings, Orlandic et al., Scientific Data 2021): one Record per recording.

Layout (the public release, e.g. Zenodo `public_dataset/`): one flat folder of `<uuid>.webm` or
`<uuid>.ogg` (what the browser recorded; some copies hold `.wav` conversions) with a `<uuid>.json`
beside each, and `metadata_compiled.csv` with the same fields for every uuid (its first, unnamed
column is a row index). JSON fields, as the dataset's own scripts and users read them:
`datetime`, `cough_detected` (the publishers' cough-detector probability, 0-1), `latitude`,
`longitude`, `age`, `gender` (male/female/other), `respiratory_condition`, `fever_muscle_pain`
(True/False), `status` (healthy / symptomatic / COVID-19; absent when the user gave none) and,
for the expert-labelled subset, `expert_labels_1` ... `expert_labels_4`: objects with `quality`
(good/ok/poor/no_cough), `cough_type` (wet/dry/unknown), `dyspnea`, `wheezing`, `stridor`,
`choking`, `congestion`, `nothing` (True/False), `diagnosis` (upper_infection, lower_infection,
obstructive_disease, COVID-19, healthy_cough) and `severity` (pseudocough/mild/severe/unknown).
The CSV flattens those as `quality_1`, `cough_type_1`, ... and newer versions add `SNR` and
`status_SSL`. Values in the JSON are often strings ("0.9609", "False"); both forms are read.

COUGHVID has no patient ids: one person may have submitted several recordings, so
`patient_id` is the recording's uuid and patient-level splits are only as good as that.
There is no official split.

Mapping: `cough_status` = status lower-cased ("healthy", "symptomatic", "covid-19");
`metadata["cough_detected"]` the probability (recordings below ~0.8 are often not coughs: filter
downstream, nothing is dropped here); `metadata["expert_labels"]` one object per expert that
labelled the recording (their labels disagree often, so no single wheeze/diagnosis is derived).
Audio: header info via `clinlm.signals.audio` (webm through PyAV, ogg through soundfile).
A json/CSV entry without an audio file, a second audio file for one uuid, and undecodable audio
are Rejects. An audio file with no metadata at all is kept, unlabelled, with
`metadata["missing_metadata"] = True`.

The real audio is not in ../shared/data; the tests write this layout (a real webm/opus made with
PyAV, an ogg made with soundfile, a corrupt webm).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from clinlm.records import Record, Reject
from clinlm.signals.audio import AudioError
from clinlm.sources._values import Unrecognised, abspath, media_fields, text

DATASET = "coughvid"
AUDIO_EXTENSIONS = (".webm", ".ogg", ".wav")  # order of preference when one uuid has several
STATUS = {"healthy": "healthy", "symptomatic": "symptomatic", "covid-19": "covid-19"}
GENDER = {"male": "male", "female": "female", "other": None}
EXPERT_FIELDS = ("quality", "cough_type", "dyspnea", "wheezing", "stridor", "choking", "congestion", "nothing", "diagnosis", "severity")
EXPERT_FLAGS = {"dyspnea", "wheezing", "stridor", "choking", "congestion", "nothing"}
TOP_FIELDS = ("datetime", "cough_detected", "latitude", "longitude", "age", "gender", "respiratory_condition", "fever_muscle_pain", "status", "SNR", "status_SSL")


def _from_csv(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row in the JSON's shape: top-level fields plus expert_labels_N objects."""
    out: dict[str, Any] = {k: v for k, v in row.items() if k and k in TOP_FIELDS}
    for n in (1, 2, 3, 4):
        labels = {f: row.get(f"{f}_{n}") for f in EXPERT_FIELDS}
        if any(text(v) is not None for v in labels.values()):
            out[f"expert_labels_{n}"] = labels
    return out


def _read_csv(path: Path, out: dict[str, tuple[dict[str, Any], Path]]) -> Iterator[Reject]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        yield Reject(DATASET, str(path), f"metadata CSV unreadable: {exc}")
        return
    if rows and "uuid" not in rows[0]:
        yield Reject(DATASET, str(path), "metadata CSV has no 'uuid' column")
        return
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        uuid = text(row.get("uuid"))
        if uuid is None:
            yield Reject(DATASET, str(path), f"metadata row without uuid: line {n}")
            continue
        out.setdefault(uuid, (_from_csv(row), path))


def _expert_labels(meta: dict[str, Any], unknown: Unrecognised, source_labels: dict[str, str]) -> list[dict[str, Any]]:
    experts = []
    for n in (1, 2, 3, 4):
        raw = meta.get(f"expert_labels_{n}")
        if raw is None:
            continue
        if not isinstance(raw, dict):
            unknown.add(f"expert_labels_{n}", raw)
            continue
        labels: dict[str, Any] = {"expert": n}
        for key, value in raw.items():
            if text(value) is None:
                continue
            source_labels[f"expert_labels_{n}.{key}"] = str(value)
            if key in EXPERT_FLAGS:
                labels[key] = unknown.flag(f"expert_labels_{n}.{key}", value)
            else:
                labels[key] = str(value).strip()
        experts.append(labels)
    return experts


def _record(uuid: str, audio: Path, meta: dict[str, Any] | None, meta_path: Path | None) -> Record:
    media = media_fields(audio)  # raises AudioError
    unknown = Unrecognised()
    source_labels: dict[str, str] = {}
    metadata: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    if meta is None:
        metadata["missing_metadata"] = True
    else:
        for key in TOP_FIELDS:
            if text(meta.get(key)) is not None:
                source_labels[key] = str(meta[key])
        fields["age_years"] = unknown.number("age", meta.get("age"))
        fields["sex"] = unknown.choice("gender", meta.get("gender"), GENDER)
        fields["cough_status"] = unknown.choice("status", meta.get("status"), STATUS)
        for key, name in (("cough_detected", "cough_detected"), ("latitude", "latitude"), ("longitude", "longitude"), ("SNR", "snr")):
            value = unknown.number(key, meta.get(key))
            if value is not None:
                metadata[name] = value
        for key in ("respiratory_condition", "fever_muscle_pain"):
            value = unknown.flag(key, meta.get(key))
            if value is not None:
                metadata[key] = value
        for key, name in (("datetime", "datetime"), ("gender", "gender"), ("status_SSL", "status_ssl")):
            if text(meta.get(key)) is not None:
                metadata[name] = str(meta[key]).strip()
        experts = _expert_labels(meta, unknown, source_labels)
        if experts:
            metadata["expert_labels"] = experts
    return Record(
        record_id=f"{DATASET}/{uuid}",
        patient_id=f"{DATASET}/{uuid}",
        dataset=DATASET,
        modality="cough",
        source_labels=source_labels,
        metadata=unknown.into(metadata),
        source_path=abspath(meta_path or audio),
        **media,
        **fields,
    )


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per COUGHVID recording under `root`, a Reject for anything unusable."""
    root = Path(root)
    audio: dict[str, list[Path]] = defaultdict(list)
    sidecars: dict[str, Path] = {}
    csv_meta: dict[str, tuple[dict[str, Any], Path]] = {}  # uuid -> (fields, CSV it came from)
    csv_files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS:
            audio[path.stem].append(path)
        elif suffix == ".json":
            sidecars.setdefault(path.stem, path)
        elif suffix == ".csv" and "metadata" in path.name.lower():
            csv_files.append(path)
    for path in csv_files:
        yield from _read_csv(path, csv_meta)

    for uuid in sorted(set(audio) | set(sidecars) | set(csv_meta)):
        record_id = f"{DATASET}/{uuid}"
        meta, meta_path = csv_meta.get(uuid, (None, None))
        if uuid in sidecars:
            meta_path = sidecars[uuid]
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                yield Reject(DATASET, str(meta_path), f"metadata JSON unreadable: {exc}", record_id)
                continue
            if not isinstance(meta, dict):
                yield Reject(DATASET, str(meta_path), "metadata JSON is not an object", record_id)
                continue
        files = sorted(audio.get(uuid, []), key=lambda p: AUDIO_EXTENSIONS.index(p.suffix.lower()))
        if not files:
            yield Reject(DATASET, str(meta_path), f"metadata but no audio file: none of {uuid}{'/'.join(AUDIO_EXTENSIONS)} under the folder", record_id)
            continue
        for extra in files[1:]:
            yield Reject(DATASET, str(extra), f"second audio file for one recording: {files[0].name} is used", record_id)
        try:
            yield _record(uuid, files[0], meta, meta_path)
        except AudioError as exc:
            yield Reject(DATASET, str(files[0]), f"audio unreadable: {exc}", record_id)
