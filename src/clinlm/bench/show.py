"""`clinlm bench show BENCH_DIR`: counts per task, split and dataset, examples, and the plots.

Counts are read from the JSONL files themselves (streamed), so the command also works on a
bench folder whose stats.json is missing or was edited; stats.json adds what only the build
knows (skipped records, rejection kinds, timing).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from clinlm.records import SPLITS


def show_bench(path: Path, console, examples: int = 1) -> None:
    from rich.markup import escape
    from rich.table import Table

    path = Path(path)
    files = [path / f"{s}.jsonl" for s in SPLITS if (path / f"{s}.jsonl").exists()]
    if not files:
        raise FileNotFoundError(f"no train/val/test.jsonl in {path}: build one with `clinlm bench build <ingest folders> --out {path}`")
    by_task: dict[str, Counter] = defaultdict(Counter)
    by_dataset: dict[str, Counter] = defaultdict(Counter)
    shown: dict[str, list[dict]] = defaultdict(list)
    patients: dict[str, set] = defaultdict(set)
    for f in files:
        split = f.stem
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                task = row.get("task", "?")
                by_task[task][split] += 1
                by_dataset[row.get("dataset", "?")][split] += 1
                patients[split].add(row.get("patient_id"))
                if len(shown[task]) < examples:
                    shown[task].append(row)

    def table(title: str, data: dict[str, Counter], first: str) -> Table:
        t = Table(title=title)
        t.add_column(first)
        for s in SPLITS:
            t.add_column(s, justify="right")
        t.add_column("total", justify="right")
        for name, c in sorted(data.items()):
            t.add_row(name, *(str(c.get(s, 0)) for s in SPLITS), str(sum(c.values())))
        totals = Counter()
        for c in data.values():
            totals.update(c)
        t.add_row("[bold]all[/]", *(f"[bold]{totals.get(s, 0)}[/]" for s in SPLITS), f"[bold]{sum(totals.values())}[/]")
        return t

    console.print(table(f"rows per task: {path}", by_task, "task"))
    console.print(table("rows per dataset", by_dataset, "dataset"))
    console.print("patients per split: " + ", ".join(f"{s} {len(patients[s])}" for s in SPLITS if s in patients))
    pref = path / "preference"
    if pref.is_dir():
        counts = {s: sum(1 for line in open(pref / f"{s}.jsonl", encoding="utf-8") if line.strip())
                  for s in SPLITS if (pref / f"{s}.jsonl").exists()}
        console.print("preference rows: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    stats_path = path / "stats.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
        if stats.get("skipped_no_media"):
            console.print(f"[yellow]skipped {stats['skipped_no_media']} records without media[/] (--allow-missing-media keeps them)")
        kinds = stats.get("rejection_kinds", {})
        if kinds:
            console.print("rejected responses: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.get("text", {}).items()))
                          + "; rejected audio: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.get("audio", {}).items())))
        if stats.get("rows_per_second"):
            console.print(f"built with seed {stats.get('seed')} in {stats.get('seconds')} s ({stats['rows_per_second']} rows/s)")
    for task, rows in sorted(shown.items()):
        for row in rows:
            user = row["messages"][-2]["content"] if len(row.get("messages", [])) >= 2 else ""
            answer = row["messages"][-1]["content"] if row.get("messages") else ""
            console.print(f"\n[bold cyan]{escape(task)}[/] [dim]{escape(str(row.get('dataset')))} {escape(str(row.get('record_ids')))}[/]")
            console.print(f"[bold]user:[/] {escape(user)}", highlight=False)
            console.print(f"[bold]assistant:[/] {escape(answer)}", highlight=False)
    plots = sorted(p.name for p in path.glob("*.png"))
    if plots:
        console.print(f"\nplots in {path}: " + ", ".join(plots) + f"; card: {path / 'card.md'}")
