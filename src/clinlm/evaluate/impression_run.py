"""`clinlm eval` on findings -> impression rows: the model beside the baselines, all rows and abnormal.

    clinlm eval runs/radiology/model bench/iu/test.jsonl --out runs/radiology/eval

`clinlm.evaluate.run.evaluate` hands a file whose rows are all of task "impression" to
`evaluate_impression_file`, which
1. generates the model's impression for every row (`clinlm.evaluate.run.run_model`, greedy), and
   the text-only model's when one is given; a prompt without the impressions of similar reports
   gets them from the checkpoint's retrieval index when it has one (`with_similar`); then chooses
   among the greedy and the retrieved impressions (`clinlm.evaluate.impression_rerank`, the learned
   reranker the checkpoint carries, else the model's own likelihood);
2. computes the baselines from the training rows (`train.jsonl` beside DATA, or `train=`):
   most-frequent impression, TF-IDF and MiniLM nearest-neighbour retrieval;
3. scores every system on the same rows (`clinlm.evaluate.impression.evaluate_impressions`):
   ROUGE-1/2/L and BERTScore with 95% bootstrap-over-patients CIs, on all rows and the abnormal
   subset;
4. writes DIR/metrics.json (metric rows), DIR/predictions.jsonl (every system's answer per row, with
   its ROUGE-L) and DIR/report.md (both tables, the definitions, the published anchor), atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from clinlm.bench.impression import augment_question, listed_similar
from clinlm.evaluate.impression import (
    BASELINES,
    METRICS,
    TOP_K_TEMPLATES,
    abnormal_mask,
    baseline_predictions,
    evaluate_impressions,
    format_table,
    reference_of,
    rouge_per_row,
)
from clinlm.records import atomic_write_text

# Radiology-Llama2's published OpenI figures (ROUGE-1 / ROUGE-2 / ROUGE-L): another split and
# other preprocessing, so an anchor, not a like-for-like comparison.
PUBLISHED_OPENI = {"rouge1": 0.4185, "rouge2": 0.2569, "rougeL": 0.4087}


def evaluate_impression_file(
    checkpoint: Path,
    data: Path,
    out: Path,
    rows: Sequence[dict[str, Any]],
    *,
    train: Path | None = None,
    text_only: Path | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    max_new_tokens: int = 160,
    n_boot: int = 1000,
    seed: int = 0,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Score `rows` (already read from `data`) for the checkpoint and the baselines; returns metric rows."""
    from clinlm.evaluate.impression_rerank import rerank
    from clinlm.evaluate.run import prompt_of, run_model
    from clinlm.train.data import read_rows

    console = console or Console()
    rows = [r for r in rows if r.get("task") == "impression"]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise ValueError(f"no impression rows in {data}")
    train_path = Path(train) if train is not None else Path(data).parent / "train.jsonl"
    if not train_path.exists() or train_path.resolve() == Path(data).resolve():
        raise FileNotFoundError(
            f"the impression baselines retrieve from the training rows: no {train_path} "
            "(keep train.jsonl beside the evaluated file, as `clinlm bench build` writes it)"
        )
    train_rows = [r for r in read_rows(train_path) if r.get("task") == "impression"]

    predictions: dict[str, list[str]] = {}
    prompted = with_similar(checkpoint, rows)
    greedy, _ = run_model(Path(checkpoint), prompted, batch_size, max_new_tokens, None, "model")
    if any(listed_similar(user_turn(r)) for r in prompted):
        with console.status("model: scoring its impression and the similar reports' under the model"):
            likelihood = choose_by_likelihood(Path(checkpoint), prompted, greedy, batch_size)
            reranked = rerank(Path(checkpoint), [{**r, "messages": prompt_of(r)} for r in prompted], greedy, batch_size)
        predictions["model"] = reranked if reranked is not None else likelihood
        if reranked is not None:
            predictions["model_likelihood"] = likelihood
        predictions["model_greedy"] = greedy
    else:
        predictions["model"] = greedy
    if text_only is not None:
        predictions["text_only"], _ = run_model(Path(text_only), with_similar(text_only, rows), batch_size, max_new_tokens, None, "text-only")
    with console.status("baselines (most frequent, TF-IDF and MiniLM retrieval) and scoring"):
        predictions.update(baseline_predictions(rows, train_rows, BASELINES))
        metric_rows = evaluate_impressions(rows, predictions, train_rows, baselines=(), n_boot=n_boot, seed=seed)

    abnormal = abnormal_mask(rows, train_rows)
    references = [reference_of(r) for r in rows]
    rouge_l = {name: rouge_per_row(p, references)["rougeL"] for name, p in predictions.items()}
    records = [
        {
            "row": r.get("_source"), "record_ids": r.get("record_ids"), "patient": r.get("patient_id"),
            "dataset": r.get("dataset"), "abnormal": bool(abnormal[i]), "reference": references[i],
            "predictions": {name: p[i] for name, p in predictions.items()},
            "rougeL": {name: round(float(v[i]), 4) for name, v in rouge_l.items()},
        }
        for i, r in enumerate(rows)
    ]
    if "model_greedy" in predictions:  # how often the chosen impression is the model's own text
        own = np.mean([m == g for m, g in zip(predictions["model"], predictions["model_greedy"])])
        console.print(f"model: its own greedy impression chosen for {own:.0%} of rows, a retrieved one for the rest")
        chose = f"Here `model` is its own greedy impression on {own:.0%} of rows and a retrieved one on the rest."
    else:
        chose = ""
    out = Path(out)
    info = {"chose": chose, "checkpoint": str(checkpoint), "data": str(data), "train": str(train_path), "rows": len(rows),
            "train_rows": len(train_rows), "n_boot": n_boot, "seed": seed, "limit": limit, "max_new_tokens": max_new_tokens}
    atomic_write_text(json.dumps(metric_rows, indent=2), out / "metrics.json")
    atomic_write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), out / "predictions.jsonl")
    atomic_write_text(render_report(metric_rows, records, info), out / "report.md")
    print_tables(metric_rows, console, title=f"{Path(checkpoint).name} on {Path(data).name}")
    console.print(f"[green]wrote[/] {out / 'metrics.json'}, {out / 'predictions.jsonl'}, {out / 'report.md'}")
    return metric_rows


