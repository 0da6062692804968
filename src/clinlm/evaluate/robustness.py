"""`clinlm eval CKPT DATA --degrade SPEC...`: every metric per degradation and level, beside the clean figure.

    clinlm eval runs/dpo/model bench/test.jsonl --degrade noise:snr=0,10,20 clipping band-limit dropout
    clinlm eval runs/sft/model bench/test.jsonl --degrade noise:snr=0,10,20 \
        --compare dpo=runs/dpo/model --compare mdpo=runs/mdpo/model --out runs/robustness

For each condition (clean, then every degradation of `clinlm.signals.degrade`, e.g. noise:snr=0)
every audio of the evaluated rows is degraded once (float WAV under OUT/audio/<condition>/, its
noise seeded by the file, so all systems hear the same noisy recordings; the model's features are
computed from these files, so clean and degraded features never share a cache entry), and
`clinlm.evaluate.run.evaluate` scores each system on those rows exactly as a plain evaluation
would (95% CIs by bootstrap over patients). The majority baseline and a text-only model hear no
audio, so they are evaluated once, on the clean rows.

Written to OUT (default: <checkpoint>/../robustness):
    metrics.json        every metric row of every system and condition, with a `condition` field
                        ("clean", "noise:snr=0", ...); systems are named after their checkpoints
    robustness.md       per task's headline metric and the contradiction rate: condition x system
    robustness.json     what was evaluated: data, systems, conditions and their parameters, seed
    paired.json         each system minus the first one, per condition, on the same rows: binary
                        accuracy and contradiction rate, with a paired 95% CI (bootstrap over patients)
    plots/robustness_snr.png         binary accuracy and contradiction rate vs SNR, one line per system
    plots/robustness_conditions.png  the same two metrics for every condition, systems side by side
    <system>/<condition>/            the full evaluation of that system on that condition (report.md, ...)

A system is `NAME=PATH` or a PATH (named after its folder, or the folder above when that is
called `model`: runs/dpo/model -> dpo).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from rich.console import Console
from rich.table import Table

from clinlm.evaluate.metrics import HEADLINE, LOWER_IS_BETTER
from clinlm.records import atomic_write_text
from clinlm.evaluate.report import format_ci

CLEAN = "clean"
# (task, metric) pairs in the console table and the plots
KEY_METRICS = (("binary", "accuracy"), ("all", "contradiction_rate"))
BASELINES = ("majority", "text_only")


def system_name(path: str | Path) -> str:
    p = Path(path)
    return p.resolve().parent.name if p.name == "model" else p.name


def parse_systems(checkpoint: str | Path, compare: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """[(name, checkpoint)] for the checkpoint and each `--compare` entry (NAME=PATH or PATH)."""
    out: list[tuple[str, Path]] = []
    for item in [str(checkpoint), *compare]:
        name, sep, path = item.partition("=")
        name, path = (name.strip(), path.strip()) if sep else (system_name(item), item)
        if not Path(path).exists():
            raise FileNotFoundError(f"checkpoint folder not found: {path} (train one with `clinlm train`)")
        if not name or name in BASELINES or any(name == n for n, _ in out):
            raise ValueError(f"system name {name!r} for {path} is empty, reserved or used twice: give one with NAME=PATH")
        out.append((name, Path(path)))
    return out


def slug(label: str) -> str:
    """A folder name for a condition label: noise:snr=0 -> noise_snr=0."""
    return label.replace(":", "_").replace("/", "-")


def degraded_rows(rows: list[dict[str, Any]], degradation, audio_dir: Path, seed: int) -> list[dict[str, Any]]:
    """The rows with every audio replaced by its degraded copy (written once per recording)."""
    from clinlm.signals.degrade import degraded_copy

    copies: dict[str, str] = {}
    out = []
    for row in rows:
        audios = []
        for a in row.get("audios") or []:
            if a not in copies:
                copies[a] = str(degraded_copy(a, degradation, audio_dir, seed=seed))
            audios.append(copies[a])
        out.append({**{k: v for k, v in row.items() if k != "_source"}, "audios": audios})
    return out


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    atomic_write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), path)
    return path


def evaluate_robustness(
    checkpoint: Path | str,
    data: Path | str,
    out: Path | str | None,
    degrade: Sequence[str] = (),
    compare: Sequence[str] = (),
    *,
    text_only: Path | str | None = None,
    train: Path | str | None = None,
    by: str | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    seed: int = 0,
    console: Console | None = None,
    **evaluate_kwargs: Any,
) -> list[dict[str, Any]]:
    """Evaluate each system under each condition; returns all metric rows (with `condition`)."""
    from clinlm.evaluate.run import evaluate, split_scoreable
    from clinlm.signals.degrade import parse_specs
    from clinlm.train.data import read_rows

    console = console or Console()
    data = Path(data)
    systems = parse_systems(checkpoint, compare)
    # Absolute: the degraded rows name their audio by path, and a relative one would be read
    # relative to the rows' own folder (OUT/conditions/) when they are loaded again.
    out = Path(out).resolve() if out is not None else systems[0][1].resolve().parent / "robustness"
    degradations = parse_specs(degrade)
    rows, _ = split_scoreable(read_rows(data))
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        raise ValueError(f"no scoreable rows in {data}")
    if degradations and not any(r.get("audios") for r in rows):
        raise ValueError(f"{data}: no row has audio, so there is nothing to degrade")
    if train is None and (data.parent / "train.jsonl").exists() and (data.parent / "train.jsonl").resolve() != data.resolve():
        train = data.parent / "train.jsonl"  # the majority baseline learns from the training rows, as in a plain eval

    quiet = Console(quiet=True)
    conditions: list[tuple[str, Path]] = [(CLEAN, data)]
    for d in degradations:
        t0 = time.perf_counter()
        path = _write_jsonl(degraded_rows(rows, d, out / "audio" / slug(d.label), seed), out / "conditions" / f"{slug(d.label)}.jsonl")
        conditions.append((d.label, path))
        console.print(f"[dim]{d.label}: degraded copies of {len({a for r in rows for a in r.get('audios') or []})} recordings in "
                      f"{time.perf_counter() - t0:.1f} s[/]")

    metric_rows: list[dict[str, Any]] = []
    for i, (name, ckpt) in enumerate(systems):
        for label, path in conditions:
            t0 = time.perf_counter()
            first = i == 0 and label == CLEAN
            got = evaluate(ckpt, path, out / name / slug(label), by=by, text_only=text_only if first else None, train=train,
                           batch_size=batch_size, limit=limit, console=quiet, **evaluate_kwargs)
            for r in got:
                if r["system"] == "model":
                    metric_rows.append({**r, "system": name, "condition": label})
                elif first:  # the baselines hear no audio: once, on the clean rows
                    metric_rows.append({**r, "condition": label})
            acc = next((r for r in got if r["system"] == "model" and (r["task"], r["metric"]) == KEY_METRICS[0] and not (by and by in r)), None)
            console.print(f"{name} on {label}: " + (f"binary accuracy {_fmt(acc)} " if acc else "") + f"({time.perf_counter() - t0:.0f} s)")

    info = {
        "data": str(data), "systems": {n: str(p) for n, p in systems}, "text_only": None if text_only is None else str(text_only),
        "conditions": [{"label": CLEAN}] + [{"label": d.label, **d.as_dict()} for d in degradations],
        "seed": seed, "limit": limit, "rows": len(rows), "by": by,
    }
    info["paired"] = paired_differences(out, [n for n, _ in systems], [c for c, _ in conditions])
    write_robustness(out, metric_rows, info)
    print_robustness(metric_rows, [n for n, _ in systems], [c for c, _ in conditions], console, info["paired"])
    console.print(f"[green]wrote[/] {out / 'metrics.json'}, {out / 'robustness.md'}, {out / 'plots'}")
    return metric_rows


# ------------------------------------------------------------------------------------ paired


def _row_flags(path: Path) -> tuple[list[str], dict[tuple[str, str], list[float | None]]]:
    """(patients, {(task, metric): per-row 0/1 or None}) of the model in one predictions.jsonl."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records = [r for r in records if r["system"] == "model"]
    flags = {
        ("binary", "accuracy"): [float(r["correct"]["accuracy"]) if r["task"] == "binary" else None for r in records],
        ("all", "contradiction_rate"): [float(bool(r["correct"].get("contradictions"))) for r in records],
    }
    return [str(r["patient"]) for r in records], flags


