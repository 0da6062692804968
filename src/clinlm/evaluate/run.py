"""`clinlm eval CKPT DATA.jsonl --out DIR`: generate, score every task with CIs, beside baselines.

The path, in order:
1. read the instruction rows (`clinlm.train.data.read_rows`: audio paths resolved, placeholders
   checked); rows without a structured `answer` or with a task the evaluator does not know are
   set aside and counted in the report, never silently dropped;
2. the model answers every row (`clinlm.infer.generate`, greedy) and gives P(yes) for binary (and ECG closed) rows
   (`clinlm.infer.yes_probability`); the same for the text-only model when `--text-only` is given;
3. the majority baseline answers from `train.jsonl` beside DATA when there is one (or `train=`),
   else from the evaluated rows (`clinlm.evaluate.baselines`);
4. every system is scored by the same code (`score_system`): parsed facts and per-task metrics
   (`clinlm.evaluate.metrics`), ROUGE-L and BERTScore (`text_metrics`), the optional judge, each
   with a 95% bootstrap-over-patients CI (`bootstrap`); with `by="dataset"` every figure also per
   dataset;
5. DIR/metrics.json, DIR/predictions.jsonl and DIR/report.md with plots are written atomically
   (`clinlm.evaluate.report`) and a results table is printed.

`score_predictions(rows, predictions, yes_probs)` scores responses without any model (tests, the
quickstart, a user's own generations).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from clinlm.evaluate import text_metrics
from clinlm.evaluate.bootstrap import DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_ci
from clinlm.evaluate.ecg_metrics import class_probes, majority_probe_probs, probe_metric_rows
from clinlm.evaluate.metrics import (
    ANSWER_KEYS,
    COMMON,
    HEADLINE,
    LOWER_IS_BETTER,
    SCORED_TASKS as TASKS,
    Metric,
    score_task,
)
from clinlm.evaluate.stats import mean_value
from clinlm.evaluate.report import format_ci

SYSTEMS = ("model", "majority", "text_only")
KEYS = ("system", "task", "metric", "value", "ci_low", "ci_high", "n")  # a metrics.json row (+ the `by` field)
POOLED = "all"  # the task name of figures pooled over every task
JUDGE_METRIC = "judge_clinical_accuracy"
DEFAULT_MAX_NEW_TOKENS = 160


# ------------------------------------------------------------------------------------ rows


def prompt_of(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """The conversation up to (not including) the last assistant turn: what the model is asked."""
    msgs = list(row["messages"])
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=len(msgs))
    return msgs[:last]


def reference_of(row: Mapping[str, Any]) -> str:
    return next((m["content"] for m in reversed(row["messages"]) if m["role"] == "assistant"), "")


def question_of(row: Mapping[str, Any]) -> str:
    return next((m["content"] for m in reversed(prompt_of(row)) if m["role"] == "user"), "")


def patient_of(row: Mapping[str, Any], i: int) -> str:
    """The bootstrap unit. A row without a patient id is its own patient (the report counts these)."""
    if row.get("patient_id"):
        return str(row["patient_id"])
    ids = row.get("record_ids") or ([row["record_id"]] if row.get("record_id") else [])
    return f"record:{ids[0]}" if ids else f"row:{i}"


def split_scoreable(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(rows the evaluator can score, [{row, reason}] for the rest)."""
    keep, skipped = [], []
    for i, row in enumerate(rows):
        where = row.get("_source") or f"row {i}"
        if row.get("task") not in TASKS:
            skipped.append({"row": where, "reason": f"task {row.get('task')!r} is not one of {', '.join(TASKS)}"})
        elif not isinstance(row.get("answer"), dict):
            skipped.append({"row": where, "reason": "no structured 'answer' to score against (build rows with `clinlm bench build`)"})
        elif any(k not in row["answer"] for k in ANSWER_KEYS[row["task"]]):
            missing = [k for k in ANSWER_KEYS[row["task"]] if k not in row["answer"]]
            skipped.append({"row": where, "reason": f"a {row['task']} answer without {', '.join(missing)} (schema in clinlm/bench/facts.py)"})
        elif not reference_of(row):
            skipped.append({"row": where, "reason": "no assistant turn (reference answer)"})
        else:
            keep.append(row)
    return keep, skipped


