"""Coswara (IISc Bangalore crowdsourced COVID-19 sounds): one Record per cough (or breathing) wav.

Layout (github.com/iiscleap/Coswara-Data, after its `extract_data.py`):
```
<root>/[Extracted_data/]<YYYYMMDD>/<participant id>/{cough-heavy, cough-shallow, breathing-deep,
    breathing-shallow, counting-normal, counting-fast, vowel-a, vowel-e, vowel-o}.wav (+ metadata.json)
<root>/combined_data.csv          one row per participant (columns explained in csv_labels_legend.json)
<root>/<YYYYMMDD>/<YYYYMMDD>.csv  the same fields for that date's participants
```
Which files are read: `kinds`, by default the two coughs ("cough-heavy", "cough-shallow") as
modality "cough"; "breathing-deep"/"breathing-shallow" may be added and are modality "lung".
Counting and vowels are speech, not auscultation or cough: never read (a kind outside these four
is refused up front). A wav whose name is none of the nine Coswara kinds is a Reject.

Metadata (`combined_data.csv`; a date CSV or the participant's metadata.json fills in participants
it lacks; legend in csv_labels_legend.json): `id`, `a` (age), `g` (male/female/other),
`covid_status`, `record_date`, `l_c`/`l_s`/`l_l` (country/state/locality), `smoker`, `test_status`
(p/n/na), `vacc`, symptom flags (cough, cold, fever, bd = breathing difficulty, st = sore throat,
ftg = fatigue, mp = muscle pain, loss_of_smell, diarrhoea) and condition flags (asthma, cld =
chronic lung disease, pneumonia, ht = hypertension, diabetes, ihd = ischemic heart disease,
others_resp, others_preexist). Flags are `True` or blank; blank is not read as False.

Mapping: `cough_status` from `covid_status`: healthy -> "healthy", positive_mild /
positive_moderate / positive_asymp -> "covid-19" (the part after "positive_" in
`metadata["covid_severity"]`), resp_illness_not_identified -> "symptomatic",
no_resp_illness_exposed -> "exposed", recovered_full -> "recovered", under_validation -> None.
`patient_id` "coswara/<id>"; no official split. Smoker, symptoms and conditions go to metadata.

The real metadata in ../shared/data has 2,746 participants and no audio: each participant listed in
combined_data.csv with no folder is a Reject ("listed in combined_data.csv but has no recordings in
the folder"), and a participant folder with none of the requested kinds is a Reject. The tests
write a small tree with wavs in this layout. A fresh clone of the GitHub repository holds
`<date>/<date>.tar.gz.*` archives: run its `extract_data.py` first, then point the adapter at the
extracted folder (otherwise every participant is rejected as above).
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from clinlm.records import Record, Reject
from clinlm.signals.audio import AudioError
from clinlm.sources._values import SEX, Unrecognised, abspath, media_fields, text

DATASET = "coswara"
READABLE_KINDS = {"cough-heavy": "cough", "cough-shallow": "cough", "breathing-deep": "lung", "breathing-shallow": "lung"}
SPEECH_KINDS = {"counting-normal", "counting-fast", "vowel-a", "vowel-e", "vowel-o"}
DEFAULT_KINDS = ("cough-heavy", "cough-shallow")
DATE_RE = re.compile(r"^(\d{8}|\d{4}-\d{2}-\d{2})$")
STATUS = {
    "healthy": "healthy",
    "resp_illness_not_identified": "symptomatic",
    "no_resp_illness_exposed": "exposed",
    "recovered_full": "recovered",
    "under_validation": None,
}
SYMPTOMS = {
    "cough": "cough", "cold": "cold", "fever": "fever", "bd": "breathing difficulty", "st": "sore throat",
    "ftg": "fatigue", "mp": "muscle pain", "loss_of_smell": "loss of smell and taste", "diarrhoea": "diarrhoea",
}
CONDITIONS = {
    "asthma": "asthma", "cld": "chronic lung disease", "pneumonia": "pneumonia", "ht": "hypertension",
    "diabetes": "diabetes", "ihd": "ischemic heart disease", "others_resp": "other respiratory illness",
    "others_preexist": "other pre-existing condition",
}
GENDER = {**SEX, "other": None}
NOT_LISTED = "listed in combined_data.csv but has no recordings in the folder"


def _cough_status(raw: Any, unknown: Unrecognised, metadata: dict[str, Any]) -> str | None:
    status = text(raw)
    if status is None:
        return None
    key = status.lower()
    if key.startswith("positive_"):
        metadata["covid_severity"] = key[len("positive_"):]
        return "covid-19"
    return unknown.choice("covid_status", status, STATUS)


def participant_fields(row: dict[str, Any]) -> dict[str, Any]:
    """Record fields (labels, source_labels, metadata) for one participant's metadata row."""
    unknown = Unrecognised()
    metadata: dict[str, Any] = {}
    fields: dict[str, Any] = {
        "source_labels": {k: str(v).strip() for k, v in row.items() if k and text(v) is not None},
        "age_years": unknown.number("a", row.get("a")),
        "sex": unknown.choice("g", row.get("g"), GENDER),
        "cough_status": _cough_status(row.get("covid_status"), unknown, metadata),
    }
    smoker = unknown.flag("smoker", row.get("smoker"))
    if smoker is not None:
        metadata["smoker"] = smoker
    for key, names in (("symptoms", SYMPTOMS), ("conditions", CONDITIONS)):
        present = [name for col, name in names.items() if unknown.flag(col, row.get(col))]
        if present:
            metadata[key] = present
    for col, name in (("record_date", "record_date"), ("g", "gender"), ("l_c", "country"), ("l_s", "state"), ("test_status", "test_status"), ("vacc", "vaccination")):
        if text(row.get(col)) is not None:
            metadata[name] = str(row[col]).strip()
    fields["metadata"] = unknown.into(metadata)
    return fields