def user_turn(row: dict[str, Any]) -> str:
    return next((m["content"] for m in row["messages"] if m["role"] == "user"), "")


def choose_by_likelihood(checkpoint: Path, rows: Sequence[dict[str, Any]], generated: Sequence[str], batch_size: int = 16) -> list[str]:
    """Per row, the candidate the model itself finds most likely (mean token log-probability given
    the prompt) among its generated impression and the similar reports' impressions the prompt lists.

    Greedy decoding commits to one token at a time; a retrieval-augmented model also has whole
    candidate impressions in front of it, and scoring each one under the model (rerank, as in
    retrieve-and-rerank pipelines) lets it take a retrieved impression when that fits the findings
    better than its own continuation. The choice uses only the prompt and the model: no reference."""
    import clinlm
    from clinlm.infer import answer_logprob

    model = clinlm.load(checkpoint)
    candidates = [list(dict.fromkeys([g, *listed_similar(user_turn(r))])) for r, g in zip(rows, generated)]
    flat = [(i, c) for i, cands in enumerate(candidates) for c in cands]
    scores = answer_logprob(model, [rows[i] for i, _ in flat], [c for _, c in flat], batch_size=batch_size)
    best: dict[int, tuple[float, str]] = {}
    for (i, c), score in zip(flat, scores):
        if i not in best or score > best[i][0]:
            best[i] = (score, c)
    return [best[i][1] for i in range(len(rows))]


