"""Per-task scoring: parse each response into facts, compare with `row["answer"]`, name the metrics.

A response is parsed with `clinlm.bench.facts.extract_facts`, the same vocabulary the bench writes
its answers in, and compared with the row's structured `answer` (schemas in `bench/facts.py`).
A response from which the task's answer cannot be read is *unparseable*: it counts as wrong in
every metric of its task and is counted (`unparseable_rate`).

Metrics per task (all in [0, 1]; the first is the task's headline):

- binary: `accuracy` (3-way: yes / no / cannot be determined), `balanced_accuracy` (mean recall
  over the true classes), `f1` (of "yes"), `auroc` (of P(yes) from the model's yes/no token
  probabilities, on rows whose label is yes or no).
- detection: `event_f1` (micro F1 over the event types stated present vs labelled present, pooled
  over rows; a phase-specific murmur also counts as "murmur"; types the labels leave unknown are
  not scored), `event_set_accuracy` (the stated set equals the labelled set, so a correct "no
  events" counts; "cannot be determined" is right only where the labels decide nothing).
- reporting: `field_accuracy` (correct fields / labelled fields, pooled over rows; a field is
  scored only where its label is known: site, abnormal, murmur, most-audible site, murmur timing,
  shape, grade, pitch, quality, heart rate within 3 bpm, crackle, wheeze, rhonchi, stridor, covid,
  and the labelled diagnoses all named).
- reasoning: `fact_consistency` (below), `conclusion_accuracy` (the labelled conclusion is
  stated, or "cannot be determined" where none is supported).
- differential: `top1` (the first diagnosis named is the first candidate), `top3` (the first
  candidate is among the first three named); where no candidate is supported, both require "cannot
  be determined" and no diagnosis.
- comparison: `accuracy` (first / second / both / neither / cannot be determined).
- location: `accuracy` (most-audible questions: the site named; two-part murmur questions: the
  yes/no and, for a murmur, the loudest site; at-site questions: every labelled
  finding stated correctly).
- every task, and `all` tasks pooled: `fact_consistency` (parsed, no problem found by
  `bench.facts.check_consistency`, and no "cannot be determined" where the labels decide: an
  abstention contradicts nothing but is not a consistent answer), `contradiction_rate` (the response
  states a finding present that is labelled absent, or absent that is labelled present),
  `unparseable_rate`, and when text similarity is on, `rougeL` and `bertscore_f1`
  (`clinlm.evaluate.text_metrics`).

Each metric is a `Metric`: a function from `clinlm.evaluate.stats` and its per-row arrays, so the
bootstrap over patients (`clinlm.evaluate.bootstrap`) computes its interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from clinlm.bench import facts as F
from clinlm.bench.ecg_facts import ECG_TASKS
from clinlm.evaluate import stats

UNPARSEABLE = "unparseable"
HEADLINE = {
    "binary": "accuracy", "detection": "event_f1", "reporting": "field_accuracy", "reasoning": "fact_consistency",
    "differential": "top1", "comparison": "accuracy", "location": "accuracy",
    "ecg_closed": "accuracy", "ecg_mcq": "accuracy", "ecg_report": "finding_f1", "ecg_conversation": "accuracy",
}
COMMON = ("fact_consistency", "contradiction_rate", "unparseable_rate")
# Keys each task's scorer reads from `row["answer"]` (the full schemas are in bench/facts.py).
ANSWER_KEYS = {
    "binary": ("finding", "label"), "detection": ("present",), "reporting": ("modality",), "reasoning": ("question", "conclusion"),
    "differential": ("candidates",), "comparison": ("question", "answer"), "location": ("question",),
    "ecg_closed": ("finding", "label"), "ecg_mcq": ("correct", "options"), "ecg_report": ("findings",),
    "ecg_conversation": ("findings", "turns"),
}
SCORED_TASKS = F.TASKS + ECG_TASKS  # every task the evaluator scores
HR_TOLERANCE_BPM = 3.0  # the bench's own consistency tolerance for a stated heart rate
LOWER_IS_BETTER = {"contradiction_rate", "unparseable_rate"}


@dataclass
class Metric:
    """One figure: `fn(*args)` over rows, defined on the rows where `mask` is True (all when None)."""

    name: str
    fn: Callable
    args: tuple
    mask: np.ndarray | None = None


@dataclass
class TaskScores:
    """What scoring one task's rows gives: per-row parse and flags (for predictions.jsonl) and metrics."""

    task: str
    facts: list[dict[str, Any]]
    flags: list[dict[str, Any]]  # per row: {"parsed": bool, "<metric>": bool, "problems": [...]}
    metrics: list[Metric] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ parse


