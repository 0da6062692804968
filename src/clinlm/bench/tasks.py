"""The seven task categories: which questions a record's labels can answer, as `answer` dicts.

Each task is a function `labels -> list[answer]` (comparison: two recordings' labels), where
`labels` is `bench.labels.record_labels(record)` and each answer follows the schema in
`bench.facts`. `make_row` turns one answer into an instruction row with its question and
response (phrasings in `bench.templates`). How many rows a record gives (kept small: the
quickstart trains on this on a CPU):

- binary: one per labelled finding of the modality (heart: murmur, abnormal; lung: crackle,
  wheeze, rhonchi and stridor where annotated, abnormal; cough: covid), plus at most one
  "cannot be determined" row for an unknown primary finding (murmur; crackle/wheeze; covid);
- detection, reporting, reasoning, differential: one each (heart and lung; cough: reporting);
- location: one "what is heard at this site" row when the site is known, plus a "where is the
  murmur loudest" row and a two-part "is there a murmur, and where is it loudest?" row on the
  recording made at the most audible site (the two-part one also on some murmur-free and
  unknown-murmur recordings, where its answer is "no" or "cannot be determined");
- comparison: one per chosen pair of recordings of the same patient (`build.py` picks at most
  two pairs per patient).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Callable

from clinlm.bench import knowledge
from clinlm.bench.templates import QUESTIONS, RESPONSES, frame, site_phrase

Labels = dict[str, Any]
Answer = dict[str, Any]

FINDINGS_BY_MODALITY = {
    "heart": ("murmur", "abnormal"),
    "lung": ("crackle", "wheeze", "rhonchi", "stridor", "abnormal"),
    "cough": ("covid", "wheeze", "abnormal"),
}
PRIMARY = {"heart": ("murmur",), "lung": ("crackle", "wheeze"), "cough": ("covid",)}
TASKS_BY_MODALITY = {
    "heart": ("binary", "detection", "reporting", "reasoning", "differential", "comparison", "location"),
    "lung": ("binary", "detection", "reporting", "reasoning", "differential", "comparison", "location"),
    "cough": ("binary", "reporting"),
}
ADVENTITIOUS = ("crackle", "wheeze", "rhonchi", "stridor")


def row_rng(seed: int, *keys: Any) -> random.Random:
    """A Random seeded from (seed, keys): the same row gets the same text in any process."""
    digest = hashlib.blake2b("\x1f".join(map(str, (seed, *keys))).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


# ------------------------------------------------------------------------------- the findings

def sound_findings(lab: Labels) -> dict[str, str]:
    """The sounds a record's labels state, as {finding or event type: label} (used by several tasks)."""
    if lab["modality"] == "heart":
        m = lab.get("murmur", "unknown")
        if m != "yes":
            return {"murmur": m}
        phases = {f"{ph} murmur": ("yes" if lab.get(ph) else "no") for ph in ("systolic", "diastolic")}
        return phases if "yes" in phases.values() else {"murmur": "yes"}
    return {t: lab[t] for t in ADVENTITIOUS if t in lab}


def _descriptors(lab: Labels) -> dict[str, Any]:
    return {ph: lab.get(ph) for ph in ("systolic", "diastolic") if lab.get(ph)}


# ----------------------------------------------------------------------------------- the tasks

def binary(lab: Labels) -> list[Answer]:
    out, abstained = [], False
    for f in FINDINGS_BY_MODALITY.get(lab["modality"], ()):
        label = lab.get(f)
        if label in ("yes", "no"):
            out.append({"finding": f, "label": label})
        elif label == "unknown" and f in PRIMARY[lab["modality"]] and not abstained:
            out.append({"finding": f, "label": "unknown"})
            abstained = True
    return out


def detection(lab: Labels) -> list[Answer]:
    mod = lab["modality"]
    present, absent, unknown, timing = [], [], [], {}
    if mod == "heart":
        m = lab.get("murmur", "unknown")
        if m == "yes":
            phases = [ph for ph in ("systolic", "diastolic") if lab.get(ph)]
            if not phases:
                present, unknown = ["murmur"], ["systolic murmur", "diastolic murmur"]
                timing["murmur"] = "unknown"
            for ph in ("systolic", "diastolic"):
                if ph in phases:
                    present.append(f"{ph} murmur")
                    timing[f"{ph} murmur"] = lab[ph].get("timing", "unknown")
                elif phases:
                    absent.append(f"{ph} murmur")
        elif m == "no":
            absent = ["systolic murmur", "diastolic murmur"]
        else:
            unknown = ["murmur", "systolic murmur", "diastolic murmur"]
        events = []
    elif mod == "lung":
        for t in ADVENTITIOUS:
            {"yes": present, "no": absent}.get(lab.get(t, "unknown"), unknown).append(t)
        events = lab.get("events", [])
    else:
        return []
    return [{"present": present, "absent": absent, "unknown": unknown, "events": events, "timing": timing,
             "modality": mod, "n_cycles": lab.get("n_cycles")}]