# ------------------------------------------------------------------------------------ scoring


def _json_number(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _metric_row(system: str, task: str, metric: Metric, patients: np.ndarray, n_boot: int, seed: int, extra: dict) -> dict[str, Any] | None:
    """One metrics.json row (None when the metric has no rows here, e.g. AUROC in a group without
    yes/no labels); `patients` and `metric.args` have one entry per row, `metric.mask` selects."""
    mask = np.ones(len(patients), bool) if metric.mask is None else metric.mask
    if not mask.any():
        return None
    args = [a[mask] for a in metric.args]
    ci = bootstrap_ci(metric.fn, *args, patients=patients[mask], n_boot=n_boot, seed=seed)
    return {
        "system": system, "task": task, "metric": metric.name,
        "value": _json_number(ci.value), "ci_low": _json_number(ci.low), "ci_high": _json_number(ci.high), "n": int(ci.n),
        **extra,
    }


def score_system(
    rows: Sequence[Mapping[str, Any]],
    texts: Sequence[str],
    yes_probs: Sequence[float | None] | None = None,
    *,
    system: str = "model",
    by: str | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    text_similarity: bool = True,
    judge_scores: Sequence[float | None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Score one system's responses: (metric rows, one prediction record per row).

    Metric rows: {"system", "task", "metric", "value", "ci_low", "ci_high", "n"} (+ {by: value} for the
    per-group rows when `by` is given). `judge_scores` (0-100 or None per row) adds the judge figure.
    """
    if len(texts) != len(rows) or (yes_probs is not None and len(yes_probs) != len(rows)):
        raise ValueError(f"need one prediction (and P(yes)) per row: {len(rows)} rows, {len(texts)} predictions"
                         + ("" if yes_probs is None else f", {len(yes_probs)} yes-probabilities"))
    unknown = sorted({str(r.get("task")) for r in rows} - set(TASKS))
    if unknown:
        raise ValueError(f"cannot score tasks {unknown}: the evaluator scores {', '.join(TASKS)} (split_scoreable sets other rows aside)")
    texts = ["" if t is None else str(t) for t in texts]
    patients = np.array([patient_of(r, i) for i, r in enumerate(rows)], dtype=object)
    references = [reference_of(r) for r in rows]
    similarity = {}
    if text_similarity and rows:
        similarity = {
            text_metrics.ROUGE_METRIC: text_metrics.rouge_l(texts, references),
            text_metrics.BERTSCORE_METRIC: text_metrics.bertscore_f1(texts, references),
        }
    judged = None if judge_scores is None else np.array([np.nan if s is None else float(s) / 100.0 for s in judge_scores])

    # Parse and score each task once, on all its rows; groups (`by`) reuse these per-row arrays.
    records: list[dict[str, Any]] = [{} for _ in rows]
    per_task: dict[str, tuple[np.ndarray, list[Metric]]] = {}
    pooled_common: dict[str, np.ndarray] = {name: np.zeros(len(rows)) for name in COMMON}
    for task in [t for t in TASKS if any(r["task"] == t for r in rows)]:
        idx = np.array([i for i, r in enumerate(rows) if r["task"] == task])
        task_rows = [rows[i] for i in idx]
        probs = None if yes_probs is None else [yes_probs[i] for i in idx]
        scored = score_task(task, task_rows, [texts[i] for i in idx], probs)
        metrics = list(scored.metrics)
        for name, values in similarity.items():
            metrics.append(Metric(name, mean_value, (np.zeros(len(idx)), values[idx])))
        if judged is not None:
            metrics.append(Metric(JUDGE_METRIC, mean_value, (np.zeros(len(idx)), judged[idx]), np.isfinite(judged[idx])))
        for m in metrics:
            if m.name in pooled_common:
                pooled_common[m.name][idx] = m.args[1]
        per_task[task] = (idx, metrics)
        for j, i in enumerate(idx):
            row = rows[i]
            records[i] = {
                "system": system, "row": row.get("_source") or int(i), "task": task, "patient": patients[i],
                "dataset": row.get("dataset"), "record_ids": row.get("record_ids"),
                "prompt": question_of(row), "reference": references[i], "prediction": texts[i],
                "answer": row["answer"], "facts": _compact(scored.facts[j]),
                "correct": _jsonable(scored.flags[j]),
                "yes_prob": None if yes_probs is None or yes_probs[i] is None else float(yes_probs[i]),
                **({name: float(values[i]) for name, values in similarity.items()}),
                **({} if judge_scores is None else {"judge_score": judge_scores[i]}),
            }

    pooled = [Metric(name, mean_value, (np.zeros(len(rows)), values)) for name, values in pooled_common.items()]
    pooled += [Metric(name, mean_value, (np.zeros(len(rows)), values)) for name, values in similarity.items()]
    if judged is not None:
        pooled.append(Metric(JUDGE_METRIC, mean_value, (np.zeros(len(rows)), judged), np.isfinite(judged)))

    groups: list[tuple[dict, np.ndarray]] = [({}, np.ones(len(rows), bool))]
    if by:
        values = np.array([str(r.get(by)) for r in rows], dtype=object)
        groups += [({by: v}, values == v) for v in sorted(set(values))]
    out: list[dict[str, Any]] = []
    for extra, in_group in groups:
        for task, (idx, metrics) in per_task.items():
            keep = in_group[idx]
            out.extend(_metric_row(system, task, _subset(m, keep), patients[idx], n_boot, seed, extra) for m in metrics)
        out.extend(_metric_row(system, POOLED, _subset(m, in_group), patients, n_boot, seed, extra) for m in pooled)
    out = [r for r in out if r is not None]
    return out, records


def score_predictions(
    rows: Sequence[Mapping[str, Any]],
    predictions: Sequence[str],
    yes_probs: Sequence[float | None] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Metric rows for responses to `rows`, no model needed (see `score_system` for the options)."""
    return score_system(rows, predictions, yes_probs, **kwargs)[0]


def _subset(metric: Metric, keep: np.ndarray) -> Metric:
    mask = keep if metric.mask is None else (metric.mask & keep)
    return Metric(metric.name, metric.fn, tuple(metric.args), mask)


def _compact(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Parsed facts without the empty fields (predictions.jsonl stays readable)."""
    out = {}
    for k, v in facts.items():
        if isinstance(v, dict) and set(v) == {"systolic", "diastolic"}:
            v = {p: x for p, x in v.items() if x is not None}
        if v not in (None, [], {}, False):
            out[k] = v
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


# ------------------------------------------------------------------------------------ models


def _in_chunks(fn: Callable[[list], list], items: list, size: int, progress: Progress | None, label: str) -> list:
    """fn over items in chunks, advancing a progress bar (the model's own batching stays inside fn)."""
    out: list = []
    task_id = progress.add_task(label, total=len(items)) if progress is not None else None
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        out.extend(fn(chunk))
        if progress is not None:
            progress.advance(task_id, len(chunk))
    return out


def run_model(
    checkpoint: Path,
    rows: Sequence[dict[str, Any]],
    batch_size: int,
    max_new_tokens: int,
    progress: Progress | None,
    label: str,
) -> tuple[list[str], list[float | None]]:
    """Greedy answers for every row and P(yes) for binary and ECG closed rows, from a checkpoint folder."""
    import clinlm
    from clinlm import infer

    model = clinlm.load(checkpoint)
    prompts = [{**r, "messages": prompt_of(r)} for r in rows]
    chunk = max(batch_size * 4, 1)
    texts = _in_chunks(lambda c: infer.generate(model, c, max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=0.0),
                       prompts, chunk, progress, f"{label}: answering")
    binary = [i for i, r in enumerate(rows) if r["task"] in ("binary", "ecg_closed")]  # yes/no questions
    probs = _in_chunks(lambda c: infer.yes_probability(model, c, batch_size=batch_size),
                       [prompts[i] for i in binary], chunk, progress, f"{label}: P(yes)") if binary else []
    yes_probs: list[float | None] = [None] * len(rows)
    for i, p in zip(binary, probs):
        yes_probs[i] = float(p)
    return texts, yes_probs  # the model is freed when this returns, before the next one loads


def run_probes(checkpoint: Path, probes: Sequence[Mapping[str, Any]], batch_size: int, progress: Progress | None, label: str) -> list[float]:
    """P(yes) for every class probe (evaluate/ecg_metrics.py) from a checkpoint folder."""
    import clinlm
    from clinlm import infer

    model = clinlm.load(checkpoint)
    return _in_chunks(lambda c: infer.yes_probability(model, c, batch_size=batch_size), [p["row"] for p in probes],
                      max(batch_size * 4, 1), progress, f"{label}: class probes")


def _judge_system(rows, texts, judge_url, judge_model, out, progress, label) -> list[float | None]:
    from clinlm.evaluate.judge import judge

    cases = [{"question": question_of(r), "reference": reference_of(r), "facts": r["answer"], "response": t} for r, t in zip(rows, texts)]
    task_id = progress.add_task(f"{label}: judge", total=len(cases)) if progress is not None else None
    # A hosted endpoint's key comes from CLINLM_JUDGE_API_KEY (a clinlm-only name, so a general
    # OPENAI_API_KEY is never sent to whatever --judge-url points at).
    results = judge(cases, judge_url, judge_model, out, api_key=os.environ.get("CLINLM_JUDGE_API_KEY"),
                    progress=(lambda i: progress.advance(task_id)) if progress is not None else None)
    return [r["score"] for r in results]


def evaluate(
    checkpoint: Path | str,
    data: Path | str,
    out: Path | str,
    by: str | None = None,
    text_only: Path | str | None = None,
    judge_url: str | None = None,
    judge_model: str | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    console: Console | None = None,
    *,
    train: Path | str | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """Evaluate a checkpoint on an instruction JSONL; writes DIR/{metrics.json, predictions.jsonl, report.md}.

    Returns the metric rows. `train`: the rows the majority baseline learns from (default: a
    `train.jsonl` beside DATA, else the evaluated rows). `text_only`: a checkpoint trained with the
    same recipe and `model.audio_tower=none`; without it the report says the baseline is missing.
    """
    from clinlm.evaluate.baselines import majority_predictions
    from clinlm.evaluate.report import write_outputs
    from clinlm.train.data import read_rows

    console = console or Console()
    checkpoint, data, out = Path(checkpoint), Path(data), Path(out)
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint folder not found: {checkpoint} (train one with `clinlm train`)")
    if text_only is not None and not Path(text_only).exists():
        raise FileNotFoundError(f"text-only checkpoint not found: {text_only} (train it with `model.audio_tower=none`)")
    if judge_url and not judge_model:
        raise ValueError("--judge-url needs --judge-model (the model name the endpoint serves)")
    all_rows = read_rows(data)
    if all_rows and all(r.get("task") == "impression" for r in all_rows):
        # Findings -> impression: ROUGE/BERTScore beside most-frequent and retrieval baselines.
        from clinlm.evaluate.impression_run import evaluate_impression_file

        return evaluate_impression_file(checkpoint, data, out, all_rows, train=train, text_only=text_only, batch_size=batch_size,
                                        limit=limit, max_new_tokens=max_new_tokens, n_boot=n_boot, seed=seed, console=console)
    rows, skipped = split_scoreable(all_rows)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise ValueError(f"no scoreable rows in {data}: {skipped[0]['reason'] if skipped else 'the file is empty'}")
    train_path = Path(train) if train is not None else data.parent / "train.jsonl"
    if train_path.exists() and train_path.resolve() != data.resolve():
        reference_rows, _ = split_scoreable(read_rows(train_path))
        majority_source = f"training rows ({train_path}, {len(reference_rows)} rows)"
    else:
        if train is not None:
            raise FileNotFoundError(f"training rows for the majority baseline not found: {train}")
        reference_rows = rows
        majority_source = "the evaluated rows themselves (no train.jsonl beside the data): an optimistic simple majority"

    systems: dict[str, tuple[list[str], list[float | None]]] = {}
    probes = class_probes(rows)  # ECG rows: every ECG asked about every class its labels decide
    probe_probs: dict[str, list[float]] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as progress:
        systems["model"] = run_model(checkpoint, rows, batch_size, max_new_tokens, progress, "model")
        systems["majority"] = majority_predictions(rows, reference_rows)
        if text_only is not None:
            systems["text_only"] = run_model(Path(text_only), rows, batch_size, max_new_tokens, progress, "text-only")
        if probes:
            probe_probs["model"] = run_probes(checkpoint, probes, batch_size, progress, "model")
            probe_probs["majority"] = majority_probe_probs(probes, reference_rows)
            if text_only is not None:
                probe_probs["text_only"] = run_probes(Path(text_only), probes, batch_size, progress, "text-only")
        judged = {}
        if judge_url:
            for name, (texts, _) in systems.items():
                judged[name] = _judge_system(rows, texts, judge_url, judge_model, out, progress, name)

    metric_rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    with console.status("scoring (parsing answers, BERTScore, bootstrap over patients)"):
        # One BERTScore call for every system: bert-score embeds each distinct sentence once per call,
        # so the references are embedded once, not once per system (the results are cached per pair).
        references = [reference_of(r) for r in rows]
        text_metrics.bertscore_f1([t for texts, _ in systems.values() for t in texts], references * len(systems))
        for name, (texts, probs) in systems.items():
            m, r = score_system(rows, texts, probs, system=name, by=by, n_boot=n_boot, seed=seed, judge_scores=judged.get(name))
            metric_rows += m
            records += r
        if probes:
            metric_rows += probe_metric_rows(probes, probe_probs, n_boot, seed)
    info = {
        "checkpoint": str(checkpoint), "data": str(data), "text_only": None if text_only is None else str(text_only),
        "majority_source": majority_source, "by": by, "n_boot": n_boot, "seed": seed, "limit": limit,
        "max_new_tokens": max_new_tokens, "skipped": skipped, "judge_url": judge_url, "judge_model": judge_model,
    }
    write_outputs(out, rows, metric_rows, records, info)
    print_table(metric_rows, console, title=f"{checkpoint.name} on {data.name}: {len(rows)} rows")
    console.print(f"[green]wrote[/] {out / 'metrics.json'}, {out / 'predictions.jsonl'}, {out / 'report.md'}")
    return metric_rows


# ------------------------------------------------------------------------------------ console


def _fmt(r: Mapping[str, Any] | None) -> str:
    return format_ci(r, ci_digits=2)


def print_table(metric_rows: Sequence[Mapping[str, Any]], console: Console, title: str = "results") -> None:
    """Every task and metric (all rows, not per group): model, majority, text-only, with 95% CIs."""
    overall = [r for r in metric_rows if set(r) == set(KEYS)]  # not the per-group (`by`) rows
    index = {(r["system"], r["task"], r["metric"]): r for r in overall}
    table = Table("task", "metric", "model", "majority", "text-only", "n", title=f"{title} (95% CI, bootstrap over patients)")
    seen = []
    for r in overall:
        key = (r["task"], r["metric"])
        if r["system"] == "model" and key not in seen:
            seen.append(key)
    for task, metric in seen:
        style = "bold" if HEADLINE.get(task) == metric else None
        arrow = " (lower is better)" if metric in LOWER_IS_BETTER else ""
        model = index.get(("model", task, metric))
        table.add_row(task, metric + arrow, _fmt(model), _fmt(index.get(("majority", task, metric))),
                      _fmt(index.get(("text_only", task, metric))), str(model["n"]), style=style)
    console.print(table)