def known_diagnoses(answer: Mapping[str, Any]) -> list[str]:
    """Diagnosis names in an answer, recognised verbatim in responses (as check_consistency does)."""
    names = list(answer.get("diagnosis") or []) + list(answer.get("candidates") or []) + list(answer.get("labelled") or [])
    if isinstance(answer.get("conclusion"), str) and answer["conclusion"] not in F.LABELS:
        names.append(answer["conclusion"])
    return names


def parse(text: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    return F.extract_facts(text or "", diagnoses=known_diagnoses(answer))


def contradicts(facts: Mapping[str, Any], answer: Mapping[str, Any], task: str) -> list[str]:
    """Findings the response states present that are labelled absent, or absent that are labelled present."""
    truth = F._truth(dict(answer), task)  # finding -> yes/no/unknown, as the bench's consistency check reads it
    out = []
    for finding, said_all in facts["mentions"].items():
        label = truth.get(finding)
        if label in ("yes", "no") and any(s in ("yes", "no") and s != label for s in said_all):
            out.append(f"{finding}: states {'no' if label == 'yes' else 'yes'}, labelled {label}")
    return out


def stated(facts: Mapping[str, Any], finding: str) -> str | None:
    """What the response says about a finding: "yes"/"no" when every definite statement agrees,
    "conflicting" when it says both, "unknown" when it only abstains, None when it is not mentioned.
    (The parser's `findings` keeps the first statement; a later contradiction must not count as right.)"""
    said = facts["mentions"].get(finding)
    if not said:
        return None
    definite = set(said) - {"unknown"}
    if not definite:
        return "unknown"
    return definite.pop() if len(definite) == 1 else "conflicting"


def _any_content(facts: Mapping[str, Any]) -> bool:
    """The response states something the parser recognises (a finding, site, descriptor, diagnosis, ...)."""
    descriptors = any(v for key in ("grade", "timing", "shape", "pitch", "quality") for v in facts[key].values())
    return bool(
        facts["mentions"] or facts["sites"] or facts["diagnoses"] or facts["events"] or descriptors
        or facts["heart_rate_bpm"] is not None or facts["unknown"] or facts["label"] or facts["choice"]
    )


def abstains(facts: Mapping[str, Any]) -> bool:
    """The response only says it cannot be determined: no definite finding, diagnosis, site, rate,
    murmur descriptor or choice."""
    definite = any(v in ("yes", "no") for said in facts["mentions"].values() for v in said)
    descriptors = any(v for key in ("grade", "timing", "shape", "pitch", "quality") for v in facts[key].values())
    return bool(facts["unknown"]) and not (
        definite or descriptors or facts["diagnoses"] or facts["sites"] or facts["choice"] or facts["events"]
        or facts["heart_rate_bpm"] is not None or facts["label"] in ("yes", "no")
    )


def labels_decide(answer: Mapping[str, Any], task: str) -> bool:
    """Do the labels support a definite answer (so that "cannot be determined" is not good enough)?"""
    if task == "binary":
        return answer.get("label") in ("yes", "no")
    if task == "detection":
        return bool(answer.get("present") or answer.get("absent"))
    if task == "reporting":
        return any(answer.get(k) not in (None, "unknown", [], {}) for k in answer if k != "modality")
    if task == "reasoning":
        return answer.get("conclusion") not in (None, "unknown")
    if task == "differential":
        return bool(answer.get("candidates"))
    if task == "comparison":
        return answer.get("answer") not in (None, "unknown")
    if answer.get("question") == "most_audible":
        return answer.get("site") not in (None, "unknown")
    if answer.get("question") == "murmur_where":
        return (answer.get("findings") or {}).get("murmur") in ("yes", "no")
    return any(v in ("yes", "no") for v in (answer.get("findings") or {}).values())


# ------------------------------------------------------------------------------------ per task


def _binary_prediction(facts: Mapping[str, Any], finding: str) -> str:
    if facts["label"] in ("yes", "no"):  # the leading Yes/No answers the question
        return facts["label"]
    said = stated(facts, finding)
    if said in ("yes", "no"):
        return said
    if said == "conflicting":
        return UNPARSEABLE  # says both: no answer can be read
    if facts["unknown"] or said == "unknown":
        return "unknown"
    return UNPARSEABLE


def _score_binary(rows, facts, yes_probs):
    y_true = np.array([r["answer"]["label"] for r in rows], dtype=object)
    y_pred = np.array([_binary_prediction(f, r["answer"]["finding"]) for r, f in zip(rows, facts)], dtype=object)
    flags = [{"parsed": p != UNPARSEABLE, "accuracy": bool(p == t), "label": t, "predicted": p, "finding": r["answer"]["finding"]}
             for r, t, p in zip(rows, y_true, y_pred)]
    return flags, yes_no_metrics(y_true, y_pred, yes_probs)


def yes_no_metrics(y_true: np.ndarray, y_pred: np.ndarray, yes_probs: Sequence[float | None] | None) -> list[Metric]:
    """Accuracy, balanced accuracy, F1 and (with P(yes) per row) AUROC of yes/no questions.

    Shared by the auscultation binary task and the ECG closed questions."""
    metrics = [
        Metric("accuracy", stats.accuracy, (y_true, y_pred)),
        Metric("balanced_accuracy", stats.balanced_accuracy, (y_true, y_pred)),
        Metric("f1", stats.binary_f1, (y_true, y_pred)),
    ]
    if yes_probs is not None:
        scores = np.array([np.nan if p is None else float(p) for p in yes_probs], dtype=np.float64)
        mask = np.isin(y_true, ["yes", "no"]) & np.isfinite(scores)
        if mask.any():
            metrics.append(Metric("auroc", stats.auroc, (y_true, y_pred, scores), mask))
    return metrics


def _event_set(types) -> frozenset:
    out = set(types)
    if out & {"systolic murmur", "diastolic murmur"}:
        out.add("murmur")  # the parser reads "a systolic murmur" as a murmur too
    return frozenset(out)


def _set_key(types: frozenset) -> str:
    return "|".join(sorted(types)) or "none"


def _score_detection(rows, facts, yes_probs):
    true_sets, pred_sets, flags = [], [], []
    for r, f in zip(rows, facts):
        unscored = set(r["answer"].get("unknown") or []) - set(r["answer"].get("present") or [])
        truth = _event_set(r["answer"].get("present") or []) - unscored
        parsed = bool(f["mentions"] or f["events"] or f["unknown"])
        pred = (_event_set(f["event_types"]) - unscored) if parsed else frozenset()
        # "cannot be determined" is right only where the labels decide nothing, and is not "no events"
        abstained = parsed and abstains(f)
        right = (not labels_decide(r["answer"], "detection")) if abstained else (parsed and pred == truth)
        true_sets.append(truth)
        pred_sets.append(pred)
        flags.append({"parsed": parsed, "event_set_accuracy": right, "labelled": sorted(truth), "stated": sorted(pred)})
    y_true = np.array([_set_key(t) for t in true_sets], dtype=object)
    y_pred = np.array([y if fl["event_set_accuracy"] else f"wrong:{_set_key(p)}" for y, p, fl in zip(y_true, pred_sets, flags)], dtype=object)
    metrics = [
        Metric("event_f1", stats.micro_f1, (_objects(true_sets), _objects(pred_sets))),
        Metric("event_set_accuracy", stats.accuracy, (y_true, y_pred)),
    ]
    return flags, metrics


def _report_fields(answer: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, bool]:
    """field -> stated correctly, for every field whose label is known."""
    out: dict[str, bool] = {}
    site = answer.get("site")
    if isinstance(site, str) and site != "unknown":
        out["site"] = facts["site"] == site or site in facts["sites"]
    for key in ("abnormal", "murmur", "covid") + F.ADVENTITIOUS:
        if answer.get(key) in ("yes", "no"):
            out[key] = stated(facts, key) == answer[key]
    ma = answer.get("most_audible")
    if isinstance(ma, str) and ma != "unknown":
        out["most_audible"] = facts["most_audible"] == ma
    for phase in F.PHASES:
        spec = answer.get(phase)
        if isinstance(spec, dict):
            for key in ("timing", "shape", "grade", "pitch", "quality"):
                if spec.get(key) not in (None, "unknown"):
                    out[f"{phase}_{key}"] = str(facts[key][phase]) == str(spec[key])
    hr = answer.get("heart_rate_bpm")
    if isinstance(hr, (int, float)) and not isinstance(hr, bool):
        out["heart_rate_bpm"] = facts["heart_rate_bpm"] is not None and abs(facts["heart_rate_bpm"] - hr) <= HR_TOLERANCE_BPM
    dx = [d for d in answer.get("diagnosis") or [] if d]
    if dx:
        out["diagnosis"] = all(d in facts["diagnoses"] for d in dx)
    return out


def _score_reporting(rows, facts, yes_probs):
    n_fields, n_right, flags = [], [], []
    for r, f in zip(rows, facts):
        parsed = _any_content(f)
        fields = _report_fields(r["answer"], f) if parsed else dict.fromkeys(_report_fields(r["answer"], f), False)
        n_fields.append(len(fields))
        n_right.append(sum(fields.values()))
        flags.append({"parsed": parsed, "fields": fields})
    return flags, [Metric("field_accuracy", stats.ratio_of_sums, (np.array(n_fields, float), np.array(n_right, float)))]


def _reasoning_conclusion(answer: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    conclusion, question = answer.get("conclusion"), answer.get("question")
    if conclusion == "unknown":
        return bool(facts["unknown"])
    if question == "diagnosis" or conclusion not in F.LABELS:
        return conclusion in facts["diagnoses"]
    said = stated(facts, question)
    # "Yes, because ..." answers the question's own finding even when the finding is not named again
    return said == conclusion or (said is None and facts["label"] == conclusion)


def _score_reasoning(rows, facts, yes_probs):
    flags, right = [], []
    for r, f in zip(rows, facts):
        parsed = bool(f["mentions"] or f["diagnoses"] or f["unknown"] or f["label"])
        ok = parsed and _reasoning_conclusion(r["answer"], f)
        flags.append({"parsed": parsed, "conclusion_accuracy": ok})
        right.append(float(ok))
    return flags, [Metric("conclusion_accuracy", stats.mean_value, (np.zeros(len(right)), np.array(right)))]


def _score_differential(rows, facts, yes_probs):
    flags, top1, top3 = [], [], []
    for r, f in zip(rows, facts):
        cands, named = list(r["answer"].get("candidates") or []), f["diagnoses"]
        parsed = bool(named or f["unknown"])
        if not cands:
            ok1 = ok3 = bool(f["unknown"]) and not named
        else:
            ok1, ok3 = named[:1] == cands[:1], cands[0] in named[:3]
        flags.append({"parsed": parsed, "top1": parsed and ok1, "top3": parsed and ok3, "named": named[:5]})
        top1.append(float(parsed and ok1))
        top3.append(float(parsed and ok3))
    zeros = np.zeros(len(rows))
    return flags, [Metric("top1", stats.mean_value, (zeros, np.array(top1))), Metric("top3", stats.mean_value, (zeros, np.array(top3)))]


def _score_comparison(rows, facts, yes_probs):
    y_true = np.array([r["answer"]["answer"] for r in rows], dtype=object)
    y_pred = np.array([f["choice"] or ("unknown" if f["unknown"] else UNPARSEABLE) for f in facts], dtype=object)
    flags = [{"parsed": p != UNPARSEABLE, "accuracy": bool(p == t), "label": t, "predicted": p} for t, p in zip(y_true, y_pred)]
    return flags, [Metric("accuracy", stats.accuracy, (y_true, y_pred))]


def _location_correct(answer: Mapping[str, Any], facts: Mapping[str, Any]) -> tuple[bool, bool]:
    """(parsed, correct) for one location row."""
    if answer.get("question") == "most_audible":
        site = facts["most_audible"] or facts["site"]
        parsed = site is not None or bool(facts["unknown"])
        if answer.get("site") == "unknown":  # right: no site named as loudest, and says it cannot be told
            return parsed, facts["most_audible"] is None and bool(facts["unknown"])
        return parsed, site == answer.get("site")
    if answer.get("question") == "murmur_where":
        return _murmur_where_correct(answer, facts)
    definite = {k: v for k, v in (answer.get("findings") or {}).items() if v in ("yes", "no")}
    parsed = bool(facts["mentions"] or facts["unknown"])
    if not definite:
        return parsed, bool(facts["unknown"]) and not any(v in ("yes", "no") for v in facts["findings"].values())
    return parsed, all(stated(facts, k) == v for k, v in definite.items())


def _murmur_where_correct(answer: Mapping[str, Any], facts: Mapping[str, Any]) -> tuple[bool, bool]:
    """(parsed, correct) for "Is there a murmur, and where is it loudest?": both parts must be right.

    Murmur "no": a no (leading or stated) and no site named as loudest. "yes": a yes and the
    labelled loudest site (or, when that is unknown, a statement that it cannot be told).
    "unknown": an abstention without a yes or no."""
    murmur, site = (answer.get("findings") or {}).get("murmur"), answer.get("site")
    said = facts["label"] if facts["label"] in ("yes", "no") else stated(facts, "murmur")
    parsed = said is not None or bool(facts["unknown"])
    if murmur == "unknown":
        return parsed, bool(facts["unknown"]) and said not in ("yes", "no", "conflicting")
    if said != murmur:
        return parsed, False
    named = facts["most_audible"] or facts["site"]
    if murmur == "no":
        return parsed, facts["most_audible"] is None
    if site in (None, "unknown"):
        return parsed, facts["most_audible"] is None and bool(facts["unknown"])
    return parsed, named == site


def _score_location(rows, facts, yes_probs):
    flags, right = [], []
    for r, f in zip(rows, facts):
        parsed, ok = _location_correct(r["answer"], f)
        flags.append({"parsed": parsed, "accuracy": parsed and ok, "question": r["answer"].get("question")})
        right.append(float(parsed and ok))
    return flags, [Metric("accuracy", stats.mean_value, (np.zeros(len(right)), np.array(right)))]


SCORERS = {
    "binary": _score_binary, "detection": _score_detection, "reporting": _score_reporting, "reasoning": _score_reasoning,
    "differential": _score_differential, "comparison": _score_comparison, "location": _score_location,
}


def score_task(task: str, rows: Sequence[Mapping[str, Any]], texts: Sequence[str], yes_probs: Sequence[float | None] | None = None) -> TaskScores:
    """Parse and score the responses `texts` to `rows` (all of one task): per-row flags and metrics."""
    if task in ECG_TASKS:  # ECGBench's tasks: their own vocabulary and parser (evaluate/ecg_metrics.py)
        from clinlm.evaluate.ecg_metrics import score_ecg_task

        return score_ecg_task(task, rows, texts, yes_probs)
    if task not in SCORERS:
        raise ValueError(f"unknown task {task!r}; the evaluator scores {', '.join(SCORERS)}")
    facts = [parse(t, r["answer"]) for r, t in zip(rows, texts)]
    flags, metrics = SCORERS[task](rows, facts, yes_probs)
    consistent, contradiction = [], []
    for r, t, f, fl in zip(rows, texts, facts, flags):
        problems = F.check_consistency(t or "", dict(r["answer"]), task)
        fl["abstains"] = abstains(f)
        if fl["abstains"] and labels_decide(r["answer"], task):
            problems = problems + ["says it cannot be determined, but the labels decide"]
        fl["problems"] = problems
        fl["contradictions"] = contradicts(f, r["answer"], task)
        consistent.append(float(fl["parsed"] and not problems))
        contradiction.append(float(bool(fl["contradictions"])))
    zeros = np.zeros(len(rows))
    headline = [m for m in metrics if m.name == HEADLINE[task]]
    rest = [m for m in metrics if m.name != HEADLINE[task]]
    common = [
        Metric("fact_consistency", stats.mean_value, (zeros, np.array(consistent))),
        Metric("contradiction_rate", stats.mean_value, (zeros, np.array(contradiction))),
        Metric("unparseable_rate", stats.mean_value, (zeros, np.array([0.0 if fl["parsed"] else 1.0 for fl in flags]))),
    ]
    if task == "reasoning":  # fact consistency is reasoning's headline: do not list it twice
        headline, common = [common[0]], common[1:]
    return TaskScores(task, facts, flags, headline + rest + common)


def _objects(items: Sequence[Any]) -> np.ndarray:
    """A 1-d object array (np.asarray would try to broadcast sequences of sets or tuples)."""
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out