def paired_differences(out: Path, systems: Sequence[str], conditions: Sequence[str]) -> list[dict[str, Any]]:
    """Each system minus the first, per condition and key metric, on the same rows: the difference
    of means with a 95% CI from the bootstrap over patients (both systems' rows resampled together)."""
    import numpy as np

    from clinlm.evaluate.bootstrap import bootstrap_ci
    from clinlm.evaluate.stats import mean_value

    rows: list[dict[str, Any]] = []
    for cond in conditions:
        ref_patients, ref = _row_flags(out / systems[0] / slug(cond) / "predictions.jsonl")
        for system in systems[1:]:
            patients, got = _row_flags(out / system / slug(cond) / "predictions.jsonl")
            if patients != ref_patients:
                raise ValueError(f"{system} and {systems[0]} were scored on different rows under {cond}")
            for key in KEY_METRICS:
                keep = [i for i, (a, b) in enumerate(zip(got[key], ref[key])) if a is not None and b is not None]
                if not keep:
                    continue
                diff = np.array([got[key][i] - ref[key][i] for i in keep])
                ci = bootstrap_ci(mean_value, np.zeros(len(diff)), diff, patients=[patients[i] for i in keep])
                rows.append({"system": system, "minus": systems[0], "condition": cond, "task": key[0], "metric": key[1],
                             "difference": float(ci.value), "ci_low": float(ci.low), "ci_high": float(ci.high), "n": int(ci.n)})
    return rows


