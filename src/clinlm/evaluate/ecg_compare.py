"""The table nobody else gives: the same ECGs read as a signal, a clean printout and a photo.

`media_table({"signal": eval_dir, "clean image": eval_dir, "photo": eval_dir})` reads each
evaluation's metrics.json (`clinlm eval` on the same held-out patients, asked the same questions
about each medium) and lays the headline ECG figures side by side, each with its 95% bootstrap-
over-patients CI, beside the majority and text-only baselines of the same rows:

    | figure | signal | clean image | photo | majority | text-only |

so a user sees what reading a picture (and a phone photo of it) costs against the raw signal.
`write_media_table` writes it as media_table.md and media_table.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from clinlm.evaluate.report import format_ci

FIGURES = (
    ("ecg_closed", "af_accuracy", "AF? accuracy (closed, generated)"),
    ("ecg_class:af", "auroc", "AF AUROC (P(yes))"),
    ("ecg_class", "macro_auroc_superclass", "superclass macro AUROC"),
    ("ecg_class", "macro_auroc_rhythm", "rhythm macro AUROC"),
    ("ecg_class", "macro_f1_rhythm", "rhythm macro F1"),
    ("ecg_closed", "accuracy", "closed questions accuracy"),
    ("ecg_mcq", "accuracy", "multiple choice accuracy"),
    ("ecg_report", "finding_f1", "report finding F1"),
    ("ecg_report", "rhythm_accuracy", "report rhythm accuracy"),
    ("ecg_conversation", "accuracy", "conversation last-turn accuracy"),
)


def _fmt(r: Mapping[str, Any] | None) -> str:
    return format_ci(r, ci_digits=2)


def _index(folder: Path) -> dict[tuple[str, str, str], dict]:
    path = Path(folder) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `clinlm eval` into {folder} first")
    return {(r["system"], r["task"], r["metric"]): r for r in json.loads(path.read_text()) if not set(r) - {"system", "task", "metric", "value", "ci_low", "ci_high", "n"}}


def media_table(runs: Mapping[str, str | Path]) -> tuple[str, list[dict[str, Any]]]:
    """(markdown table, JSON rows) of the headline ECG figures per medium; baselines from the first run."""
    indexes = {name: _index(Path(folder)) for name, folder in runs.items()}
    first = next(iter(indexes.values()))
    names = list(runs)
    header = ["figure", *names, "majority", "text-only", "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    rows = []
    for task, metric, label in FIGURES:
        cells = {name: idx.get(("model", task, metric)) for name, idx in indexes.items()}
        if not any(cells.values()):
            continue
        base = {s: first.get((s, task, metric)) for s in ("majority", "text_only")}
        n = next((c["n"] for c in cells.values() if c), "")
        lines.append("| " + " | ".join([label, *(_fmt(cells[x]) for x in names), _fmt(base["majority"]), _fmt(base["text_only"]), str(n)]) + " |")
        rows.append({"task": task, "metric": metric, "figure": label, **{x: cells[x] for x in names}, **base})
    return "\n".join(lines), rows


def write_media_table(runs: Mapping[str, str | Path], out: str | Path) -> Path:
    """media_table.md (with where each column comes from) and media_table.json into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table, rows = media_table(runs)
    sources = "\n".join(f"- **{name}**: `{Path(folder) / 'metrics.json'}`" for name, folder in runs.items())
    (out / "media_table.md").write_text(
        "# The same held-out ECGs as signal, clean printout and photo\n\n"
        "Model value [95% CI, bootstrap over patients]; the baselines answer the first column's rows.\n\n"
        f"{table}\n\n{sources}\n")
    (out / "media_table.json").write_text(json.dumps(rows, indent=1))
    return out / "media_table.md"
