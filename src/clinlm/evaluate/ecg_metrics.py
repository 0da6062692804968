"""ECG scoring: ECGBench's four tasks from parsed answers, and per-class AUROC/F1 from class probes.

Each response is parsed with `bench.ecg_facts.extract_ecg_facts` and compared with the row's
`answer` (schemas in `bench/ecg_facts.py`). Metrics (all in [0, 1], the first the headline):

- ecg_closed: `accuracy` (yes / no / cannot be determined), `balanced_accuracy`, `f1` (of "yes"),
  `auroc` (P(yes) from the first answer token, on yes/no rows), `af_accuracy` (the atrial
  fibrillation questions alone: every ECG whose rhythm is labelled is asked it once);
- ecg_mcq: `accuracy` of the letter (ECGBench's scoring: the first A-D the reply gives);
- ecg_report: `finding_f1` (micro F1 between findings stated present and findings labelled
  present, over findings the labels decide), `rhythm_accuracy` (the labelled rhythm named, no
  other rhythm called present; "cannot be determined" where no rhythm is labelled),
  `class_accuracy` (the diagnostic classes stated present are exactly the labelled ones);
- ecg_conversation: `accuracy` of the final turn (a closed follow-up), given the earlier turns;
- every task: `fact_consistency`, `contradiction_rate`, `unparseable_rate` as in `metrics.py`.

Per-class figures (`class_probes` + `probe_metric_rows`): every ECG among the evaluated rows is
asked the canonical closed question for each class its labels decide (PTB-XL's five
superclasses and the simulator's rhythms: sinus rhythm, atrial fibrillation, sinus tachycardia,
sinus bradycardia), and P(yes) gives the class's AUROC; "yes" when P(yes) > 0.5 gives its F1 and
accuracy. Rows: task `ecg_class:<finding>` (metrics auroc, f1, accuracy) and task `ecg_class`
(macro_auroc / macro_f1 over the superclasses and over the rhythms), each with a
bootstrap-over-patients CI. The majority baseline's P(yes) is the class's share of "yes" in the
training rows; the text-only model answers the same probes without the ECG.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from clinlm.bench import ecg_templates as T
from clinlm.bench.ecg_facts import (
    SIMULATOR_RHYTHMS,
    SUPERCLASS_FINDINGS,
    check_ecg_consistency,
    extract_ecg_facts,
    in_group,
)
from clinlm.evaluate import stats
from clinlm.evaluate.bootstrap import vectorised

UNPARSEABLE = "unparseable"
PROBE_CLASSES = {"superclass": SUPERCLASS_FINDINGS, "rhythm": SIMULATOR_RHYTHMS}


def closed_prediction(facts: Mapping[str, Any], finding: str) -> str:
    """yes / no / unknown as the response answers a closed question about `finding`, or unparseable."""
    if facts["label"] in ("yes", "no"):
        return facts["label"]
    said = set(facts["mentions"].get(finding, [])) - {"unknown"}
    if len(said) == 1:
        return said.pop()
    if len(said) > 1:
        return UNPARSEABLE  # says both
    return "unknown" if facts["unknown"] else UNPARSEABLE


def _stated_yes(facts: Mapping[str, Any]) -> set[str]:
    return {k for k, said in facts["mentions"].items() if "yes" in said and "no" not in said}


def _rhythm_right(facts: Mapping[str, Any], truth: Mapping[str, str]) -> bool:
    rhythms = set(in_group("rhythm"))
    labelled = {k for k in rhythms if truth.get(k) == "yes"}
    said = _stated_yes(facts) & rhythms
    return said == labelled if labelled else (not said and bool(facts["unknown"]))


def _closed(rows, facts, yes_probs):
    y_true = np.array([r["answer"]["label"] for r in rows], dtype=object)
    y_pred = np.array([closed_prediction(f, r["answer"]["finding"]) for r, f in zip(rows, facts)], dtype=object)
    findings = np.array([r["answer"]["finding"] for r in rows], dtype=object)
    flags = [{"parsed": p != UNPARSEABLE, "accuracy": bool(p == t), "label": t, "predicted": p, "finding": k}
             for t, p, k in zip(y_true, y_pred, findings)]
    from clinlm.evaluate.metrics import yes_no_metrics  # metrics.py imports this module lazily too

    metrics = yes_no_metrics(y_true, y_pred, yes_probs)
    af = findings == "af"
    if af.any():
        metrics.append(stats_metric("af_accuracy", stats.accuracy, (y_true, y_pred), af))
    return flags, metrics


def _mcq(rows, facts, yes_probs):
    y_true = np.array([r["answer"]["correct"] for r in rows], dtype=object)
    y_pred = np.array([f["choice"] or UNPARSEABLE for f in facts], dtype=object)
    flags = [{"parsed": p != UNPARSEABLE, "accuracy": bool(p == t), "label": t, "predicted": p} for t, p in zip(y_true, y_pred)]
    return flags, [stats_metric("accuracy", stats.accuracy, (y_true, y_pred))]


def _report(rows, facts, yes_probs):
    true_sets, pred_sets, flags = [], [], []
    rhythm, rhythm_mask, classes, class_mask = [], [], [], []
    for r, f in zip(rows, facts):
        truth = r["answer"]["findings"]
        decided = {k for k, v in truth.items() if v in ("yes", "no")}
        parsed = bool(f["mentions"] or f["unknown"])
        labelled, said = {k for k in decided if truth[k] == "yes"}, _stated_yes(f) & decided
        true_sets.append(frozenset(labelled))
        pred_sets.append(frozenset(said))
        rhythm.append(float(_rhythm_right(f, truth)))
        rhythm_mask.append(True)
        class_keys = set(in_group("class"))
        known = any(truth.get(k) in ("yes", "no") for k in class_keys)
        classes.append(float(known and (_stated_yes(f) & class_keys) == {k for k in class_keys if truth.get(k) == "yes"}))
        class_mask.append(known)
        flags.append({"parsed": parsed, "labelled": sorted(labelled), "stated": sorted(said), "rhythm_accuracy": bool(rhythm[-1])})
    zeros = np.zeros(len(rows))
    metrics = [
        stats_metric("finding_f1", stats.micro_f1, (_objects(true_sets), _objects(pred_sets))),
        stats_metric("rhythm_accuracy", stats.mean_value, (zeros, np.array(rhythm)), np.array(rhythm_mask)),
    ]
    if any(class_mask):
        metrics.append(stats_metric("class_accuracy", stats.mean_value, (zeros, np.array(classes)), np.array(class_mask)))
    return flags, metrics


def _conversation(rows, facts, yes_probs):
    right, flags = [], []
    for r, f in zip(rows, facts):
        turn = r["answer"]["turns"][-1]
        if turn["kind"] == "closed":
            pred = closed_prediction(f, turn["finding"])
            ok, parsed = pred == turn["label"], pred != UNPARSEABLE
        else:
            ok, parsed = _rhythm_right(f, r["answer"]["findings"]), bool(f["mentions"] or f["unknown"])
        right.append(float(ok))
        flags.append({"parsed": parsed, "accuracy": bool(ok), "turn": turn})
    return flags, [stats_metric("accuracy", stats.mean_value, (np.zeros(len(rows)), np.array(right)))]


SCORERS = {"ecg_closed": _closed, "ecg_mcq": _mcq, "ecg_report": _report, "ecg_conversation": _conversation}


def stats_metric(name, fn, args, mask=None):
    from clinlm.evaluate.metrics import Metric

    return Metric(name, fn, tuple(args), None if mask is None else np.asarray(mask, dtype=bool))


def _objects(items: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def _decides(answer: Mapping[str, Any], task: str) -> bool:
    """Do the labels support a definite answer (so "cannot be determined" alone is not enough)?"""
    if task == "ecg_closed":
        return answer["label"] in ("yes", "no")
    if task == "ecg_conversation":
        turn = answer["turns"][-1]
        return turn.get("label") in ("yes", "no") if turn["kind"] == "closed" else any(
            answer["findings"].get(k) == "yes" for k in in_group("rhythm"))
    return True  # a report always has something labelled (rows are built only then); an MCQ has its answer


def _abstains(facts: Mapping[str, Any]) -> bool:
    definite = any(v in ("yes", "no") for said in facts["mentions"].values() for v in said)
    return bool(facts["unknown"]) and not definite and facts["choice"] is None and facts["label"] not in ("yes", "no")


def score_ecg_task(task: str, rows: Sequence[Mapping[str, Any]], texts: Sequence[str], yes_probs=None):
    """`metrics.score_task` for the ECG tasks: per-row facts and flags, and the metrics."""
    from clinlm.evaluate.metrics import TaskScores

    facts = [extract_ecg_facts(t or "") for t in texts]
    flags, metrics = SCORERS[task](rows, facts, yes_probs)
    consistent, contradiction = [], []
    for r, t, f, fl in zip(rows, texts, facts, flags):
        problems = check_ecg_consistency(t or "", dict(r["answer"]), task)
        fl["abstains"] = _abstains(f)
        if fl["abstains"] and _decides(r["answer"], task):
            problems = problems + ["says it cannot be determined, but the labels decide"]
        fl["problems"] = problems
        truth = r["answer"].get("findings") or {}
        if task == "ecg_closed":
            truth = {**truth, r["answer"]["finding"]: r["answer"]["label"]}
        fl["contradictions"] = [k for k, said in f["mentions"].items()
                                if truth.get(k) in ("yes", "no") and any(s in ("yes", "no") and s != truth[k] for s in said)]
        consistent.append(float(fl["parsed"] and not problems))
        contradiction.append(float(bool(fl["contradictions"])))
    zeros = np.zeros(len(rows))
    common = [
        stats_metric("fact_consistency", stats.mean_value, (zeros, np.array(consistent))),
        stats_metric("contradiction_rate", stats.mean_value, (zeros, np.array(contradiction))),
        stats_metric("unparseable_rate", stats.mean_value, (zeros, np.array([0.0 if fl["parsed"] else 1.0 for fl in flags]))),
    ]
    return TaskScores(task, facts, flags, metrics + common)


# ------------------------------------------------------------------------------------ class probes


def class_probes(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One probe row per (ECG, class its labels decide) among the ECG rows, in a stable order.

    Each probe: {"row": a bench-format prompt row, "finding", "label", "patient", "group"}.
    """
    from clinlm.models.media import MEDIA

    seen: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in rows:
        if not str(r.get("task", "")).startswith("ecg_") or not isinstance((r.get("answer") or {}).get("findings"), dict):
            continue
        for kind in ("ecg", "image"):
            for path in r.get(MEDIA[kind].rows_key) or []:
                seen.setdefault((kind, path), r)
    probes = []
    for (kind, path), r in sorted(seen.items()):
        findings = r["answer"]["findings"]
        for group, keys in PROBE_CLASSES.items():
            for key in keys:
                if findings.get(key) not in ("yes", "no"):
                    continue
                prompt = {"messages": [{"role": "user", "content": f"{MEDIA[kind].token}\n{T.probe_question(key)}"}],
                          MEDIA[kind].rows_key: [path], "record_ids": r.get("record_ids"), "patient_id": r.get("patient_id"),
                          "task": "ecg_closed"}
                probes.append({"row": prompt, "finding": key, "label": findings[key], "group": group,
                               "patient": str(r.get("patient_id") or path)})
    return probes