# ------------------------------------------------------------------------------------ outputs


def _fmt(r: Mapping[str, Any] | None) -> str:
    return format_ci(r, ci_digits=2)


def _index(metric_rows: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    """(system, condition, task, metric) -> row, for the rows over all rows (not the per-group `by` rows)."""
    from clinlm.evaluate.run import KEYS

    keys = set(KEYS) | {"condition"}
    return {(r["system"], r["condition"], r["task"], r["metric"]): r for r in metric_rows if set(r) <= keys}


def _columns(metric_rows: Sequence[Mapping[str, Any]], systems: Sequence[str]) -> list[str]:
    present = {r["system"] for r in metric_rows}
    return list(systems) + [b for b in BASELINES if b in present]


def _table_metrics(metric_rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    tasks = list(dict.fromkeys(r["task"] for r in metric_rows))
    pairs = [(t, HEADLINE[t]) for t in tasks if t in HEADLINE]
    if ("binary", "accuracy") in pairs:  # accuracy alone rewards drifting to the majority answer under noise
        pairs.insert(pairs.index(("binary", "accuracy")) + 1, ("binary", "balanced_accuracy"))
    return pairs + [("all", "fact_consistency"), ("all", "contradiction_rate")]


def render_robustness(metric_rows: Sequence[Mapping[str, Any]], info: Mapping[str, Any]) -> str:
    systems = list(info["systems"])
    conditions = [c["label"] for c in info["conditions"]]
    index = _index(metric_rows)
    columns = _columns(metric_rows, systems)
    md = ["# Robustness to degraded audio", ""]
    md += [f"- Data: `{info['data']}` ({info['rows']} rows" + (f", first {info['limit']}" if info.get("limit") else "") + ")"]
    md += [f"- **{n}**: `{p}`" for n, p in info["systems"].items()]
    if info.get("text_only"):
        md += [f"- **text-only**: `{info['text_only']}`"]
    md += ["- Conditions (`clinlm.signals.degrade`; SNR over the whole recording at its native rate, noise seeded per "
           f"recording with seed {info['seed']}, so every system hears the same noisy file):"]
    for c in info["conditions"]:
        params = ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("label", "degrade"))
        md += [f"  - `{c['label']}`" + (f": {c['degrade']} ({params})" if c.get("degrade") else ": the recordings as they are")]
    md += ["", "Every figure: value [95% CI], bootstrap over patients. The baselines hear no audio: evaluated once, on the "
           "clean rows (their figure holds under every condition). Every metric of every task is in `metrics.json` "
           "(rows with a `condition`) and in each `<system>/<condition>/report.md`.", ""]
    for task, metric in _table_metrics(metric_rows):
        if not any(k[2:] == (task, metric) for k in index):
            continue
        arrow = " (lower is better)" if metric in LOWER_IS_BETTER else ""
        md += [f"## {task}: {metric}{arrow}", ""]
        md += ["| condition | " + " | ".join(c.replace("_", "-") for c in columns) + " | n |", "|" + "---|" * (len(columns) + 2)]
        for cond in conditions:
            cells = [_fmt(index.get((s, cond if s not in BASELINES else CLEAN, task, metric))) if (s not in BASELINES or cond == CLEAN) else "(as clean)"
                     for s in columns]
            ref = next((index[(s, cond, task, metric)] for s in systems if (s, cond, task, metric) in index), None)
            md += [f"| {cond} | " + " | ".join(cells) + f" | {ref['n'] if ref else '-'} |"]
        md += [""]
    if info.get("paired"):
        ref = info["paired"][0]["minus"]
        md += [f"## Paired differences: each system minus {ref}", "",
               f"On the same rows (and the same noisy recordings): the difference of the two systems' means, with a 95% CI "
               f"from resampling patients (both systems' rows together). A CI that excludes 0 is a difference the test "
               f"set supports; for the contradiction rate, below 0 is better.", ""]
        md += ["| system | condition | binary accuracy | contradiction rate |", "|---|---|---|---|"]
        cells: dict[tuple[str, str], dict[tuple[str, str], Mapping[str, Any]]] = {}
        for r in info["paired"]:
            cells.setdefault((r["system"], r["condition"]), {})[(r["task"], r["metric"])] = r
        for (system, cond), got in cells.items():
            md += [f"| {system} | {cond} | " + " | ".join(_fmt_diff(got.get(k)) for k in KEY_METRICS) + " |"]
        md += [""]
    md += ["## Plots", "", "![metric vs SNR](plots/robustness_snr.png)", "", "![every condition](plots/robustness_conditions.png)", ""]
    return "\n".join(md)


def _fmt_diff(r: Mapping[str, Any] | None) -> str:
    if not r:
        return "-"
    return f"{r['difference']:+.3f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"


def _snr_series(info: Mapping[str, Any]) -> dict[str, list[tuple[float, str]]]:
    """{noise kind: [(snr_db, condition label)]} sorted by SNR."""
    series: dict[str, list[tuple[float, str]]] = {}
    for c in info["conditions"]:
        if c.get("degrade") == "noise":
            series.setdefault(c["kind"], []).append((float(c["snr_db"]), c["label"]))
    return {k: sorted(v) for k, v in series.items()}


def write_plots(folder: Path, metric_rows: Sequence[Mapping[str, Any]], info: Mapping[str, Any]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from clinlm.evaluate.report import _save_figure

    systems = list(info["systems"])
    index = _index(metric_rows)
    metrics = [m for m in KEY_METRICS if any(k[2:] == m for k in index)]
    plots: dict[str, Path] = {}
    colours = plt.get_cmap("tab10")
    series = _snr_series(info)
    if series and metrics:
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
        top = max(s for pts in series.values() for s, _ in pts)
        clean_x = top + max(5.0, 0.25 * (top - min(s for pts in series.values() for s, _ in pts)))
        for ax, (task, metric) in zip(axes[0], metrics):
            for j, system in enumerate(systems):
                for k, (kind, pts) in enumerate(series.items()):
                    xs = [s for s, _ in pts] + [clean_x]
                    rs = [index.get((system, label, task, metric)) for _, label in pts] + [index.get((system, CLEAN, task, metric))]
                    ok = [(x, r) for x, r in zip(xs, rs) if r is not None and r["value"] is not None]
                    if not ok:
                        continue
                    x = np.array([p[0] for p in ok])
                    y = np.array([p[1]["value"] for p in ok])
                    lo = np.array([p[1]["ci_low"] if p[1].get("ci_low") is not None else p[1]["value"] for p in ok])
                    hi = np.array([p[1]["ci_high"] if p[1].get("ci_high") is not None else p[1]["value"] for p in ok])
                    offset = (j - (len(systems) - 1) / 2) * 0.6  # dodge the error bars
                    ax.errorbar(x + offset, y, yerr=[np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)], marker="o", capsize=3,
                                color=colours(j), linestyle=["-", "--", ":", "-."][k % 4],
                                label=system + ("" if len(series) == 1 else f" ({kind})"))
            for b, style in zip(BASELINES, (":", "-.")):
                r = index.get((b, CLEAN, task, metric))
                if r is not None and r["value"] is not None:
                    ax.axhline(r["value"], color="grey", linestyle=style, linewidth=1, label=b.replace("_", "-"))
            ticks = sorted({s for pts in series.values() for s, _ in pts})
            ax.set_xticks(ticks + [clean_x], [f"{t:g}" for t in ticks] + ["clean"])
            ax.set_xlabel("SNR (dB)")
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_title(f"{task}: {metric}" + (" (lower is better)" if metric in LOWER_IS_BETTER else "") + ", 95% CI", fontsize=10)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        plots["snr"] = folder / "robustness_snr.png"
        _save_figure(fig, plots["snr"])
    conditions = [c["label"] for c in info["conditions"]]
    if metrics:
        fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6.0, 1.1 * len(conditions) * max(len(systems), 1) ** 0.5 + 3), 3.2 * len(metrics)),
                                 squeeze=False)
        width = 0.8 / max(len(systems), 1)
        x = np.arange(len(conditions))
        for ax, (task, metric) in zip(axes[:, 0], metrics):
            for j, system in enumerate(systems):
                rs = [index.get((system, c, task, metric)) for c in conditions]
                y = np.array([np.nan if r is None or r["value"] is None else r["value"] for r in rs], dtype=float)
                lo = np.array([np.nan if r is None or r.get("ci_low") is None else r["ci_low"] for r in rs], dtype=float)
                hi = np.array([np.nan if r is None or r.get("ci_high") is None else r["ci_high"] for r in rs], dtype=float)
                err = np.nan_to_num(np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)]))
                ax.bar(x + (j - (len(systems) - 1) / 2) * width, np.nan_to_num(y), width, yerr=err, capsize=3, color=colours(j), label=system)
            ax.set_xticks(x, conditions, rotation=30, ha="right", fontsize=8)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{task}: {metric}" + (" (lower is better)" if metric in LOWER_IS_BETTER else "") + ", 95% CI", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        plots["conditions"] = folder / "robustness_conditions.png"
        _save_figure(fig, plots["conditions"])
    return plots


