"""`clinlm bench validate FILE...`: check any JSONL in the messages/audios convention.

Works on our files and a user's (LLaMA-Factory / ms-swift style rows, and TRL-style preference
rows with `prompt` / `chosen` / `rejected`). Checks, each problem naming file, line and field:

- the line is a JSON object with a `messages` list (instruction row) or `prompt` + `chosen` +
  `rejected` (preference row);
- messages: each has a role in system/user/assistant and non-empty string content; an optional
  system message first, then user and assistant alternating, ending with the assistant
  (preference rows: the prompt ends with the user, chosen/rejected are assistant turns or strings);
- placeholders: the number of `<audio>` in the user turns equals len(`audios`), and likewise
  `<ecg>` / `ecgs` and `<image>` / `images` when either side is present;
- media: each file exists (relative paths are resolved against the JSONL's folder) and decodes
  (audio: its header is read with `clinlm.signals.audio.audio_info`; ECG: the WFDB header of the
  record, named with or without `.hea`; images: Pillow verifies them; each file is checked once);
  `rejected_audios` entries (paths or degradation specs with a "path") are checked the same way;
- patients: no `patient_id` in two splits across all the files given (the split is the row's
  `split` field, else the file name: train/val/test.jsonl).

Problems that make a row unusable are errors (exit status 1); oddities that do not (a row without
`patient_id`, so leakage cannot be checked) are warnings.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinlm.records import SPLITS

PLACEHOLDERS = {"<audio>": "audios", "<ecg>": "ecgs", "<image>": "images"}
ROLES = ("system", "user", "assistant")
MAX_LISTED = 200  # problems kept per file; the rest are counted


@dataclass
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


@dataclass
class FileSummary:
    path: str
    rows: int = 0
    kind: Counter = field(default_factory=Counter)  # instruction / preference
    tasks: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    media: int = 0
    errors: int = 0
    warnings: int = 0


@dataclass
class ValidationReport:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    files: list[FileSummary] = field(default_factory=list)
    errors_not_listed: int = 0
    patients: int = 0
    media_checked: int = 0


def _check_messages(msgs: Any, where: str, final_role: str, allow_strings: bool = False) -> list[tuple[str, str]]:
    """(field, message) problems of one message list; `final_role` the role it must end with."""
    if allow_strings and isinstance(msgs, str):
        return [] if msgs.strip() else [(where, "empty content")]
    if not isinstance(msgs, list) or not msgs:
        return [(where, "must be a non-empty list of {role, content} messages")]
    out = []
    expected = None
    for i, m in enumerate(msgs):
        f = f"{where}[{i}]"
        if not isinstance(m, dict):
            out.append((f, "must be an object with role and content"))
            continue
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            out.append((f"{f}.role", f"role must be one of {', '.join(ROLES)}, got {role!r}"))
            continue
        if not isinstance(content, str) or not content.strip():
            out.append((f"{f}.content", "empty content" if isinstance(content, str) or content is None else
                        f"content must be a string, got {type(content).__name__}"))
        if role == "system":
            if i != 0:
                out.append((f"{f}.role", "a system message is allowed only first"))
            continue
        if expected is not None and role != expected:
            out.append((f"{f}.role", f"roles must alternate user/assistant: expected {expected}, got {role}"))
        expected = "assistant" if role == "user" else "user"
    last = msgs[-1].get("role") if isinstance(msgs[-1], dict) else None
    if last != final_role:
        out.append((f"{where}[{len(msgs) - 1}].role", f"must end with the {final_role}, ends with {last}"))
    return out


def _media_ok(path: str, base: Path, cache: dict[str, str | None], key: str) -> str | None:
    """None when the file exists and decodes, else the reason (cached per resolved path)."""
    p = Path(path)
    if not p.is_absolute():
        p = base / p
    resolved = str(p)
    if resolved in cache:
        return cache[resolved]
    if key == "ecgs":  # a WFDB record is named without its extension: its header must exist and parse
        from clinlm.signals.ecg import EcgError, read_ecg_header

        try:
            read_ecg_header(p)
            reason = None
        except EcgError as exc:
            reason = f"ECG record does not read: {exc} ({resolved})"
    elif not p.exists():
        reason = f"file not found: {resolved}"
    elif key == "audios":
        from clinlm.signals.audio import AudioError, audio_info

        try:
            audio_info(p)
            reason = None
        except AudioError as exc:
            reason = f"audio does not decode: {exc} ({resolved})"
    elif key == "images":
        try:
            from PIL import Image

            with Image.open(p) as im:
                im.verify()
            reason = None
        except Exception as exc:  # PIL raises many types for a broken image
            reason = f"image does not decode: {exc} ({resolved})"
    else:
        reason = None
    cache[resolved] = reason
    return reason


def _content(msgs: Any) -> str:
    if not isinstance(msgs, list):
        return ""
    return "".join(m.get("content", "") for m in msgs if isinstance(m, dict) and isinstance(m.get("content"), str))


def _check_row(row: Any, base: Path, cache: dict, summary: FileSummary) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []  # (field, message)
    if not isinstance(row, dict):
        return [("row", "must be a JSON object")], []
    if "messages" in row:
        summary.kind["instruction"] += 1
        errors += _check_messages(row["messages"], "messages", "assistant")
        user_text = _content([m for m in row["messages"] if isinstance(m, dict) and m.get("role") != "assistant"]) \
            if isinstance(row["messages"], list) else ""
    elif "prompt" in row:
        summary.kind["preference"] += 1
        errors += _check_messages(row["prompt"], "prompt", "user", allow_strings=True)
        for key in ("chosen", "rejected"):
            if key not in row:
                errors.append((key, "missing (a preference row needs prompt, chosen and rejected)"))
            else:
                errors += _check_messages(row[key], key, "assistant", allow_strings=True)
        if isinstance(row.get("chosen"), type(row.get("rejected"))) and row.get("chosen") == row.get("rejected"):
            errors.append(("rejected", "is the same as chosen"))
        user_text = row["prompt"] if isinstance(row["prompt"], str) else _content(row["prompt"])
    else:
        return [("messages", "missing: a row needs `messages` (instruction) or `prompt`/`chosen`/`rejected` (preference)")], []
    if row.get("task"):
        summary.tasks[str(row["task"])] += 1

    for token, key in PLACEHOLDERS.items():
        media = row.get(key)
        n_tokens = user_text.count(token)
        if media is None and n_tokens == 0:
            continue
        if media is None:
            errors.append((key, f"missing, but the prompt has {n_tokens} {token} placeholder(s)"))
            continue
        if not isinstance(media, list):
            errors.append((key, "must be a list of paths"))
            continue
        if n_tokens != len(media):
            errors.append((key, f"{len(media)} file(s) but {n_tokens} {token} placeholder(s) in the prompt"))
        for i, path in enumerate(media):
            if not isinstance(path, str) or not path:
                errors.append((f"{key}[{i}]", "must be a non-empty path string"))
                continue
            summary.media += 1
            reason = _media_ok(path, base, cache, key)
            if reason:
                errors.append((f"{key}[{i}]", reason))
    if "rejected_audios" in row:
        bad = row["rejected_audios"]
        if not isinstance(bad, list) or len(bad) != len(row.get("audios") or []):
            errors.append(("rejected_audios", "must be a list with one entry per audio"))
        else:
            for i, item in enumerate(bad):
                path = item.get("path") if isinstance(item, dict) else item
                if not isinstance(path, str) or not path:
                    errors.append((f"rejected_audios[{i}]", "must be a path or a degradation spec with a 'path'"))
                    continue
                if isinstance(item, dict) and "degrade" not in item:
                    errors.append((f"rejected_audios[{i}]", "a spec needs 'degrade' (noise, low_pass, dropout, time_crop, ...)"))
                reason = _media_ok(path, base, cache, "audios")
                if reason:
                    errors.append((f"rejected_audios[{i}]", reason))
    if "patient_id" not in row:
        warnings.append(("patient_id", "missing: patient leakage across splits cannot be checked for this row"))
    return errors, warnings


def validate_files(paths: list[Path]) -> ValidationReport:
    """Validate JSONL files; problems name file, line and field (see the module docstring)."""
    report = ValidationReport()
    cache: dict[str, str | None] = {}
    first_seen: dict[str, dict[str, tuple[str, int]]] = defaultdict(dict)  # patient -> split -> (file, line)
    for path in paths:
        path = Path(path)
        summary = FileSummary(str(path))
        report.files.append(summary)

        def add(kind: str, line: int, fld: str, msg: str) -> None:
            target = report.errors if kind == "error" else report.warnings
            if kind == "error":
                summary.errors += 1
            else:
                summary.warnings += 1
            if summary.errors + summary.warnings <= MAX_LISTED:
                target.append(Problem(str(path), line, fld, msg))
            elif kind == "error":
                report.errors_not_listed += 1

        if not path.exists():
            add("error", 0, "file", "file not found")
            continue
        file_split = path.stem if path.stem in SPLITS else None
        missing_pid: list[int] = []
        with open(path, encoding="utf-8") as fh:
            for n, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                summary.rows += 1
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    add("error", n, "line", f"not valid JSON ({exc.msg} at column {exc.colno})")
                    continue
                errors, warnings = _check_row(row, path.parent, cache, summary)
                for fld, msg in errors:
                    add("error", n, fld, msg)
                if warnings:
                    missing_pid.append(n)
                if not isinstance(row, dict):
                    continue
                split = row.get("split") or file_split
                if split:
                    summary.splits[str(split)] += 1
                pid = row.get("patient_id")
                if pid is not None and split:
                    seen = first_seen[str(pid)]
                    if split not in seen:
                        seen[split] = (str(path), n)
                        if len(seen) == 2:  # report the leak once, naming where each split saw the patient
                            (s1, (f1, l1)), (s2, (f2, l2)) = seen.items()
                            add("error", n, "patient_id",
                                f"patient {pid} is in two splits: {s1} ({f1}:{l1}) and {s2} ({f2}:{l2})")
                    if row.get("split") and file_split and row["split"] != file_split:
                        add("error", n, "split", f"row says split {row['split']!r} but the file is {path.name}")
        if missing_pid:
            add("warning", missing_pid[0], "patient_id",
                f"missing in {len(missing_pid)} row(s) (first here): patient leakage across splits cannot be checked for them")
    report.patients = len(first_seen)
    report.media_checked = len(cache)
    return report


def print_validation(report: ValidationReport, console) -> None:
    """A summary table per file, then the problems (file:line: field: message)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="bench validate")
    for col in ("file", "rows", "kind", "tasks", "splits", "media refs", "errors", "warnings"):
        table.add_column(col, justify="right" if col in ("rows", "media refs", "errors", "warnings") else "left")
    for s in report.files:
        table.add_row(
            escape(s.path), str(s.rows), ", ".join(f"{k} {v}" for k, v in s.kind.items()),
            ", ".join(f"{k} {v}" for k, v in sorted(s.tasks.items())), ", ".join(f"{k} {v}" for k, v in sorted(s.splits.items())),
            str(s.media), f"[red]{s.errors}[/]" if s.errors else "0", str(s.warnings),
        )
    console.print(table)
    console.print(f"{report.patients} patients, {report.media_checked} distinct media files checked")
    for p in report.errors:
        console.print(f"[red]error[/] {escape(str(p))}", highlight=False)
    if report.errors_not_listed:
        console.print(f"[red]... and {report.errors_not_listed} more errors[/]")
    for p in report.warnings:
        console.print(f"[yellow]warning[/] {escape(str(p))}", highlight=False)
    if not report.errors:
        console.print("[green]valid[/]")
