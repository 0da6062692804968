"""The majority baseline: the most frequent answer per task, question type and dataset, as text.

For every evaluated row the baseline answers what was most often the answer to the same kind of
question in the reference rows: the training split when one is given (`train.jsonl`), otherwise
the evaluated rows themselves (a simple majority over the test rows, with no leave-one-patient-out
correction: slightly optimistic, and the report says which was used).

"The same kind of question" is the key (task, question type, dataset), falling back to (task,
question type) when a dataset has no reference rows (an out-of-distribution set). Question types:
binary: the finding; reporting: the modality; reasoning: the question; comparison: question and
finding; location: the question; detection and differential: none. The majority answer is
field-wise for reports (each field its own mode; murmur details only when the mode says murmur)
and the most frequent whole answer for the rest.

The answer is written as plain text by `render`, in sentences the bench's fact parser reads back,
so the baseline is scored by exactly the same code as the model (`tests/evaluate` checks that a
rendered answer scores as correct on a row with that answer). For binary rows the baseline's
P(yes) is the reference share of "yes" among yes/no answers of its key, so its AUROC is that of
question-type priors alone.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping, Sequence

from clinlm.bench import facts as F
from clinlm.bench.ecg_facts import ECG_TASKS
from clinlm.bench.ecg_facts import LETTERS as F_LETTERS

UNKNOWN_TEXT = "This cannot be determined from the available information."
_NAMES = {  # finding -> (noun phrase, verb) for sentences the parser reads
    "murmur": ("a murmur", "is"), "systolic murmur": ("a systolic murmur", "is"), "diastolic murmur": ("a diastolic murmur", "is"),
    "crackle": ("crackles", "are"), "wheeze": ("wheezes", "are"), "rhonchi": ("rhonchi", "are"), "stridor": ("stridor", "is"),
}


def question_type(row: Mapping[str, Any]) -> str:
    a, task = row["answer"], row["task"]
    if task == "binary":
        return str(a.get("finding"))
    if task == "reporting":
        return str(a.get("modality"))
    if task in ("reasoning", "location"):
        return str(a.get("question"))
    if task == "comparison":
        return f"{a.get('question')}:{a.get('finding')}"
    if task == "ecg_closed":
        return str(a.get("finding"))
    if task == "ecg_mcq":
        return str(a.get("question"))
    if task == "ecg_conversation":
        turn = (a.get("turns") or [{}])[-1]
        return str(turn.get("finding") or turn.get("kind"))
    return ""


# ------------------------------------------------------------------------------------ majority


def _mode(values: Iterable[Any]) -> Any:
    """Most frequent value; ties broken by first occurrence (Counter keeps insertion order)."""
    counts = Counter(json.dumps(v, sort_keys=True) for v in values)
    return json.loads(counts.most_common(1)[0][0]) if counts else None


def _fieldwise(answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    keys = dict.fromkeys(k for a in answers for k in a)
    return {k: _mode(a[k] for a in answers if k in a) for k in keys}


def _majority_answer(task: str, answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One answer in the task's schema, from the answers of one key."""
    first = dict(answers[0])
    if task == "binary":
        return {"finding": first["finding"], "label": _mode(a["label"] for a in answers)}
    if task == "detection":
        present, absent = _mode((sorted(a.get("present") or []), sorted(a.get("absent") or [])) for a in answers)
        return {"present": present, "absent": absent, "unknown": [], "events": [], "timing": {}}
    if task == "reporting":
        report = _fieldwise(answers)
        if report.get("murmur") != "yes":  # keep the report coherent: no murmur, no murmur details
            report.update({"systolic": None, "diastolic": None, "most_audible": None})
        return report
    if task == "reasoning":
        return {"question": first.get("question"), "conclusion": _mode(a.get("conclusion") for a in answers)}
    if task == "differential":
        return {"candidates": _mode(list(a.get("candidates") or []) for a in answers)}
    if task == "comparison":
        return {"question": first.get("question"), "finding": first.get("finding"), "answer": _mode(a.get("answer") for a in answers)}
    if task == "location":
        if first.get("question") == "most_audible":
            return {"question": "most_audible", "site": _mode(a.get("site") for a in answers)}
        if first.get("question") == "murmur_where":  # the two parts together, so a "no" never gets a site
            murmur, site = _mode(((a.get("findings") or {}).get("murmur"), a.get("site")) for a in answers)
            return {"question": "murmur_where", "site": site, "findings": {"murmur": murmur}}
        # whole findings dicts: a field-wise mode could pair "no murmur" with "a systolic murmur"
        return {"question": "at_site", "findings": _mode(a.get("findings") or {} for a in answers)}
    if task == "ecg_closed":
        return {"finding": first["finding"], "label": _mode(a["label"] for a in answers), "findings": {}}
    if task == "ecg_report":  # whole findings dicts, so the rhythm stays one rhythm
        return {"findings": _mode(a.get("findings") or {} for a in answers), "other_statements": []}
    if task == "ecg_mcq":  # how often each finding was the right option (the row's options decide the letter)
        return {"question": first.get("question"), "right": dict(Counter(a["finding"] for a in answers))}
    if task == "ecg_conversation":
        turn = dict(first["turns"][-1])
        if turn["kind"] == "closed":
            turn["label"] = _mode(a["turns"][-1].get("label") for a in answers)
        return {"findings": _mode(a.get("findings") or {} for a in answers), "turns": [turn]}
    raise ValueError(f"unknown task {task!r}")


