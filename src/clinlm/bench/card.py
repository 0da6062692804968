"""The bench's data card: `card.md`, `stats.json` and PNG plots of the distributions.

Plots use matplotlib's object API (`Figure` + Agg canvas), so nothing touches pyplot's global
state or needs a display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinlm.records import SPLITS, atomic_write_text

PLOTS = {
    "rows_per_task": "plot_rows_per_task.png",
    "rows_per_dataset": "plot_rows_per_dataset.png",
    "binary_labels": "plot_binary_labels.png",
    "response_words": "plot_response_words.png",
}


def _figure(width: float = 7.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.25)  # fixed margins: tight_layout is slow
    return fig, fig.add_subplot(1, 1, 1)


def _stacked(table: dict[str, dict[str, int]], keys: list[str], title: str, path: Path) -> None:
    fig, ax = _figure()
    names = list(table)
    bottom = [0] * len(names)
    for key in keys:
        values = [table[n].get(key, 0) for n in names]
        ax.bar(names, values, bottom=bottom, label=key)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_title(title)
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.savefig(path)


def _words(hist: dict[str, dict[int, int]], path: Path) -> None:
    fig, ax = _figure()
    for task, counts in sorted(hist.items()):
        bins: dict[int, int] = {}
        for k, n in counts.items():  # 5-word bins
            bins[int(k) // 5 * 5] = bins.get(int(k) // 5 * 5, 0) + n
        xs = sorted(bins)
        ax.step(xs, [bins[x] for x in xs], where="post", label=task, linewidth=1.2)
    ax.set_title("Response length (words, 5-word bins; 200 = 200 or more)")
    ax.set_xlabel("words")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    fig.savefig(path)


def write_plots(out: Path, stats: dict[str, Any], response_words: dict[str, dict[int, int]]) -> list[str]:
    """Write the PNGs that have data; return their file names."""
    written = []
    if stats["rows_per_task"]:
        _stacked(stats["rows_per_task"], list(SPLITS), "Rows per task and split", out / PLOTS["rows_per_task"])
        written.append(PLOTS["rows_per_task"])
    if stats["rows_per_dataset"]:
        _stacked(stats["rows_per_dataset"], list(SPLITS), "Rows per dataset and split", out / PLOTS["rows_per_dataset"])
        written.append(PLOTS["rows_per_dataset"])
    if stats["binary_labels"]:
        _stacked(stats["binary_labels"], ["yes", "no", "unknown"], "Binary answers per finding", out / PLOTS["binary_labels"])
        written.append(PLOTS["binary_labels"])
    if response_words:
        _words(response_words, out / PLOTS["response_words"])
        written.append(PLOTS["response_words"])
    return written


def _table(rows: dict[str, dict[str, int]], columns: list[str], first: str) -> str:
    head = f"| {first} | " + " | ".join(columns) + " | total |\n|---|" + "---:|" * (len(columns) + 1)
    body = [f"| {name} | " + " | ".join(str(v.get(c, 0)) for c in columns) + f" | {sum(v.values())} |"
            for name, v in rows.items()]
    return "\n".join([head, *body])


def card_text(stats: dict[str, Any], plots: list[str]) -> str:
    pref = stats["preference_rows_per_split"]
    skipped = [f"- records without media (annotation-only releases), skipped: **{stats['skipped_no_media']}**"
               + (" (rerun with `--allow-missing-media` to write rows that point at the expected files)" if stats["skipped_no_media"] else "")]
    for modality, n in stats.get("skipped_modality", {}).items():
        skipped.append(f"- records of modality `{modality}` (no tasks here), skipped: {n}")
    if stats.get("records_with_missing_media_files"):
        skipped.append(f"- records whose media files are not on disk now: {stats['records_with_missing_media_files']}")
    if stats.get("rows_pointing_at_missing_media_records"):
        skipped.append(f"- records written with their expected (missing) media path: {stats['rows_pointing_at_missing_media_records']}")
    if stats.get("comparison_pairs_incomplete"):
        skipped.append(f"- comparison pairs with a skipped recording: {stats['comparison_pairs_incomplete']}")
    examples = []
    for task, items in stats.get("examples", {}).items():
        for ex in items[:1]:
            prompt = ex["prompt"].replace("\n", " / ")
            response = ex["response"].replace("\n", " / ")
            examples.append(f"**{task}** ({ex['dataset']})\n\n> user: {prompt}\n>\n> assistant: {response}\n")
    split_note = f"every record in **{stats['split_all']}** (`--split-all`)" if stats.get("split_all") else \
        "from the record tables' patient-level splits (a patient is never in two files)"
    para = stats.get("paraphrase")
    para_text = (f"\nParaphrased by `{para['model']}`: {para['accepted']} accepted, {para['rejected']} dropped because they "
                 f"contradicted the answer, {para['errors']} endpoint errors; {para['calls']} new calls, {para['cached']} from cache.\n"
                 if para else "\nNo LLM paraphrasing (all responses come from the templates).\n")
    return f"""# Instruction bench card

Built by `{stats['command']}` with seed {stats['seed']} in {stats['seconds']} s
({stats['rows_per_second']} rows/s, {stats['workers']} workers).

Inputs: {', '.join(f'`{p}`' for p in stats['inputs'])}: {stats['records']} records of {stats['patients']} patients;
{stats['records_used']} records used. Splits: {split_note}.

## Rows

{stats['rows']} instruction rows in `train.jsonl` / `val.jsonl` / `test.jsonl`
({', '.join(f'{s} {n}' for s, n in stats['rows_per_split'].items())}).

{_table(stats['rows_per_task'], list(SPLITS), 'task')}

{_table(stats['rows_per_dataset'], list(SPLITS), 'dataset')}

Binary answers per finding:

{_table(stats['binary_labels'], ['yes', 'no', 'unknown'], 'finding')}

Mean response length (words): {', '.join(f'{t} {v}' for t, v in stats['response_words_mean'].items())}.

## Preference rows

{sum(pref.values())} rows in `preference/{{train,val,test}}.jsonl` ({', '.join(f'{s} {n}' for s, n in pref.items())});
{stats['preference_skipped']} instruction rows had no contradicting rejection. Rejected text kinds:
{', '.join(f'{k} {v}' for k, v in sorted(stats['rejection_kinds']['text'].items())) or 'none'}; rejected audio:
{', '.join(f'{k} {v}' for k, v in sorted(stats['rejection_kinds']['audio'].items())) or 'none'} (degraded = a spec
in the row for the trainer to apply, no new audio files).
{para_text}
## Skipped

{chr(10).join(skipped)}

## How the responses are written

Every response is rendered from the row's `answer` (the structured ground truth, schemas in
`clinlm/bench/facts.py`) and checked with `check_consistency` before it is written: it states
only what the labels support; unknown labels give "cannot be determined from the available
information"; murmur grades, timings and sites in the text equal the labels; candidate diagnoses
come from a small documented table (`clinlm/bench/knowledge.py`), after the labelled diagnosis.

## Plots

{chr(10).join(f'![{p}]({p})' for p in plots)}

## Examples

{chr(10).join(examples)}
"""


def write_card(out: Path, stats: dict[str, Any], response_words: dict[str, dict[int, int]]) -> None:
    out = Path(out)
    plots = write_plots(out, stats, response_words)
    atomic_write_text(json.dumps(stats, indent=2, ensure_ascii=False), out / "stats.json")
    atomic_write_text(card_text(stats, plots), out / "card.md")