def _read_csv(path: Path) -> tuple[list[dict[str, str]], str | None]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        return [], f"metadata CSV unreadable: {exc}"
    if rows and "id" not in rows[0]:
        return [], "metadata CSV has no 'id' column"
    return rows, None


def read(root: Path, kinds: Iterable[str] = DEFAULT_KINDS) -> Iterator[Record | Reject]:
    """Yield one Record per requested Coswara recording under `root`, a Reject for anything unusable."""
    root = Path(root)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in READABLE_KINDS]
    if bad:
        raise ValueError(f"coswara kinds must be among {', '.join(READABLE_KINDS)}; got {', '.join(bad)}")

    folders: dict[str, list[Path]] = defaultdict(list)  # participant id -> folders (normally one)
    combined: list[Path] = []
    date_csvs: list[Path] = []
    for path in sorted(p for p in root.rglob("*")):
        if path.is_dir() and DATE_RE.match(path.parent.name):
            folders[path.name].append(path)
        elif path.is_file() and path.name.lower() == "combined_data.csv":
            combined.append(path)
        elif path.is_file() and path.suffix.lower() == ".csv" and DATE_RE.match(path.stem) and path.parent.name == path.stem:
            date_csvs.append(path)

    # Participant metadata: combined_data.csv first, then the per-date CSVs for anyone it lacks.
    listed: dict[str, tuple[dict[str, str], Path]] = {}
    for path in combined + date_csvs:
        rows, problem = _read_csv(path)
        if problem:
            yield Reject(DATASET, str(path), problem)
            continue
        for n, row in enumerate(rows, start=2):
            pid = text(row.get("id"))
            if pid is None:
                yield Reject(DATASET, str(path), f"metadata row without participant id: line {n}")
            elif path in combined and pid in listed and listed[pid][1] == path:
                yield Reject(DATASET, str(path), f"participant listed twice: {pid} (line {n} ignored)", f"{DATASET}/{pid}")
            else:
                listed.setdefault(pid, (row, path))

    for pid, (_, path) in sorted(listed.items()):
        if pid not in folders and path in combined:
            yield Reject(DATASET, str(path), f"{NOT_LISTED}: participant {pid}", f"{DATASET}/{pid}")
        elif pid not in folders:
            yield Reject(DATASET, str(path), f"listed in a date CSV but has no recordings in the folder: participant {pid} ({path.name})", f"{DATASET}/{pid}")

    for pid, dirs in sorted(folders.items()):
        for folder in dirs:
            row = listed.get(pid, (None, None))[0]
            meta_path = folder / "metadata.json"
            if row is None and meta_path.is_file():
                try:
                    row = json.loads(meta_path.read_text(encoding="utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    row = None
            fields = participant_fields(row if isinstance(row, dict) else {})
            if not isinstance(row, dict):
                fields["metadata"]["missing_metadata"] = True
            found = 0
            for wav in sorted(folder.glob("*.wav")):
                kind = wav.stem
                if kind not in READABLE_KINDS and kind not in SPEECH_KINDS:
                    yield Reject(DATASET, str(wav), f"not a Coswara recording name: {wav.name} (expected e.g. cough-heavy.wav)", f"{DATASET}/{pid}/{kind}")
                    continue
                if kind not in kinds:
                    continue  # not requested (see module docstring)
                found += 1
                record_id = f"{DATASET}/{pid}/{kind}"
                try:
                    media = media_fields(wav)
                except AudioError as exc:
                    yield Reject(DATASET, str(wav), f"audio unreadable: {exc}", record_id)
                    continue
                yield Record(
                    record_id=record_id,
                    patient_id=f"{DATASET}/{pid}",
                    dataset=DATASET,
                    modality=READABLE_KINDS[kind],
                    source_labels=dict(fields["source_labels"]),
                    metadata={**fields["metadata"], "kind": kind, "date_folder": folder.parent.name},
                    age_years=fields["age_years"],
                    sex=fields["sex"],
                    cough_status=fields["cough_status"],
                    source_path=abspath(folder),
                    **media,
                )
            if not found:
                yield Reject(DATASET, str(folder), f"participant folder has none of the requested recordings: {', '.join(kinds)}", f"{DATASET}/{pid}")