def fit_majority(reference_rows: Sequence[Mapping[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """{(task, question type, dataset) and (task, question type): majority answer (+ "p_yes" for binary)}."""
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for row in reference_rows:
        qtype = question_type(row)
        groups[(row["task"], qtype, str(row.get("dataset")))].append(row["answer"])
        groups[(row["task"], qtype)].append(row["answer"])
    table = {}
    for key, answers in groups.items():
        answer = _majority_answer(key[0], answers)
        if key[0] in ("binary", "ecg_closed"):
            definite = [a["label"] for a in answers if a["label"] in ("yes", "no")]
            answer["p_yes"] = definite.count("yes") / len(definite) if definite else 0.5
        table[key] = answer
    return table


def majority_predictions(rows: Sequence[Mapping[str, Any]], reference_rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[float | None]]:
    """The majority baseline's response (text) and P(yes) (binary rows; None otherwise) for each row."""
    table = fit_majority(reference_rows)
    texts, yes_probs = [], []
    for row in rows:
        qtype = question_type(row)
        answer = table.get((row["task"], qtype, str(row.get("dataset")))) or table.get((row["task"], qtype))
        if answer is None:  # a question type never seen in the reference rows: the baseline abstains
            texts.append(UNKNOWN_TEXT)
            yes_probs.append(0.5 if row["task"] == "binary" else None)
            continue
        if row["task"] == "ecg_mcq":  # the row's option that was most often right in the reference rows
            options = list(row["answer"]["options"])
            best = max(options, key=lambda k: (answer["right"].get(k, 0), -options.index(k)))
            answer = {"correct": F_LETTERS[options.index(best)], "finding": best}
        texts.append(render(row["task"], answer))
        yes_probs.append(answer.get("p_yes") if row["task"] in ("binary", "ecg_closed") else None)
    return texts, yes_probs


# ------------------------------------------------------------------------------------ render


def _finding_sentence(finding: str, label: str) -> str:
    if finding == "abnormal":
        return {"yes": "The recording is abnormal.", "no": "The recording is normal."}.get(label, "Whether the recording is abnormal cannot be determined.")
    if finding == "covid":
        return {"yes": "The recording suggests COVID-19.", "no": "There is no sign of COVID-19."}.get(label, "Whether there is COVID-19 cannot be determined.")
    noun, verb = _NAMES.get(finding, (finding, "is"))
    if label == "yes":
        return f"{noun[0].upper()}{noun[1:]} {verb} present."
    if label == "no":
        bare = noun.removeprefix("a ")
        return f"No {bare} {verb} heard."
    return f"Whether {noun} {verb} present cannot be determined."


def _site_name(site: str) -> str:
    return F.SITE_NAMES.get(site, site)


def render(task: str, answer: Mapping[str, Any]) -> str:
    """Plain sentences stating `answer` (in the task's schema) that `extract_facts` reads back."""
    if task in ECG_TASKS:  # the bench's own ECG phrasings, with a fixed choice among them
        return _render_ecg(task, answer)
    if task == "binary":
        label = answer.get("label")
        if label not in ("yes", "no"):
            return UNKNOWN_TEXT
        return f"{label.capitalize()}. {_finding_sentence(answer['finding'], label)}"
    if task == "detection":
        present, absent = list(answer.get("present") or []), list(answer.get("absent") or [])
        if not present and not absent:
            return UNKNOWN_TEXT
        return " ".join([_finding_sentence(t, "yes") for t in present] + [_finding_sentence(t, "no") for t in absent])
    if task == "reporting":
        return _render_report(answer)
    if task == "reasoning":
        conclusion, question = answer.get("conclusion"), answer.get("question")
        if conclusion in (None, "unknown"):
            return UNKNOWN_TEXT
        if conclusion in ("yes", "no"):
            return _finding_sentence(str(question), conclusion)
        return f"The findings are most consistent with {conclusion}."
    if task == "differential":
        cands = list(answer.get("candidates") or [])
        if not cands:
            return UNKNOWN_TEXT
        return "Ranked differential: " + "; ".join(f"{i}. {d}" for i, d in enumerate(cands, 1)) + "."
    if task == "comparison":
        choice = answer.get("answer")
        if choice not in ("first", "second", "both", "neither"):
            return UNKNOWN_TEXT
        if answer.get("question") == "louder" and choice in ("first", "second"):
            return f"The murmur is louder at the {choice} recording's site."
        return {"first": "The first recording.", "second": "The second recording.", "both": "Both recordings.", "neither": "Neither recording."}[choice]
    if task == "location":
        if answer.get("question") == "most_audible":
            site = answer.get("site")
            return UNKNOWN_TEXT if site in (None, "unknown") else f"The murmur is most audible at the {_site_name(site)}."
        if answer.get("question") == "murmur_where":
            murmur, site = (answer.get("findings") or {}).get("murmur"), answer.get("site")
            if murmur == "no":
                return "No murmur."
            if murmur != "yes":
                return UNKNOWN_TEXT
            return f"Yes, a murmur, most audible at the {_site_name(site)}." if site not in (None, "unknown") else \
                "Yes, a murmur; the point where it is loudest cannot be determined from the available information."
        definite = {k: v for k, v in (answer.get("findings") or {}).items() if v in ("yes", "no")}
        return " ".join(_finding_sentence(k, v) for k, v in definite.items()) if definite else UNKNOWN_TEXT
    raise ValueError(f"unknown task {task!r}")


def _render_ecg(task: str, a: Mapping[str, Any]) -> str:
    import random

    from clinlm.bench import ecg_templates as T

    rng = random.Random(0)
    if task == "ecg_closed":
        return T.closed_response(a["finding"], a["label"], rng)
    if task == "ecg_report":
        return T.report_response(a, rng)
    if task == "ecg_mcq":
        return T.mcq_response(a, rng)
    return T.turn_response(a["turns"][-1], a.get("findings") or {}, rng)


def _render_report(a: Mapping[str, Any]) -> str:
    parts = []
    if a.get("site") not in (None, "unknown"):
        parts.append(f"Recorded at the {_site_name(a['site'])}.")
    if isinstance(a.get("heart_rate_bpm"), (int, float)) and not isinstance(a.get("heart_rate_bpm"), bool):
        parts.append(f"Heart rate: {a['heart_rate_bpm']:g} bpm.")
    if a.get("murmur") in ("yes", "no"):
        phases = [p for p in F.PHASES if isinstance(a.get(p), dict)]
        if a["murmur"] == "no" or not phases:
            parts.append(_finding_sentence("murmur", a["murmur"]))
        for phase in phases:
            parts.append(_finding_sentence(f"{phase} murmur", "yes"))
            spec = a[phase]
            words = []
            if spec.get("timing") not in (None, "unknown"):
                words.append(f"{spec['timing']}")
            if spec.get("shape") not in (None, "unknown"):
                words.append(f"{spec['shape']}")
            if spec.get("grade") not in (None, "unknown"):
                words.append(f"grade {spec['grade']}/{F.MAX_GRADE[phase]}")
            if spec.get("pitch") not in (None, "unknown"):
                words.append(f"{spec['pitch']}-pitched")
            if spec.get("quality") not in (None, "unknown"):
                words.append(f"{spec['quality']}")
            if words:
                parts.append(f"The {phase} murmur is " + ", ".join(words) + ".")
        if a.get("most_audible") not in (None, "unknown"):
            parts.append(f"It is most audible at the {_site_name(a['most_audible'])}.")
    for finding in F.ADVENTITIOUS + ("covid",):
        if a.get(finding) in ("yes", "no"):
            parts.append(_finding_sentence(finding, a[finding]))
    if a.get("abnormal") in ("yes", "no"):
        parts.append(_finding_sentence("abnormal", a["abnormal"]))
    dx = [d for d in a.get("diagnosis") or [] if d]
    if dx:
        parts.append("Diagnosis: " + ", ".join(dx) + ".")
    return " ".join(parts) if parts else UNKNOWN_TEXT
