"""ECG vocabulary, the `answer` schema of the four ECG tasks, and the free-text parser for ECG answers.

The ECG counterpart of `bench.facts` (whose label values, "cannot be determined" phrases,
clause splitting and negation rules it reuses): the builder writes, beside every ECG response,
the structured truth it was written from (`row["answer"]`); `check_ecg_consistency` verifies
each response against it before it is written, and the evaluator parses a model's answer back
with `extract_ecg_facts`.

Findings (`ECG_FINDINGS`, key -> group, name, spellings) and when the labels decide them
(`bench.ecg_tasks.ecg_labels` derives them from a Record):
- class (PTB-XL's five diagnostic superclasses): norm, mi, sttc, cd, hyp; yes/no when the record
  has at least one superclass, otherwise unknown;
- rhythm: sr (sinus rhythm), af, afl, stach, sbrad; from `Record.rhythm` and rhythm statements,
  one rhythm per record, so the others are "no"; unknown when no rhythm is labelled;
- statement: pvc, lbbb, rbbb, ste (ST elevation), std (ST depression); yes/no for datasets that
  list every statement of an ECG (PTB-XL SCP codes, PhysioNet 2021 SNOMED codes), else unknown.
A finding named in a record's statements is always "yes".

The `answer` of each task
-------------------------
ecg_closed        {"finding": F, "label": L, "findings": {F: L}}  (the question is about F; "findings"
                  is the record's whole truth, so a response may also state true facts)
ecg_report        {"findings": {F: L}, "other_statements": [text...]} (statements outside the vocabulary,
                  verbatim from the dataset)
ecg_mcq           {"question": "rhythm" | "class" | "finding", "options": [F, F, F, F],
                   "correct": "A".."D", "finding": F, "findings": {F: L}}; distractors are findings
                  labelled "no" (never unknown ones)
ecg_conversation  {"findings": {F: L}, "turns": [turn, ...]} one per assistant turn; a turn is
                  {"kind": "rhythm"} (the rhythm findings) or {"kind": "closed", "finding": F,
                  "label": L}; the final turn is what the evaluator scores

What `extract_ecg_facts` returns: {"label": leading yes/no/unknown or None, "unknown": bool,
"mentions": {F: [L...]}, "findings": {F: first definite L}, "choice": "A".."D" or None}.
"""

from __future__ import annotations

import re
from typing import Any

from clinlm.bench.facts import LABELS, _LEAD_RE, _UNKNOWN_RE, _clauses, _lower, _polarity

ECG_TASKS = ("ecg_closed", "ecg_report", "ecg_mcq", "ecg_conversation")
GROUPS = ("class", "rhythm", "statement")
LETTERS = ("A", "B", "C", "D")

# key: (group, name used in responses, regex of its spellings in lower-case text)
ECG_FINDINGS: dict[str, tuple[str, str, str]] = {
    "norm": ("class", "normal ECG", r"normal ecg|normal electrocardiogram"),
    "mi": ("class", "myocardial infarction", r"myocardial infarctions?"),
    "sttc": ("class", "ST/T change", r"st/t[- ]changes?|st-t changes?"),
    "cd": ("class", "conduction disturbance", r"conduction disturbances?"),
    "hyp": ("class", "hypertrophy", r"hypertroph(?:y|ies)"),
    "sr": ("rhythm", "sinus rhythm", r"sinus rhythm"),
    "af": ("rhythm", "atrial fibrillation", r"atrial fibrillation"),
    "afl": ("rhythm", "atrial flutter", r"atrial flutter"),
    "stach": ("rhythm", "sinus tachycardia", r"sinus tachycardia"),
    "sbrad": ("rhythm", "sinus bradycardia", r"sinus bradycardia"),
    "pvc": ("statement", "premature ventricular complexes",
            r"(?:premature ventricular|ventricular premature) (?:complex(?:es)?|contractions?|beats?)"),
    "lbbb": ("statement", "left bundle branch block", r"(?<!incomplete )(?:complete )?(?<!incomplete )left bundle branch block"),
    "rbbb": ("statement", "right bundle branch block", r"(?<!incomplete )(?:complete )?(?<!incomplete )right bundle branch block"),
    "ste": ("statement", "ST elevation", r"st(?:[- ]segment)? elevations?"),
    "std": ("statement", "ST depression", r"st(?:[- ]segment)? depressions?"),
}
SUPERCLASS_KEYS = {"NORM": "norm", "MI": "mi", "STTC": "sttc", "CD": "cd", "HYP": "hyp"}
RHYTHM_KEYS = {"normal": "sr", "af": "af", "afl": "afl", "sinus tachycardia": "stach", "sinus bradycardia": "sbrad"}
SIMULATOR_RHYTHMS = ("sr", "af", "stach", "sbrad")  # the rhythm classes the ECG simulator writes
SUPERCLASS_FINDINGS = tuple(SUPERCLASS_KEYS.values())


def finding_name(key: str) -> str:
    return ECG_FINDINGS[key][1]


def group_of(key: str) -> str:
    return ECG_FINDINGS[key][0]


def in_group(group: str) -> list[str]:
    return [k for k, v in ECG_FINDINGS.items() if v[0] == group]