def with_similar(checkpoint: Path, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose prompt lists no similar reports get them from the checkpoint's index (a bench
    built with --split-all, or by hand); rows that list them, or a checkpoint without an index,
    are left as they are."""
    out = []
    for r in rows:
        msgs = [dict(m) for m in r["messages"]]
        user = next((m for m in msgs if m["role"] == "user"), None)
        if user is not None:
            user["content"] = augment_question(checkpoint, user["content"])
        out.append({**r, "messages": msgs})
    return out


def render_report(metric_rows: Sequence[dict], records: Sequence[dict], info: dict) -> str:
    n_abn = sum(r["abnormal"] for r in records)
    examples = [r for r in records if r["abnormal"]][:3] + [r for r in records if not r["abnormal"]][:2]
    ex = "\n\n".join(
        f"- reference: {r['reference']}\n" + "\n".join(f"  - {name}: {text}" for name, text in r["predictions"].items())
        for r in examples
    )
    anchor = ", ".join(f"{k} {v}" for k, v in PUBLISHED_OPENI.items())
    return f"""# Findings -> impression evaluation

Model `{info['checkpoint']}` on `{info['data']}`: {info['rows']} rows ({n_abn} in the abnormal subset);
baselines retrieve from `{info['train']}` ({info['train_rows']} rows). 95% CIs: bootstrap over patients
(for IU/OpenI, studies), {info['n_boot']} replicates, seed {info['seed']}. Greedy decoding, at most
{info['max_new_tokens']} new tokens. With a retrieval-augmented prompt, `model` chooses among its greedy
impression (`model_greedy`) and the impressions of similar training reports: with the checkpoint's
learned reranker (`impression_reranker.json`, fitted on the validation split after training:
`clinlm.evaluate.impression_rerank`) when it has one, else by the model's own likelihood
(`model_likelihood` when both are reported). No reference is used to choose. {info.get('chose', '')}

## All rows

{format_table(metric_rows, "all")}

## Abnormal subset

Rows whose reference impression (normalised: lower case, no punctuation, no `XXXX`) is not one of
the {TOP_K_TEMPLATES} most frequent training impressions: copying a template does not help here.

{format_table(metric_rows, "abnormal")}

## Model minus each baseline (paired: the same rows, the same bootstrap draws)

All rows:

{format_table(metric_rows, "all", paired=True)}

Abnormal subset:

{format_table(metric_rows, "abnormal", paired=True)}

## Definitions

- `rouge1`, `rouge2`, `rougeL`: rouge-score F-measure, Porter stemming on, mean over rows.
- `bertscore_f1`: BERTScore F1 with the local all-MiniLM-L6-v2 (6 layers, no rescaling: its scale is
  not that of papers using RoBERTa-large).
- `most_frequent`: the most frequent training impression for every row; `tfidf_nn` / `minilm_nn`: the
  impression of the training report with the most similar findings (TF-IDF / MiniLM cosine).

Anchor: Radiology-Llama2 published OpenI {anchor}. That figure comes from a different split and
preprocessing, so it is an anchor, not a like-for-like comparison; the baselines above are.

## Examples

{ex}
"""


def print_tables(metric_rows: Sequence[dict], console: Console, title: str = "impression") -> None:
    for subset in ("all", "abnormal"):
        rows = [r for r in metric_rows if r.get("subset") == subset and not r.get("paired_difference")]
        if not rows:
            continue
        table = Table("system", *METRICS, title=f"{title}: {subset} rows (n={rows[0]['n']}, 95% CI over patients)")
        for system in dict.fromkeys(r["system"] for r in rows):
            cells = {r["metric"]: r for r in rows if r["system"] == system}
            table.add_row(system, *(f"{cells[m]['value']:.3f} [{cells[m]['ci_low']:.3f}, {cells[m]['ci_high']:.3f}]" if m in cells else "-" for m in METRICS))
        console.print(table)
        for r in metric_rows:
            if r.get("subset") == subset and r.get("paired_difference") and r["metric"] in ("rouge1", "rougeL"):
                console.print(f"  {subset}: {r['system']} {r['metric']} {r['value']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] (paired)")
