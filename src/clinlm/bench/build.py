"""`clinlm bench build`: record tables -> instruction and preference JSONL, card and stats.

    clinlm bench build rec/heart rec/lung --out bench/ --seed 0

Writes `out/{train,val,test}.jsonl`, `out/preference/{train,val,test}.jsonl`, `out/stats.json`,
`out/card.md` and PNG plots (see `bench.card`). Row formats: `bench.tasks` (instruction rows),
`bench.preference` (preference rows); answer schemas: `bench.facts`.

How it scales (no whole-dataset list in memory):
1. Pass 1 reads only the small columns (record_id, patient_id, split, modality, media) of each
   table to check splits (a patient never in two splits, across all inputs), find duplicate
   record ids, and choose the comparison pairs (at most two per patient, seeded).
2. Pass 2 streams each table in fixed-size batches (pyarrow `iter_batches`) to a process pool;
   a worker turns its batch into rows (as JSON lines) and hands back, for records in comparison
   pairs, their small label dicts. The main process writes lines as they arrive, in batch order
   (a bounded, ordered map over the pool: a few batches in flight, never the whole table), and
   writes a comparison row as soon as both records of a pair have arrived.
   Every row's phrasing comes from an RNG seeded by (seed, record ids, task), and batches do
   not depend on the number of workers, so output is identical for any `workers`.
3. Files are written to temporary names and renamed at the end: a failed build leaves the
   previous output untouched.

Records without media (annotation-only releases: `metadata["missing_media"]`) are skipped and
counted unless `allow_missing_media`, which writes rows pointing at the expected path so the
labels can be inspected (`clinlm bench validate` then reports the missing files). ECG records
get ECGBench's four tasks (`bench.ecg_tasks`; `--tasks ecg` names all four, the default when every
input is ECGs; otherwise ECG records are counted and skipped unless asked for), about the signal (`media="signal"`, `<ecg>`) or a picture of it
(`media="image"`, `<image>`: a render-ecg or ecg-images picture as it is, a signal drawn as a
clean printout into `out/images/`); no preference rows for them yet. Report records are counted
and skipped here: their task ("impression") is built by `bench.impression`.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import sys
import time
from collections import Counter, defaultdict, deque
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from clinlm.bench.ecg_facts import ECG_TASKS, check_ecg_consistency
from clinlm.bench.ecg_tasks import ecg_labels, ecg_rows, media_path
from clinlm.bench.facts import TASKS, check_consistency
from clinlm.bench.labels import record_labels
from clinlm.bench.preference import mismatch_pool, preference_row
from clinlm.bench.tasks import comparison, make_row, record_rows, row_rng
from clinlm.records import SPLITS, _records_path, read_records_table, row_to_record

BATCH_SIZE = 256  # records per worker job: fixed, so output does not depend on the worker count
IMAGE_BATCH_SIZE = 16
MEDIA_CHOICES = ("signal", "image")  # what ECG rows show the model
MAX_PAIRS_PER_PATIENT = 2
# Task families built by their own module (same CLI, same output convention).
OTHER_BUILDERS = {"impression": "clinlm.bench.impression:build_impression_bench"}


# ------------------------------------------------------------------------------ pass 1: index

def _index(inputs: list[Path], split_all: str | None, allow_missing_media: bool, seed: int, want_pairs: bool) -> dict:
    """Check ids and splits from the small columns; choose comparison pairs."""
    seen_ids: set[str] = set()
    patient_split: dict[str, str] = {}
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    n_records, n_patients = 0, set()
    columns = ["record_id", "patient_id", "split", "modality", "media"]
    for path in inputs:
        rows = (row for batch in pq.ParquetFile(_records_path(path)).iter_batches(batch_size=65536, columns=columns)
                for row in zip(*(batch.column(c).to_pylist() for c in columns)))
        for rid, pid, split, modality, media in rows:
            n_records += 1
            n_patients.add(pid)
            if rid in seen_ids:
                raise ValueError(f"record id {rid!r} appears twice (in {path} or an earlier input): give each ingest folder once")
            seen_ids.add(rid)
            if split_all is None:
                if split not in SPLITS:
                    raise ValueError(
                        f"record {rid} in {path} has no split ({split!r}): ingest it with `clinlm ingest`, "
                        "or pass --split-all test to put every record in one split")
                first = patient_split.setdefault(pid, split)
                if first != split:
                    raise ValueError(f"patient {pid} is in two splits ({first} and {split}) across the inputs: "
                                     "ingest these folders together or with one seed")
            if want_pairs and modality in ("heart", "lung") and (media or allow_missing_media):
                groups[(pid, modality)].append(rid)
    pair_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
    n_pairs = 0
    for (pid, modality), rids in sorted(groups.items()):
        if len(rids) < 2:
            continue
        rids = sorted(rids)
        rng = row_rng(seed, pid, modality, "pairs")
        candidates = list(itertools.combinations(rids, 2))
        rng.shuffle(candidates)
        for a, b in candidates[: min(MAX_PAIRS_PER_PATIENT, len(rids) - 1)]:
            if rng.random() < 0.5:
                a, b = b, a
            pair_of[a].append((n_pairs, 0))
            pair_of[b].append((n_pairs, 1))
            n_pairs += 1
    return {"records": n_records, "patients": len(n_patients), "pair_of": dict(pair_of), "pairs": n_pairs}


# ------------------------------------------------------------------------------ pass 2: rows

def _expected_media(record) -> list[str]:
    missing = record.metadata.get("missing_media")
    if isinstance(missing, str):
        return [missing]
    return [str(p) for p in missing or []]


Line = tuple[str, str, "str | None", dict]  # (split, row JSON, preference JSON or None, facts for the stats)


def _meta(row: dict, pref: dict | None) -> dict:
    ans = row["answer"]
    return {"task": row["task"], "dataset": row["dataset"], "words": len(row["messages"][-1]["content"].split()),
            "binary": (ans["finding"], ans["label"]) if row["task"] == "binary" else None,
            "rejection": (pref["rejection"]["text"], pref["rejection"]["audio"]) if pref else None}


def _lines(rows: list[tuple[int, dict]], labs: list[dict], pool: dict, seed: int, counts: Counter) -> list[Line]:
    """Check each row against its answer, add its preference row, encode both as JSON lines."""
    out = []
    for i, row in rows:
        ids, task = row["record_ids"], row["task"]
        if task in ECG_TASKS:
            replies = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
            problems = [p for t, text in enumerate(replies) for p in check_ecg_consistency(text, row["answer"], task, turn=t)]
        else:
            problems = check_consistency(row["messages"][-1]["content"], row["answer"], task)
        if problems:  # a template bug, not a data problem: fail loudly rather than write a dishonest row
            raise AssertionError(f"row for {ids} ({task}) contradicts its answer: {problems}\n{row['messages'][-1]['content']}")
        if task in ECG_TASKS:  # preference rows are auscultation-only for now
            counts["preference_skipped"] += 1
            out.append((row["split"], json.dumps(row, ensure_ascii=False), None, _meta(row, None)))
            continue
        rng = row_rng(seed, *ids, task, i, "preference")
        pref = preference_row(row, labs, pool, rng, lambda: row_rng(seed, *ids, task, i, "response"))
        if pref is None:
            counts["preference_skipped"] += 1
        out.append((row["split"], json.dumps(row, ensure_ascii=False),
                    json.dumps(pref, ensure_ascii=False) if pref else None, _meta(row, pref)))
    return out


def _build_batch(job: tuple) -> dict[str, Any]:
    """Worker: one batch of Parquet rows -> JSON lines, counters, and labels of paired records."""
    batch, settings, pair_of = job
    seed, tasks = settings["seed"], settings["tasks"]
    counts: Counter = Counter()
    halves: list[tuple[int, int, dict]] = []
    labs: list[dict] = []
    ecg_lines: list[Line] = []
    for raw in batch.to_pylist():
        record = row_to_record(raw)
        if settings["split_all"]:
            record.split = settings["split_all"]
        if record.modality == "ecg" and settings["ecg_tasks"]:
            ecg_lines.extend(_ecg_record_lines(record, settings, counts))
            continue
        if record.modality not in ("heart", "lung", "cough"):
            counts[f"skipped_modality:{record.modality}"] += 1
            continue
        if not record.media:
            expected = _expected_media(record)
            if not settings["allow_missing_media"] or not expected:
                counts["skipped_no_media"] += 1
                continue
            record.media = expected
            counts["rows_media_missing_records"] += 1
        elif not all(os.path.exists(p) for p in record.media):
            counts["missing_media_files"] += 1
        lab = record_labels(record)
        labs.append(lab)
        for pair, pos in pair_of.get(record.record_id, ()):
            halves.append((pair, pos, lab))
    lines: list[Line] = ecg_lines
    pool = mismatch_pool(labs)  # preference rows may borrow a mismatched recording from this batch
    for lab in labs:
        lines += _lines(record_rows(lab, tasks, seed), [lab], pool, seed, counts)
        counts["records_used"] += 1
    return {"lines": lines, "halves": halves, "counts": counts, "n": batch.num_rows}


def _ecg_record_lines(record, settings: dict, counts: Counter) -> list[Line]:
    """The ECG task rows of one ECG record (its signal, or a picture), checked and encoded."""
    if not record.media:
        counts["skipped_no_media"] += 1
        return []
    try:
        path = media_path(record, settings["media"], settings["image_dir"])
    except (ValueError, OSError) as exc:  # EcgError is a ValueError: a record that cannot be drawn
        counts[f"skipped_media:{settings['media']}: {str(exc)[:160]}"] += 1
        return []
    counts["records_used"] += 1
    return _lines(ecg_rows(ecg_labels(record), settings["ecg_tasks"], settings["seed"], settings["media"], path), [], {}, settings["seed"], counts)


def _comparison_lines(a: dict, b: dict, seed: int, counts: Counter) -> list[Line]:
    rng = row_rng(seed, a["record_id"], b["record_id"], "comparison-choice")
    rows = [(i, make_row("comparison", ans, [a, b], seed, i)) for i, ans in enumerate(comparison(a, b, rng))]
    return _lines(rows, [a, b], {}, seed, counts)


def _ordered(pool, func, jobs: Iterator, ahead: int) -> Iterator:
    """Like pool.imap (results in job order) but with at most `ahead` jobs in flight.

    Pool.imap would read every job (every Parquet batch) into its queue at once; this keeps the
    build streaming: memory holds a few batches whatever the table's size.
    """
    if pool is None:
        yield from map(func, jobs)
        return
    pending: deque = deque()
    for job in jobs:
        pending.append(pool.apply_async(func, (job,)))
        if len(pending) >= ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _jobs(inputs: list[Path], pair_of: dict, settings: dict) -> Iterator[tuple]:
    for path in inputs:
        # Drawing printouts is slow (~0.35 s each): smaller jobs keep both workers busy.
        size = IMAGE_BATCH_SIZE if settings["media"] == "image" else BATCH_SIZE
        for batch in pq.ParquetFile(_records_path(path)).iter_batches(batch_size=size):
            ids = batch.column("record_id").to_pylist()
            yield batch, settings, {r: pair_of[r] for r in ids if r in pair_of}


# ------------------------------------------------------------------------------ the driver

class _Writers:
    """The six JSONL files, opened once under temporary names and renamed by `commit`."""

    def __init__(self, out: Path):
        self.final: dict[tuple[str, str], Path] = {}
        self.files = {}
        for kind, folder in (("sft", out), ("pref", out / "preference")):
            folder.mkdir(parents=True, exist_ok=True)
            for split in SPLITS:
                path = folder / f"{split}.jsonl"
                tmp = folder / f".{split}.jsonl.tmp"
                self.final[(kind, split)] = path
                self.files[(kind, split)] = open(tmp, "w", encoding="utf-8")

    def write(self, kind: str, split: str, line: str) -> None:
        self.files[(kind, split)].write(line + "\n")

    def commit(self) -> None:
        for key, fh in self.files.items():
            fh.close()
            os.replace(fh.name, self.final[key])

    def abort(self) -> None:
        for fh in self.files.values():
            fh.close()
            if os.path.exists(fh.name):
                os.remove(fh.name)


def _tally(stats: dict, split: str, meta: dict) -> None:
    task = meta["task"]
    stats["rows_per_task"][task][split] += 1
    stats["rows_per_dataset"][meta["dataset"]][split] += 1
    stats["rows_per_split"][split] += 1
    if meta["binary"]:
        stats["binary_labels"][meta["binary"][0]][meta["binary"][1]] += 1
    stats["response_words"][task][min(meta["words"], 200)] += 1
    if meta["rejection"]:
        stats["preference_rows_per_split"][split] += 1
        stats["rejection_text"][meta["rejection"][0]] += 1
        stats["rejection_audio"][meta["rejection"][1]] += 1


def _command(inputs, out, seed, tasks, split_all, llm_url, llm_model, allow_missing_media, media="signal") -> str:
    """The `clinlm bench build` command line that makes this output (whatever called build_bench)."""
    parts = ["clinlm bench build", *map(str, inputs), f"--out {out}", f"--seed {seed}"]
    if tasks == list(ECG_TASKS):
        parts.append("--tasks ecg")
    elif tasks != list(TASKS):
        parts += [f"--task {t}" for t in tasks]
    if media != "signal":
        parts.append(f"--media {media}")
    if split_all:
        parts.append(f"--split-all {split_all}")
    if llm_url:
        parts.append(f"--llm-url {llm_url} --llm-model {llm_model}")
    if allow_missing_media:
        parts.append("--allow-missing-media")
    return " ".join(parts)


def build_bench(
    inputs: list[Path],
    out: Path,
    seed: int = 0,
    tasks: list[str] | None = None,
    split_all: str | None = None,
    llm_url: str | None = None,
    llm_model: str | None = None,
    workers: int = 0,
    console=None,
    allow_missing_media: bool = False,
    media: str = "signal",
) -> dict:
    """Build the bench from ingest folders into `out`; return the stats (also in out/stats.json).

    `tasks` may name "ecg" for ECGBench's four ECG tasks; `media` ("signal" | "image") is what ECG
    rows show the model.

    Raises FileNotFoundError for a missing records.parquet, ValueError for bad options or
    inconsistent inputs (a patient in two splits, a duplicate record id, a record with no split).
    """
    t0 = time.perf_counter()
    inputs, out = [Path(p) for p in inputs], Path(out)
    if not inputs:
        raise ValueError("give at least one ingest folder (records.parquet)")
    if not tasks and all(_records_path(p).exists() for p in inputs) and all(
        set(read_records_table(p, columns=["modality"]).column("modality").to_pylist()) == {"report"} for p in inputs
    ):
        tasks = ["impression"]  # radiology reports only: the findings -> impression task is the one that fits
    if media not in MEDIA_CHOICES:
        raise ValueError(f"--media must be one of {', '.join(MEDIA_CHOICES)}, got {media!r}")
    if not tasks and all(_records_path(p).exists() for p in inputs):
        modalities = {m for p in inputs for m in read_records_table(p, columns=["modality"]).column("modality").to_pylist()}
        if modalities == {"ecg"}:  # ECG inputs: ECGBench's tasks (with other records too: ask with --tasks ecg)
            tasks = list(ECG_TASKS)
    tasks = [t for name in (tasks or TASKS) for t in (ECG_TASKS if name == "ecg" else (name,))]
    tasks = list(dict.fromkeys(tasks))
    other = [t for t in tasks if t in OTHER_BUILDERS]
    if other:
        if len(other) != len(tasks) or len(other) > 1:
            raise ValueError(f"--task {other[0]} is built on its own; do not combine it with {', '.join(t for t in tasks if t != other[0])}")
        module, func = OTHER_BUILDERS[other[0]].split(":")
        return getattr(importlib.import_module(module), func)(inputs, out, seed=seed, console=console, split_all=split_all)
    unknown = [t for t in tasks if t not in TASKS + ECG_TASKS]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS + ECG_TASKS + tuple(OTHER_BUILDERS))} (or ecg: all four ECG tasks)")
    if split_all is not None and split_all not in SPLITS:
        raise ValueError(f"--split-all must be one of {', '.join(SPLITS)}, got {split_all!r}")
    if (llm_url is None) != (llm_model is None):
        raise ValueError("--llm-url and --llm-model go together: give both or neither")
    for p in inputs:
        if not _records_path(p).exists():
            raise FileNotFoundError(f"no records.parquet in {p}: run `clinlm ingest <adapter> <data folder> --out {p}` first")

    index = _index(inputs, split_all, allow_missing_media, seed, "comparison" in tasks)
    settings = {"seed": seed, "tasks": tuple(t for t in tasks if t != "comparison" and t in TASKS), "split_all": split_all,
                "allow_missing_media": allow_missing_media, "ecg_tasks": tuple(t for t in tasks if t in ECG_TASKS),
                "media": media, "image_dir": str((out / "images").resolve())}
    paraphraser = None
    if llm_url:
        from clinlm.bench.paraphrase import Paraphraser

        paraphraser = Paraphraser(llm_url, llm_model, out / ".llm_cache.jsonl")

    stats: dict[str, Any] = {
        "rows_per_task": defaultdict(Counter), "rows_per_dataset": defaultdict(Counter), "rows_per_split": Counter(),
        "binary_labels": defaultdict(Counter), "response_words": defaultdict(Counter), "preference_rows_per_split": Counter(),
        "rejection_text": Counter(), "rejection_audio": Counter(), "examples": {},
    }
    counts: Counter = Counter()
    pending: dict[int, dict[int, dict]] = {}
    writers = _Writers(out)
    n_workers = workers if workers > 0 else (os.cpu_count() or 1)
    pool = get_context("fork" if sys.platform != "win32" else "spawn").Pool(n_workers) if n_workers > 1 else None
    progress = None
    if console is not None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("[bold]bench build[/]"), BarColumn(), TextColumn("{task.completed}/{task.total} records"),
                            TimeElapsedColumn(), console=console, transient=True)
        progress.start()
        bar = progress.add_task("build", total=index["records"])

    def emit(items: list[Line]) -> None:
        for split, line, pref, meta in items:
            if paraphraser is not None:
                line, pref, meta["words"] = paraphraser.apply(line, pref)
            _tally(stats, split, meta)
            if len(stats["examples"].setdefault(meta["task"], [])) < 2:
                row = json.loads(line)
                stats["examples"][meta["task"]].append({"dataset": row["dataset"], "prompt": row["messages"][0]["content"],
                                                        "response": row["messages"][-1]["content"]})
            writers.write("sft", split, line)
            if pref is not None:
                writers.write("pref", split, pref)

    try:
        jobs = _jobs(inputs, index["pair_of"], settings)
        for res in _ordered(pool, _build_batch, jobs, ahead=2 * n_workers):
            counts.update(res["counts"])
            emit(res["lines"])
            for pair, pos, lab in res["halves"]:
                slot = pending.setdefault(pair, {})
                slot[pos] = lab
                if len(slot) == 2:
                    del pending[pair]
                    emit(_comparison_lines(slot[0], slot[1], seed, counts))
            if progress is not None:
                progress.update(bar, advance=res["n"])
        writers.commit()
    except BaseException:
        writers.abort()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if progress is not None:
            progress.stop()
        if paraphraser is not None:
            paraphraser.close()

    seconds = time.perf_counter() - t0
    n_rows = sum(stats["rows_per_split"].values())
    result = {
        "inputs": [str(p) for p in inputs],
        "seed": seed,
        "tasks": tasks,
        "split_all": split_all,
        "allow_missing_media": allow_missing_media,
        "records": index["records"],
        "patients": index["patients"],
        "records_used": counts["records_used"],
        "skipped_no_media": counts["skipped_no_media"],
        "skipped_modality": {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("skipped_modality:")},
        "records_with_missing_media_files": counts["missing_media_files"],
        "rows_pointing_at_missing_media_records": counts["rows_media_missing_records"],
        "comparison_pairs": index["pairs"],
        "comparison_pairs_incomplete": len(pending),
        "rows": n_rows,
        "rows_per_split": {s: stats["rows_per_split"][s] for s in SPLITS},
        "rows_per_task": {t: dict(v) for t, v in sorted(stats["rows_per_task"].items())},
        "rows_per_dataset": {d: dict(v) for d, v in sorted(stats["rows_per_dataset"].items())},
        "binary_labels": {f: dict(v) for f, v in sorted(stats["binary_labels"].items())},
        "preference_rows_per_split": {s: stats["preference_rows_per_split"][s] for s in SPLITS},
        "preference_skipped": counts["preference_skipped"],
        "rejection_kinds": {"text": dict(stats["rejection_text"]), "audio": dict(stats["rejection_audio"])},
        "response_words_mean": {t: round(sum(k * n for k, n in v.items()) / sum(v.values()), 1)
                                for t, v in sorted(stats["response_words"].items()) if v},
        "paraphrase": paraphraser.stats() if paraphraser else None,
        "examples": stats["examples"],
        "seconds": round(seconds, 2),
        "rows_per_second": round(n_rows / seconds, 1) if seconds > 0 else None,
        "workers": n_workers,
        "command": _command(inputs, out, seed, tasks, split_all, llm_url, llm_model, allow_missing_media, media),
        "media": media,
        "skipped_media": {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("skipped_media:")},
    }
    from clinlm.bench.card import write_card

    write_card(out, result, {t: dict(v) for t, v in stats["response_words"].items()})
    if console is not None:
        console.print(
            f"[green]bench[/]: {n_rows} rows ({', '.join(f'{s} {n}' for s, n in result['rows_per_split'].items())}), "
            f"{sum(result['preference_rows_per_split'].values())} preference rows from {result['records_used']} records "
            f"in {seconds:.1f} s -> {out}"
            + (f"; skipped {result['skipped_no_media']} records without media (--allow-missing-media keeps them)"
               if result["skipped_no_media"] else ""))
    return result
