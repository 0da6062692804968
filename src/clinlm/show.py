"""Human-readable views of record tables: the ingest summary and `clinlm records show`."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clinlm.ingest import label_counts
from clinlm.records import SUMMARY_FILE, read_records, read_rejects


def print_ingest_summary(summary: dict, console: Console) -> None:
    console.print(
        f"[bold]{summary['adapter']}[/]: {summary['records']} records from {summary['patients']} patients "
        f"({summary.get('records_without_media', 0)} without media), "
        f"{summary['rejects']} rejects, {summary['seconds']} s ({summary.get('records_per_second')} records/s)"
    )
    splits = Table("split", "records", "patients", title="splits (by patient)")
    for s in ("train", "val", "test"):
        if s in summary["records_per_split"]:
            splits.add_row(s, str(summary["records_per_split"][s]), str(summary["patients_per_split"][s]))
    console.print(splits)
    if summary["reject_reasons"]:
        rej = Table("reason", "count", title="rejects")
        for reason, n in summary["reject_reasons"].items():
            rej.add_row(reason, str(n))
        console.print(rej)


def show_records(path: Path, console: Console, max_rejects: int = 10) -> None:
    path = Path(path)
    records = read_records(path)
    rejects = read_rejects(path)
    summary_file = path / SUMMARY_FILE
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    datasets = sorted({r.dataset for r in records})
    console.print(
        f"[bold]{path}[/]: {len(records)} records ({sum(1 for r in records if not r.media)} without media), "
        f"{len({r.patient_id for r in records})} patients, {len(rejects)} rejects; datasets: {', '.join(datasets) or '-'}"
    )
    if summary.get("command"):
        console.print(f"made by: {summary['command']}")
    for name, counts in label_counts(records).items():
        table = Table(name, "records", title=name)
        for value, n in counts.items():
            table.add_row(value, str(n))
        console.print(table)
    if rejects:
        table = Table("path", "reason", title=f"rejects (first {min(max_rejects, len(rejects))} of {len(rejects)})")
        for r in rejects[:max_rejects]:
            table.add_row(r.path, r.reason)
        console.print(table)
