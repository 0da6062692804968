"""Probe results -> mean AUROC with patient CIs, paired differences, probe.json, probe.md and probe.png.

The mean AUROC of an encoder is taken over the tasks that every encoder in the table has, so
encoders are compared on the same tasks. Its CI comes from one set of bootstrap draws of
patients (all test patients of all tasks, `evaluate.bootstrap.patient_draws`): each replicate
re-weights every task's test units by their patient's draw count, computes each task's AUROC
(`evaluate.stats.auroc`, vectorised) and averages over tasks. Applying the same draws to two
encoders gives the paired difference (encoder - baseline) and its CI, overall and per task.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from clinlm.records import atomic_write_text

ROW_KEYS = ("encoder", "task", "auroc", "ci_low", "ci_high", "n_train", "n_test")


def _replicates(scores: list[dict], encoders: list[str], tasks: list[str], seed: int, n_boot: int):
    """{encoder: (n_tasks, n_boot) AUROC replicates} from shared patient draws (units common to all encoders)."""
    from clinlm.evaluate.bootstrap import patient_draws
    from clinlm.evaluate.stats import auroc

    by = defaultdict(dict)  # (encoder, task) -> unit -> (patient, label, score)
    for s in scores:
        by[(s["encoder"], s["task"])][s["unit"]] = (s["patient"], s["label"], s["score"])
    patients = sorted({p for (e, t), units in by.items() if e in encoders and t in tasks for p, _, _ in units.values()})
    index = {p: i for i, p in enumerate(patients)}
    draws = patient_draws(len(patients), n_boot, seed)  # (n_boot, n_patients)
    out = {e: np.full((len(tasks), n_boot), np.nan) for e in encoders}
    for j, task in enumerate(tasks):
        units = sorted(set.intersection(*(set(by[(e, task)]) for e in encoders)))
        if not units:
            continue
        ref = by[(encoders[0], task)]
        idx = np.array([index[ref[u][0]] for u in units])
        y = np.where([ref[u][1] for u in units], "yes", "no")
        w = draws[:, idx].astype(np.float64)
        for e in encoders:
            s = np.array([by[(e, task)][u][2] for u in units], dtype=np.float64)
            out[e][j] = auroc(y, None, s, weights=w)
    return out


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def summarise(rows: list[dict], scores: list[dict], skipped: list[dict], baseline: str | None = None,
              seed: int = 0, n_boot: int = 1000) -> dict[str, Any]:
    """Means over common tasks with CIs, paired differences to the baseline, the skipped tasks."""
    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    tasks_of = {e: {r["task"] for r in rows if r["encoder"] == e} for e in encoders}
    common = sorted(set.intersection(*tasks_of.values())) if encoders else []
    if baseline is None:
        baseline = "builtin:random" if "builtin:random" in encoders else (encoders[0] if encoders else None)
    elif baseline not in encoders:
        raise ValueError(f"--baseline {baseline} is not among the probed encoders {encoders}")
    point = {(r["encoder"], r["task"]): r["auroc"] for r in rows}
    summary: dict[str, Any] = {"encoders": encoders, "baseline": baseline, "common_tasks": common,
                               "mean_auroc": {}, "difference_to_baseline": {}, "per_task_difference": {}}
    have_scores = {(s["encoder"], s["task"]) for s in scores}
    complete = all((e, t) in have_scores for e in encoders for t in common)
    reps = _replicates(scores, encoders, common, seed, n_boot) if common and complete else None
    for e in encoders:
        values = [point[(e, t)] for t in common if point[(e, t)] is not None]
        entry = {"mean": _r(float(np.mean(values))) if values else None, "tasks": len(values),
                 "mean_all_own_tasks": _r(float(np.mean([r["auroc"] for r in rows if r["encoder"] == e and r["auroc"] is not None] or [math.nan]))),
                 "own_tasks": len(tasks_of[e])}
        if reps is not None:
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    low, high = _interval(np.nanmean(reps[e], axis=0))
            entry.update(ci_low=_r(low), ci_high=_r(high))
        summary["mean_auroc"][e] = entry
    if reps is not None and baseline is not None:
        import warnings

        for e in encoders:
            if e == baseline:
                continue
            diff = reps[e] - reps[baseline]  # (n_tasks, n_boot), paired by construction
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                low, high = _interval(np.nanmean(diff, axis=0))
            mean = summary["mean_auroc"][e]["mean"], summary["mean_auroc"][baseline]["mean"]
            summary["difference_to_baseline"][e] = {
                "difference": _r(mean[0] - mean[1]) if None not in mean else None, "ci_low": _r(low), "ci_high": _r(high)}
            per_task = {}
            for j, t in enumerate(common):
                lo, hi = _interval(diff[j])
                d = None if point[(e, t)] is None or point[(baseline, t)] is None else point[(e, t)] - point[(baseline, t)]
                per_task[t] = {"difference": _r(d) if d is not None else None, "ci_low": _r(lo), "ci_high": _r(hi)}
            summary["per_task_difference"][e] = per_task
    reasons: dict[str, str] = {}
    for s in skipped:
        reasons.setdefault(s["task"], s["reason"])
    summary["skipped"] = [{"task": t, "reason": reasons[t]} for t in sorted(reasons)]
    return summary


def _fmt(value: float | None, low: float | None = None, high: float | None = None, signed: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    if low is not None and high is not None:
        text += f" [{low:+.2f}, {high:+.2f}]" if signed else f" [{low:.2f}, {high:.2f}]"
    return text


def markdown(rows: list[dict], summary: dict[str, Any]) -> str:
    encoders, base = summary["encoders"], summary["baseline"]
    by = {(r["encoder"], r["task"]): r for r in rows}
    tasks = sorted({r["task"] for r in rows})
    others = [e for e in encoders if e != base and e in summary["difference_to_baseline"]]
    head = ["task", "n train / test"] + [f"`{e}`" for e in encoders] + [f"`{e}` - `{base}`" for e in others]
    lines = ["# Linear probes: AUROC [95% CI over patients]", "",
             f"Protocol: {summary.get('protocol', '')}. Baseline: `{base}`.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in tasks:
        any_row = next(by[(e, t)] for e in encoders if (e, t) in by)
        cells = [t, f"{any_row['n_train']} / {any_row['n_test']}"]
        for e in encoders:
            r = by.get((e, t))
            cells.append(_fmt(r["auroc"], r["ci_low"], r["ci_high"]) if r else "-")
        for e in others:
            d = summary["per_task_difference"].get(e, {}).get(t)
            cells.append(_fmt(d["difference"], d["ci_low"], d["ci_high"], signed=True) if d else "-")
        lines.append("| " + " | ".join(cells) + " |")
    mean_cells = [f"**mean AUROC** ({len(summary['common_tasks'])} common tasks)", ""]
    for e in encoders:
        m = summary["mean_auroc"][e]
        mean_cells.append("**" + _fmt(m["mean"], m.get("ci_low"), m.get("ci_high")) + "**")
    for e in others:
        d = summary["difference_to_baseline"][e]
        mean_cells.append("**" + _fmt(d["difference"], d["ci_low"], d["ci_high"], signed=True) + "**")
    lines.append("| " + " | ".join(mean_cells) + " |")
    if summary["skipped"]:
        lines += ["", "## Skipped tasks", ""] + [f"- `{s['task']}`: {s['reason']}" for s in summary["skipped"]]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], summary: dict[str, Any], path: Path) -> None:
    """Horizontal bars per task (one per encoder) with CI whiskers; the mean over common tasks on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encoders = summary["encoders"]
    tasks = sorted({r["task"] for r in rows}, reverse=True)
    labels = tasks + ["mean (common tasks)"]  # bottom to top: tasks read alphabetically downwards
    by = {(r["encoder"], r["task"]): r for r in rows}
    height = 0.8 / max(len(encoders), 1)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(labels) * max(1, len(encoders) / 2)))
    for k, e in enumerate(encoders):
        ys, xs, lo, hi = [], [], [], []
        m = summary["mean_auroc"][e]
        entries = [(len(tasks), m["mean"], m.get("ci_low"), m.get("ci_high"))]
        entries += [(i, by[(e, t)]["auroc"], by[(e, t)]["ci_low"], by[(e, t)]["ci_high"]) for i, t in enumerate(tasks) if (e, t) in by]
        for y, v, l, h in entries:
            if v is None:
                continue
            ys.append(y - 0.4 + height * (k + 0.5))
            xs.append(v)
            lo.append(v - l if l is not None else 0)
            hi.append(h - v if h is not None else 0)
        ax.barh(ys, xs, height=height * 0.9, xerr=[lo, hi], capsize=2, label=e, alpha=0.85)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUROC (95% CI over patients)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.5 / len(labels) - 0.04), ncol=min(3, len(encoders)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: str | Path, rows: list[dict], scores: list[dict], summary: dict[str, Any]) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean = [{k: r[k] for k in ROW_KEYS} for r in rows]
    atomic_write_text(json.dumps(clean, indent=1) + "\n", out / "probe.json")
    atomic_write_text("".join(json.dumps(s) + "\n" for s in scores), out / "scores.jsonl")
    atomic_write_text(json.dumps(summary, indent=1, default=str) + "\n", out / "summary.json")
    atomic_write_text(markdown(clean, summary), out / "probe.md")
    if clean:
        plot(clean, summary, out / "probe.png")