def majority_probe_probs(probes: Sequence[Mapping[str, Any]], reference_rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """P(yes) of the majority baseline: each class's share of "yes" among the training ECGs that decide it."""
    counts: dict[str, list[int]] = {}
    done = set()
    for r in reference_rows:
        findings = (r.get("answer") or {}).get("findings")
        key = tuple(r.get("record_ids") or [])
        if not isinstance(findings, dict) or key in done:
            continue
        done.add(key)
        for k, v in findings.items():
            if v in ("yes", "no"):
                counts.setdefault(k, [0, 0])[v == "yes"] += 1
    return [counts[p["finding"]][1] / sum(counts[p["finding"]]) if p["finding"] in counts else 0.5 for p in probes]


@vectorised
def macro_auroc(y_true, classes, scores, weights=None):
    """Mean over classes of the AUROC within each class (classes without both labels left out)."""
    return _macro(stats.auroc, y_true, classes, scores, weights)


@vectorised
def macro_f1(y_true, classes, scores, weights=None):
    """Mean over classes of the F1 of "yes" at P(yes) > 0.5."""
    return _macro(lambda t, p, s, weights=None: stats.binary_f1(t, np.where(s > 0.5, "yes", "no"), weights=weights),
                  y_true, classes, scores, weights)


def _macro(fn, y_true, classes, scores, weights):
    y_true, classes, scores = np.asarray(y_true, dtype=object), np.asarray(classes, dtype=object), np.asarray(scores, dtype=np.float64)
    parts = []
    for c in sorted(set(classes)):
        m = classes == c
        parts.append(np.atleast_1d(fn(y_true[m], y_true[m], scores[m], weights=None if weights is None else weights[:, m])))
    if not parts:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate where no class is defined stays NaN
        out = np.nanmean(np.vstack(parts), axis=0)
    return float(out[0]) if weights is None else out


def probe_metric_rows(probes: Sequence[Mapping[str, Any]], probs: Mapping[str, Sequence[float]], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """metrics.json rows for every system's class probes (see the module docstring)."""
    from clinlm.evaluate.bootstrap import bootstrap_ci

    def row(system, task, metric, fn, args, patients):
        ci = bootstrap_ci(fn, *args, patients=patients, n_boot=n_boot, seed=seed)
        num = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
        return {"system": system, "task": task, "metric": metric, "value": num(ci.value), "ci_low": num(ci.low),
                "ci_high": num(ci.high), "n": int(ci.n)}

    labels = np.array([p["label"] for p in probes], dtype=object)
    finding = np.array([p["finding"] for p in probes], dtype=object)
    group = np.array([p["group"] for p in probes], dtype=object)
    patients = np.array([p["patient"] for p in probes], dtype=object)
    out = []
    for system, values in probs.items():
        scores = np.asarray(values, dtype=np.float64)
        predicted = np.where(scores > 0.5, "yes", "no").astype(object)
        for key in dict.fromkeys(finding):
            m = finding == key
            task = f"ecg_class:{key}"
            if len(set(labels[m])) == 2:
                out.append(row(system, task, "auroc", stats.auroc, (labels[m], predicted[m], scores[m]), patients[m]))
            out.append(row(system, task, "f1", stats.binary_f1, (labels[m], predicted[m]), patients[m]))
            out.append(row(system, task, "accuracy", stats.accuracy, (labels[m], predicted[m]), patients[m]))
        for g in dict.fromkeys(group):
            m = group == g
            out.append(row(system, "ecg_class", f"macro_auroc_{g}", macro_auroc, (labels[m], finding[m], scores[m]), patients[m]))
            out.append(row(system, "ecg_class", f"macro_f1_{g}", macro_f1, (labels[m], finding[m], scores[m]), patients[m]))
    return [r for r in out if r["value"] is not None or r["n"]]