def reporting(lab: Labels) -> list[Answer]:
    mod = lab["modality"]
    ans: Answer = {"modality": mod, "site": lab.get("site") or "unknown", "abnormal": lab.get("abnormal", "unknown"),
                   "diagnosis": list(lab.get("diagnosis", []))}
    if mod == "heart":
        hr = lab.get("heart_rate_bpm")
        ans.update({"heart_rate_bpm": hr if isinstance(hr, int) else "unknown", "murmur": lab.get("murmur", "unknown"),
                    "systolic": lab.get("systolic"), "diastolic": lab.get("diastolic")})
        ans["most_audible"] = (lab.get("most_audible") or "unknown") if ans["murmur"] == "yes" else None
    elif mod == "lung":
        ans.update({t: lab[t] for t in ADVENTITIOUS if t in lab})
    elif mod == "cough":
        ans["covid"] = lab.get("covid", "unknown")
    else:
        return []
    return [ans]


def reasoning(lab: Labels) -> list[Answer]:
    findings = sound_findings(lab)
    dx = [d for d in lab.get("diagnosis", []) if d != "healthy"]
    base = {"findings": findings, "diagnosis": list(lab.get("diagnosis", [])), "site": lab.get("site") or "unknown",
            **_descriptors(lab)}
    known = any(v in ("yes", "no") for v in findings.values())
    if dx and known:
        return [{**base, "question": "diagnosis", "conclusion": dx[0], "supported": knowledge.supports(lab, dx[0])}]
    if lab.get("abnormal") in ("yes", "no") and known:
        return [{**base, "question": "abnormal", "conclusion": lab["abnormal"], "supported": True}]
    if lab["modality"] == "heart" and lab.get("murmur") in ("yes", "no"):
        return [{**base, "question": "murmur", "conclusion": lab["murmur"], "supported": True}]
    return [{**base, "question": "unknown", "conclusion": "unknown", "supported": False}]


def differential(lab: Labels) -> list[Answer]:
    cands = knowledge.candidates(lab)
    labelled = [d for d in lab.get("diagnosis", []) if d in cands]
    return [{"candidates": cands, "labelled": labelled, "findings": sound_findings(lab)}]


def location(lab: Labels) -> list[Answer]:
    site = lab.get("site")
    if not site:
        return []
    out = [{"question": "at_site", "site": site, "sites": [site], "findings": sound_findings(lab)}]
    if lab["modality"] == "heart" and lab.get("patient_murmur") == "present" and lab.get("murmur") == "yes":
        ma, sites = lab.get("most_audible"), lab.get("murmur_sites", [])
        if ma == site or (ma is None and sites and sites[0] == site):
            out.append({"question": "most_audible", "site": ma or "unknown", "sites": list(sites),
                        "findings": {"murmur": "yes"}})
            out.append({"question": "murmur_where", "site": ma or "unknown", "sites": list(sites),
                        "findings": {"murmur": "yes"}})
    if lab["modality"] == "heart" and _asks_murmur_where(lab):
        out.append({"question": "murmur_where", "site": None, "sites": [], "findings": {"murmur": lab.get("murmur", "unknown")}})
    return out


def _asks_murmur_where(lab: Labels) -> bool:
    """The two-part question ("Is there a murmur, and where is it loudest?") without a murmur to place.

    Asked of every recording of a patient whose murmur is "Unknown" (too noisy to call: few such
    patients, and the answer is an abstention the model must learn to give), and of about one
    recording in four of a patient without a murmur (a deterministic share by record id, so the
    bench stays small and the same in every process). A recording without a murmur of a patient who
    has one elsewhere is not asked: its "where" has a patient-level answer this recording cannot
    support."""
    if lab.get("patient_murmur") == "unknown" and lab.get("murmur", "unknown") == "unknown":
        return True
    if lab.get("patient_murmur") == "absent" and lab.get("murmur") == "no":
        return row_rng(0, lab["record_id"], "murmur_where").random() < 0.25
    return False