def write_robustness(out: Path, metric_rows: Sequence[Mapping[str, Any]], info: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(list(metric_rows), indent=1, ensure_ascii=False) + "\n", out / "metrics.json")
    atomic_write_text(json.dumps({k: v for k, v in info.items() if k != "paired"}, indent=1) + "\n", out / "robustness.json")
    atomic_write_text(json.dumps(info.get("paired") or [], indent=1) + "\n", out / "paired.json")
    write_plots(out / "plots", metric_rows, info)
    atomic_write_text(render_robustness(metric_rows, info), out / "robustness.md")


def print_robustness(metric_rows: Sequence[Mapping[str, Any]], systems: Sequence[str], conditions: Sequence[str], console: Console,
                     paired: Sequence[Mapping[str, Any]] = ()) -> None:
    index = _index(metric_rows)
    for task, metric in KEY_METRICS:
        if not any(k[2:] == (task, metric) for k in index):
            continue
        columns = _columns(metric_rows, systems)
        arrow = " (lower is better)" if metric in LOWER_IS_BETTER else ""
        table = Table(title=f"{task}: {metric}{arrow} (95% CI, bootstrap over patients)")
        table.add_column("condition", no_wrap=True)
        for c in columns:
            table.add_column(c.replace("_", "-"))
        for cond in conditions:
            table.add_row(cond, *[_fmt(index.get((s, CLEAN if s in BASELINES else cond, task, metric))) if (s not in BASELINES or cond == CLEAN)
                                  else "(as clean)" for s in columns])
        console.print(table)
    if paired:
        table = Table(title=f"each system minus {systems[0]}, same rows (paired 95% CI)")
        table.add_column("system")
        table.add_column("condition", no_wrap=True)
        table.add_column("binary accuracy")
        table.add_column("contradiction rate (lower is better)")
        cells: dict[tuple[str, str], dict[tuple[str, str], Mapping[str, Any]]] = {}
        for r in paired:
            cells.setdefault((r["system"], r["condition"]), {})[(r["task"], r["metric"])] = r
        for (system, cond), got in cells.items():
            table.add_row(system, cond, *[_fmt_diff(got.get(k)) for k in KEY_METRICS])
        console.print(table)
