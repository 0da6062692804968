"""Instruction rows: read the bench JSONL, resolve media paths, check placeholders up front.

A row (bench format, LLaMA-Factory / ms-swift convention):
    {"messages": [{"role": "user", "content": "<audio>Is there a murmur?"},
                  {"role": "assistant", "content": "Yes, ..."}],
     "audios": ["circor/50782_AV.wav"], "task": "binary", "record_ids": [...],
     "patient_id": "...", "dataset": "...", "split": "...", "answer": {...}}
ECG rows use `<ecg>` placeholders with `"ecgs"` (WFDB record paths) and image rows `<image>` with
`"images"` (models/media.py); each kind's placeholders are counted against its own list.
Relative media paths resolve against the JSONL file's folder; `read_rows` makes them absolute so
rows can be passed around (to training, `clinlm.infer.generate`, the evaluator) on their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinlm.models.language_model import AUDIO_TOKEN
from clinlm.models.media import MEDIA, placeholder_count, row_media


def row_name(row: dict[str, Any]) -> str:
    """How errors name a row: its record ids (or record id), task and source line."""
    ids = row.get("record_ids") or ([row["record_id"]] if row.get("record_id") else [])
    where = f" ({row['_source']})" if row.get("_source") else ""
    task = f" task {row['task']}" if row.get("task") else ""
    return f"row {', '.join(map(str, ids)) or '<no record_ids>'}{task}{where}"


def count_placeholders(row: dict[str, Any], token: str = AUDIO_TOKEN) -> int:
    return sum(str(m.get("content", "")).count(token) for m in row["messages"])


def check_row(row: dict[str, Any]) -> None:
    """Raise ValueError naming the row when its shape is wrong or placeholders != audios."""
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError(f"{row_name(row)}: 'messages' must be a non-empty list of {{role, content}}")
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            raise ValueError(f"{row_name(row)}: every message needs a role (system/user/assistant) and string content, got {m!r}")
    for kind in MEDIA.values():
        media, n = row_media(row, kind), placeholder_count(row, kind)
        if n != len(media):
            raise ValueError(
                f"{row_name(row)}: {n} {kind.token} placeholder(s) in the messages but {len(media)} {kind.noun} file(s) "
                f"in {kind.rows_key!r}; each {kind.noun} needs exactly one placeholder where it belongs in the text"
            )


def read_rows(path: str | Path, tasks: list[str] | None = None) -> list[dict[str, Any]]:
    """All rows of a JSONL file, audio paths made absolute, each checked; `tasks` filters by task."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"instruction file not found: {path} (build one with `clinlm bench build`)")
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno} is not valid JSON ({exc})") from exc
            row["_source"] = f"{path.name}:{lineno}"
            for kind in MEDIA.values():
                if kind.rows_key in row or kind.name == "audio":
                    row[kind.rows_key] = [str((path.parent / a).resolve()) if not Path(a).is_absolute() else a for a in row_media(row, kind)]
            check_row(row)
            if tasks is None or row.get("task") in tasks:
                rows.append(row)
    return rows


def repeat_rows(rows: list[dict[str, Any]], repeat: dict[str, int] | None) -> list[dict[str, Any]]:
    """Rows of the tasks in `repeat` ({task: n}) n times each (the others once): a mixing weight.

    The sampler shuffles every epoch, so the copies are spread over the epoch. Used for the binary
    questions, whose yes/no decision is one token of a short answer: on the simulator an SFT model
    reached 0.93 binary accuracy after ~37,000 binary rows, but answered crackle questions from the
    wheeze evidence after the ~18,000 that ten epochs of the plain mixture gave (benchmarks/RESULTS.md)."""
    if not repeat:
        return rows
    bad = {t: n for t, n in repeat.items() if not isinstance(n, int) or isinstance(n, bool) or n < 1}
    if bad:
        raise ValueError(f"data.repeat takes {{task: whole number >= 1}}, got {bad}")
    out = []
    for row in rows:
        out.extend([row] * repeat.get(row.get("task"), 1))
    return out