def comparison(a: Labels, b: Labels, rng: random.Random) -> list[Answer]:
    """One comparison of two recordings of the same patient (a first, b second)."""
    if a["modality"] != b["modality"] or a["modality"] not in ("heart", "lung"):
        return []
    options = ["murmur"] if a["modality"] == "heart" else [t for t in ("crackle", "wheeze") if t in a and t in b]
    if not options:
        return []
    differing = [f for f in options if a.get(f) != b.get(f)]
    f = rng.choice(differing or options)
    la, lb = a.get(f, "unknown"), b.get(f, "unknown")
    sites = [a.get("site") or "unknown", b.get("site") or "unknown"]
    ma = a.get("most_audible")
    if (f == "murmur" and la == lb == "yes" and ma and ma in sites and sites[0] != sites[1] and rng.random() < 0.5):
        return [{"question": "louder", "finding": f, "first": la, "second": lb,
                 "answer": "first" if ma == sites[0] else "second", "sites": sites}]
    if "unknown" in (la, lb):
        choice = "unknown"
    else:
        choice = {("yes", "yes"): "both", ("no", "no"): "neither", ("yes", "no"): "first", ("no", "yes"): "second"}[(la, lb)]
    return [{"question": "which", "finding": f, "first": la, "second": lb, "answer": choice, "sites": sites}]


SINGLE_TASKS: dict[str, Callable[[Labels], list[Answer]]] = {
    "binary": binary, "detection": detection, "reporting": reporting, "reasoning": reasoning,
    "differential": differential, "location": location,
}


# ------------------------------------------------------------------------------------- rows

def _context(task: str, answer: Answer, labs: list[Labels]) -> str:
    """Facts given to the model in the question (never the label being asked about)."""
    if task == "reporting" and answer.get("site") not in (None, "unknown"):
        return f"Recorded at {site_phrase(answer['site'])}."
    if task == "comparison" and all(s not in (None, "unknown") for s in answer["sites"]):
        s1, s2 = answer["sites"]
        return f"The first was recorded at {site_phrase(s1)}, the second at {site_phrase(s2)}."
    return ""


def make_row(task: str, answer: Answer, labs: list[Labels], seed: int, index: int = 0) -> dict[str, Any]:
    """The instruction row for one answer (labs: the record's labels, two for comparison)."""
    ids = [lab["record_id"] for lab in labs]
    rng = row_rng(seed, *ids, task, index)
    question = QUESTIONS[task](answer, rng)
    context = _context(task, answer, labs) if rng.random() < 0.8 or task == "comparison" else ""
    prompt = frame(rng, labs[0]["modality"], question, n_audio=len(labs), context=context)
    response = RESPONSES[task](answer, row_rng(seed, *ids, task, index, "response"))
    first = labs[0]
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        "audios": [lab["media"][0] for lab in labs],
        "task": task,
        "record_ids": ids,
        "patient_id": first["patient_id"],
        "dataset": first["dataset"],
        "split": first["split"],
        "answer": answer,
    }


def knows_anything(lab: Labels) -> bool:
    """Does any label of the record say something (a finding, a verdict, a diagnosis)?"""
    keys = FINDINGS_BY_MODALITY.get(lab["modality"], ())
    return bool(lab.get("diagnosis")) or any(lab.get(k) in ("yes", "no") for k in keys) or \
        any(v in ("yes", "no") for v in sound_findings(lab).values())


def record_rows(lab: Labels, tasks: tuple[str, ...], seed: int) -> list[tuple[int, dict[str, Any]]]:
    """All single-record instruction rows of one record for the requested tasks, as (index, row).

    `index` numbers the rows of one (record, task); it seeds the phrasing with the record ids.
    """
    rows = []
    allowed = TASKS_BY_MODALITY.get(lab["modality"], ())
    if not knows_anything(lab):  # one abstention row and a report saying so, not a page of them
        allowed = tuple(t for t in allowed if t in ("binary", "reporting"))
    for task in tasks:
        if task not in allowed or task not in SINGLE_TASKS:
            continue
        for i, answer in enumerate(SINGLE_TASKS[task](lab)):
            rows.append((i, make_row(task, answer, [lab], seed, i)))
    return rows
