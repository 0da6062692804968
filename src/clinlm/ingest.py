"""`clinlm ingest`: run an adapter over a folder and write the record table.

Output folder:
- `records.parquet`: one row per Record (see `clinlm.records`), with the `split` column filled;
- `rejects.parquet`: every input that could not be used, with its path and reason;
- `summary.json`: counts (records, patients, per split, per label, rejects), the command, versions.

Records stream from the adapter into memory-light lists of rows; split assignment needs only the
patient ids and labels. Files are written atomically (tmp + rename), so a killed run leaves the
previous output intact and a re-run starts clean.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from clinlm.records import (
    REJECTS_FILE,
    RECORDS_FILE,
    SUMMARY_FILE,
    Record,
    Reject,
    atomic_write_table,
    atomic_write_text,
    records_to_table,
    rejects_to_table,
)
from clinlm.sources import get_adapter
from clinlm.splits import assign_splits


@dataclass
class IngestResult:
    out: Path
    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


def label_counts(records: list[Record]) -> dict[str, dict[str, int]]:
    """Counts of each shared-vocabulary label, for the summary and `records show`."""
    counts: dict[str, Counter] = {}

    def add(name: str, value) -> None:
        counts.setdefault(name, Counter())[str(value)] += 1

    for r in records:
        add("modality", r.modality)
        add("split", r.split)
        for name in ("murmur", "abnormal", "crackle", "wheeze", "cough_status", "rhythm", "site", "sex"):
            value = getattr(r, name)
            if value is not None:
                add(name, value)
        for dx in r.diagnosis:
            add("diagnosis", dx)
        for sc in r.superclasses:
            add("superclass", sc)
        if r.systolic_grade is not None:
            add("systolic_grade", r.systolic_grade)
    return {k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for k, v in counts.items()}


def summarise(records: list[Record], rejects: list[Reject], adapter: str, root: Path, seconds: float) -> dict:
    patients = {r.patient_id for r in records}
    by_split = Counter(r.split for r in records)
    patients_by_split = {s: len({r.patient_id for r in records if r.split == s}) for s in by_split}
    return {
        "adapter": adapter,
        "source": str(root),
        "records": len(records),
        "patients": len(patients),
        "rejects": len(rejects),
        "records_without_media": sum(1 for r in records if not r.media),  # labels kept, audio missing
        "records_per_split": dict(by_split),
        "patients_per_split": patients_by_split,
        "reject_reasons": dict(Counter(r.reason.split(":")[0] for r in rejects).most_common()),
        "labels": label_counts(records),
        "seconds": round(seconds, 3),
        "records_per_second": round(len(records) / seconds, 1) if seconds > 0 else None,
        "command": " ".join(sys.argv),
    }


def parse_options(adapter: str, items: list[str] | None) -> dict[str, object]:
    """`--option key=value` strings -> keyword arguments of the adapter's `read` (values as YAML:
    `100` is an int, `true` a bool). An unknown key or a malformed item raises ValueError naming
    the options the adapter has, e.g. `ptbxl`: sampling_rate (100 or 500)."""
    import inspect

    import yaml

    params = [p for p in list(inspect.signature(get_adapter(adapter)).parameters.values())[1:]
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    known = {p.name: p.default for p in params}
    listed = ", ".join(f"{k} (default {v!r})" for k, v in known.items()) or "none"
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--option {item!r} must look like key=value (e.g. --option sampling_rate=100)")
        if key not in known:
            raise ValueError(f"adapter {adapter} has no option {key!r}; its options: {listed}")
        out[key] = yaml.safe_load(raw)
    return out


def run_ingest(adapter: str, root: Path, out: Path, seed: int = 0, progress: bool = True, **kwargs) -> IngestResult:
    """Read `root` with the named adapter and write the record table to `out`.

    Raises FileNotFoundError when `root` does not exist; returns a result with zero records
    (and the rejects explaining why) when nothing could be read.
    """
    root, out = Path(root), Path(out)
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root}")
    read = get_adapter(adapter)
    result = IngestResult(out=out)
    t0 = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]ingest {adapter}[/]"),
        BarColumn(bar_width=None),
        TextColumn("{task.fields[n_rec]} records, {task.fields[n_rej]} rejects"),
        TimeElapsedColumn(),
        disable=not progress,
        transient=True,
    ) as bar:
        task = bar.add_task("ingest", total=None, n_rec=0, n_rej=0)
        for item in read(root, **kwargs):
            if isinstance(item, Record):
                result.records.append(item)
            elif isinstance(item, Reject):
                result.rejects.append(item)
            else:  # an adapter bug, not a data problem: say so loudly
                raise TypeError(f"adapter {adapter} yielded {type(item).__name__}, expected Record or Reject")
            bar.update(task, advance=1, n_rec=len(result.records), n_rej=len(result.rejects))

    # Two records with one id would silently shadow each other downstream: reject the later ones.
    seen: set[str] = set()
    unique: list[Record] = []
    for r in result.records:
        if r.record_id in seen:
            result.rejects.append(Reject(adapter, r.source_path or "", f"duplicate record id: {r.record_id}", r.record_id))
        else:
            seen.add(r.record_id)
            unique.append(r)
    result.records = unique

    splits = assign_splits(result.records, seed=seed)
    for r in result.records:
        r.split = splits[r.patient_id]
    result.seconds = time.perf_counter() - t0
    result.summary = summarise(result.records, result.rejects, adapter, root, result.seconds)
    result.summary["seed"] = seed
    # adapter options (--option key=value), as JSON
    result.summary["options"] = {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in kwargs.items()}

    atomic_write_table(records_to_table(result.records), out / RECORDS_FILE)
    atomic_write_table(rejects_to_table(result.rejects), out / REJECTS_FILE)
    atomic_write_text(json.dumps(result.summary, indent=2), out / SUMMARY_FILE)
    return result