# Word boundaries on both sides: "complete right bundle branch block" must not match inside
# "incomplete right bundle branch block".
_TERM_RE = re.compile("|".join(rf"(?P<{k}>\b(?:{v[2]})\b)" for k, v in ECG_FINDINGS.items()))
_FINDING_RES = {k: re.compile(rf"\b(?:{v[2]})\b") for k, v in ECG_FINDINGS.items()}
# "B", "B.", "(B)", "Answer: B", "The answer is B", "option B" at the start of the response.
_CHOICE_RE = re.compile(r"^\W*(?:(?:the )?(?:correct )?(?:answer|option|choice)(?: is)?\W*)?\(?([abcd])\b(?:[).:,]|\s|$)")


def findings_in(text: str) -> list[str]:
    """Vocabulary findings named in a statement or sentence (any polarity), in vocabulary order."""
    low = _lower(text)
    return [k for k, rx in _FINDING_RES.items() if rx.search(low)]


def extract_ecg_facts(text: str) -> dict[str, Any]:
    """Parse a free-text ECG answer (see the module docstring for the keys)."""
    text = text or ""
    low = _lower(text)
    facts: dict[str, Any] = {"label": None, "unknown": bool(_UNKNOWN_RE.search(low)), "mentions": {}, "findings": {}, "choice": None}
    lead = _LEAD_RE.match(low)
    if lead:
        facts["label"] = "yes" if lead.group(1) in ("yes", "present", "positive") else "no"
    elif facts["unknown"]:
        facts["label"] = "unknown"
    choice = _CHOICE_RE.match(low)
    if choice:
        facts["choice"] = choice.group(1).upper()
    for _, clause in _clauses(low):
        abstains = facts["unknown"] and bool(_UNKNOWN_RE.search(clause))
        for m in _TERM_RE.finditer(clause):
            facts["mentions"].setdefault(m.lastgroup, []).append(_polarity(clause, m.start(), m.end(), abstains))
    for key, said in facts["mentions"].items():
        definite = [x for x in said if x != "unknown"]
        facts["findings"][key] = definite[0] if definite else "unknown"
    return facts


def _truth(answer: dict[str, Any], task: str, turn: dict[str, Any] | None = None) -> dict[str, str]:
    truth = dict(answer.get("findings") or {})
    if task == "ecg_closed":
        truth[answer["finding"]] = answer["label"]
    return truth


def _check_closed(facts: dict[str, Any], finding: str, label: str, problems: list[str]) -> None:
    stated = facts["findings"].get(finding)
    if label == "unknown":
        if not facts["unknown"]:
            problems.append(f"whether there is {finding_name(finding)} is unknown but the response does not say it cannot be determined")
        if facts["label"] in ("yes", "no"):
            problems.append(f"the label is unknown but the response answers {facts['label']}")
        return
    if facts["label"] not in (None, label) and not (facts["label"] == "unknown" and stated == label):
        problems.append(f"answers {facts['label']} but the label is {label}")
    if stated is None and facts["label"] is None:
        problems.append(f"does not state whether there is {finding_name(finding)}")


def _check_rhythm(facts: dict[str, Any], truth: dict[str, str], problems: list[str]) -> None:
    rhythms = [k for k in in_group("rhythm") if truth.get(k) == "yes"]
    said = [k for k in in_group("rhythm") if facts["findings"].get(k) == "yes"]
    if not rhythms:
        if not facts["unknown"]:
            problems.append("the rhythm is not labelled but the response does not say it cannot be determined")
    elif not set(rhythms) <= set(said):
        problems.append(f"does not name the labelled rhythm ({', '.join(finding_name(k) for k in rhythms)})")


def check_ecg_consistency(text: str, answer: dict[str, Any], task: str, turn: int = -1) -> list[str]:
    """Contradictions between an ECG response and the answer it should state (empty list = consistent).

    - every finding the response states present/absent must match its label (a finding the labels
      leave unknown, or do not mention, must not be stated either way);
    - the task's primary fact: the closed label, the multiple-choice letter, the rhythm, or the
      conversation turn's (`turn` indexes `answer["turns"]`, the last by default).
    """
    if task not in ECG_TASKS:
        raise ValueError(f"unknown ECG task {task!r}; choose one of {', '.join(ECG_TASKS)}")
    facts = extract_ecg_facts(text)
    truth = _truth(answer, task)
    problems: list[str] = []
    for finding, said_all in facts["mentions"].items():
        label = truth.get(finding)
        for said in dict.fromkeys(said_all):
            if said == "unknown":
                continue
            if label is None or label == "unknown":
                problems.append(f"states {finding_name(finding)} = {said} but it is {'not labelled' if label is None else 'unknown'}")
            elif said != label:
                problems.append(f"states {finding_name(finding)} = {said} but the label is {label}")
    if task == "ecg_closed":
        _check_closed(facts, answer["finding"], answer["label"], problems)
    elif task == "ecg_mcq":
        if facts["choice"] != answer["correct"]:
            problems.append(f"chooses {facts['choice']} but the answer is {answer['correct']}")
    elif task == "ecg_report":
        _check_rhythm(facts, truth, problems)
    elif task == "ecg_conversation":
        spec = answer["turns"][turn]
        if spec["kind"] == "closed":
            _check_closed(facts, spec["finding"], spec["label"], problems)
        else:
            _check_rhythm(facts, truth, problems)
    return list(dict.fromkeys(problems))


def labels_valid(findings: dict[str, str]) -> None:
    """Raise when a findings dict has an unknown key or value (a builder bug)."""
    for k, v in findings.items():
        if k not in ECG_FINDINGS or v not in LABELS:
            raise ValueError(f"bad ECG finding {k!r}={v!r}")
