"""Which binary probe tasks the ingested records support, and their units, labels and splits.

A task is named `<dataset>/<label>` (`circor/murmur`, `icbhi/crackle`) or, for a label with several
classes, `<dataset>/<label>:<class>` one-vs-rest (`icbhi/diagnosis:copd`, `circor/murmur_timing:early`).
Every task is built per dataset, so a probe never mixes two datasets' label conventions.

| label | modality | unit | positive / negative |
|---|---|---|---|
| murmur | heart | patient | murmur present / absent (CirCor's "unknown" left out) |
| murmur_timing | heart | patient | among murmur-present patients: diastolic, else the systolic timing (early, mid, late, holosystolic) |
| abnormal | heart; lung and cough datasets without diagnoses | patient (heart) / recording | the dataset's abnormal verdict (CirCor Outcome, PhysioNet 2016, SPRSound) |
| diagnosis | heart, lung | patient | each labelled diagnosis vs the rest (BMD-HS valve diseases, ICBHI diagnoses) |
| crackle, wheeze | lung | recording | any annotated cycle with it / none |
| cough_status | cough | patient | each status vs the rest (COUGHVID, Coswara) |
| sim_lesion, sim_s3, sim_s4, sim_true_status | simulated data | patient | the simulator's truth/ tables (lesion, S3, S4, true cough status), which the layouts cannot hold |

A patient-level task labels a patient once: all its records must agree (a patient whose records
disagree is left out and counted). A recording-level task keeps recordings, but its split is still
the patient's, so no patient is ever on both sides of a split.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from clinlm.bench.labels import canonical_diagnosis, normalise_timing
from clinlm.records import Record

SIM_MANIFEST = "simulation.json"
NEGATIVE_CLASSES = ("healthy", "normal", "absent", "negative")  # the negative side of a two-class label


@dataclass
class ProbeTask:
    name: str  # "<dataset>/<label>[:<class>]"
    unit: str  # "patient" | "recording"
    labels: dict[str, bool]  # unit id (patient_id or record_id) -> positive?
    patient: dict[str, str]  # unit id -> patient_id
    records: dict[str, list[str]]  # unit id -> record ids whose embeddings are averaged
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> units left out


def _murmur(r: Record) -> Any:
    return {"present": True, "absent": False}.get((r.murmur or "").lower())


def _murmur_timing(r: Record) -> Any:
    if (r.murmur or "").lower() != "present":
        return None
    if r.diastolic_timing:
        return "diastolic"
    return normalise_timing(r.systolic_timing, "systolic")


def _diagnosis(r: Record) -> Any:
    return frozenset(canonical_diagnosis(d) for d in r.diagnosis) if r.diagnosis else None


def _cough_status(r: Record) -> Any:
    return r.cough_status.lower() if r.cough_status else None


@lru_cache(maxsize=None)
def _sim_truth(root: str, dataset: str) -> dict[str, dict[str, str]]:
    """patient id (as in the records: "<dataset>/<id>") -> the simulator's truth row."""
    path = Path(root) / "truth" / f"{dataset}.csv"
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    key = "uuid" if rows and "uuid" in rows[0] else "patient_id"
    return {f"{dataset}/{row[key]}": row for row in rows}


@lru_cache(maxsize=None)
def _sim_root(source: str) -> str | None:
    """The simulation folder (the one with simulation.json) above a simulated record's file."""
    for parent in Path(source).parents:
        if (parent / SIM_MANIFEST).is_file():
            return str(parent)
    return None


def sim_truth(r: Record) -> dict[str, str] | None:
    src = r.source_path or (r.media[0] if r.media else None)
    root = _sim_root(str(src)) if src else None
    return _sim_truth(root, r.dataset).get(r.patient_id) if root else None


def _truth_field(name: str, kind: str) -> Callable[[Record], Any]:
    def get(r: Record) -> Any:
        row = sim_truth(r)
        if not row or not row.get(name):
            return None
        value = row[name]
        if kind == "bool":
            return {"true": True, "false": False}.get(value.lower())
        return value.lower()

    return get


# (label, modalities, unit, extractor); an extractor returns bool, a class name, a set of classes, or None.
LABELS: list[tuple[str, tuple[str, ...], str, Callable[[Record], Any]]] = [
    ("murmur", ("heart",), "patient", _murmur),
    ("murmur_timing", ("heart",), "patient", _murmur_timing),
    ("abnormal", ("heart",), "patient", lambda r: r.abnormal),
    ("abnormal", ("lung", "cough"), "recording", lambda r: None if r.diagnosis else r.abnormal),
    ("diagnosis", ("heart", "lung"), "patient", _diagnosis),
    ("crackle", ("lung",), "recording", lambda r: r.crackle),
    ("wheeze", ("lung",), "recording", lambda r: r.wheeze),
    ("cough_status", ("cough",), "patient", _cough_status),
    ("sim_lesion", ("heart",), "patient", _truth_field("lesion", "class")),
    ("sim_s3", ("heart",), "patient", _truth_field("s3", "bool")),
    ("sim_s4", ("heart",), "patient", _truth_field("s4", "bool")),
    ("sim_true_status", ("cough",), "patient", _truth_field("true_status", "class")),
]


def _binarise(values: dict[str, Any]) -> list[tuple[str | None, dict[str, bool]]]:
    """{unit: bool | class | set of classes} -> [(class or None, {unit: positive})], one-vs-rest."""
    if all(isinstance(v, bool) for v in values.values()):
        return [(None, dict(values))]
    sets = {u: (v if isinstance(v, frozenset) else frozenset([str(v)])) for u, v in values.items()}
    classes = sorted(set().union(*sets.values()))
    if len(classes) == 2 and all(len(s) == 1 for s in sets.values()):
        # Two exclusive classes: one task, not the same task twice; the finding is the positive class.
        negative = next((c for c in classes if c in NEGATIVE_CLASSES), classes[0])
        classes = [c for c in classes if c != negative]
    return [(c, {u: c in s for u, s in sets.items()}) for c in classes]


def probe_tasks(records: list[Record]) -> list[ProbeTask]:
    """Every binary task the records support (before any count threshold; see probe.run)."""
    by_dataset: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_dataset[r.dataset].append(r)
    tasks: list[ProbeTask] = []
    for dataset in sorted(by_dataset):
        recs = by_dataset[dataset]
        for label, modalities, unit, get in LABELS:
            chosen = [r for r in recs if r.modality in modalities]
            values: dict[str, Any] = {}
            members: dict[str, list[str]] = defaultdict(list)
            patient: dict[str, str] = {}
            for r in chosen:
                v = get(r)
                if v is None:
                    continue
                u = r.patient_id if unit == "patient" else r.record_id
                members[u].append(r.record_id)
                patient[u] = r.patient_id
                values.setdefault(u, set()).add(v)
            if not values:
                continue
            left_out = {}
            conflicting = [u for u, vs in values.items() if len(vs) > 1]
            if conflicting:
                left_out["records of the patient disagree"] = len(conflicting)
            flat = {u: next(iter(vs)) for u, vs in values.items() if len(vs) == 1}
            for cls, labels in _binarise(flat):
                name = f"{dataset}/{label}" + (f":{cls}" if cls is not None else "")
                tasks.append(ProbeTask(name, unit, labels, {u: patient[u] for u in labels},
                                       {u: members[u] for u in labels}, dict(left_out)))
    return tasks
