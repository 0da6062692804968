"""Preference rows (DPO and mDPO): the same prompt with a chosen and a rejected response.

Format (TRL's conversational preference format, plus the media):
    {"prompt": [{"role": "user", "content": "<audio>..."}],
     "chosen": [{"role": "assistant", "content": "..."}],
     "rejected": [{"role": "assistant", "content": "..."}],
     "audios": [path, ...],                 # the media of the prompt
     "rejected_audios": [path | spec, ...],  # mDPO: the chosen answer is wrong for these media
     "rejection": {"text": kind, "audio": "mismatched" | "degraded" | "swapped"},
     "task", "record_ids", "patient_id", "dataset", "split", "answer"}  (as in instruction rows)

The rejected text is the same renderer as the chosen one (same phrasing seed, so the pair
differs in the facts, not in style) applied to a perturbed answer, and it is kept only when
`facts.check_consistency` finds it contradicts the true answer. Kinds:
- "contradiction": a labelled finding flipped (murmur present -> absent, yes -> no, ...);
- "hallucination": an extra finding, event or diagnosis that the labels do not give;
- "wrong_grade", "wrong_timing", "wrong_location", "wrong_time", "wrong_ranking": a wrong
  murmur grade or timing, site, event time, or candidate order;
- "overconfident": a definite answer where the truth is unknown.

`rejected_audios` holds, per audio of the prompt, either a path (another patient's recording of
the same modality and split whose labels differ: "mismatched"; for comparison rows the two
recordings in swapped order when their labels differ: "swapped") or a degradation spec of the
original file, `{"path": p, "degrade": name, ...}` ("degraded"; no audio file is written; the
trainer applies it). Specs, with units:
- {"degrade": "noise", "snr_db": float}: add white noise at this signal-to-noise ratio;
- {"degrade": "low_pass", "cutoff_hz": float}: keep only frequencies below the cutoff;
- {"degrade": "dropout", "fraction": float}: silence this fraction of the signal in 100 ms blocks;
- {"degrade": "time_crop", "keep_fraction": float}: keep one random segment of this fraction.
"""

from __future__ import annotations

import marshal
import random
from typing import Any, Callable

from clinlm.bench.facts import HEART_SITES, check_consistency
from clinlm.bench.tasks import sound_findings
from clinlm.bench.templates import RESPONSES

Answer = dict[str, Any]


def _copy(answer: Answer) -> Answer:
    """A deep copy of a plain JSON-like answer (marshal is much faster than a generic deep copy)."""
    return marshal.loads(marshal.dumps(answer))


DEGRADATIONS: list[dict[str, Any]] = [
    {"degrade": "noise", "snr_db": 0.0},
    {"degrade": "noise", "snr_db": -5.0},
    {"degrade": "low_pass", "cutoff_hz": 100.0},
    {"degrade": "dropout", "fraction": 0.5},
    {"degrade": "time_crop", "keep_fraction": 0.2},
]
_OTHER_DX = {"heart": ["aortic stenosis", "mitral regurgitation", "ventricular septal defect"],
             "lung": ["pneumonia", "asthma", "heart failure", "copd"]}
_FLIP = {"yes": "no", "no": "yes"}


def _flip_findings(findings: dict[str, str], rng: random.Random) -> list[tuple[dict[str, str], str]]:
    out = []
    known = [k for k, v in findings.items() if v in _FLIP and k != "abnormal"]
    if known:
        k = rng.choice(known)
        kind = "contradiction" if findings[k] == "yes" else "hallucination"
        out.append(({**findings, k: _FLIP[findings[k]]}, kind))
    unknown = [k for k, v in findings.items() if v == "unknown"]
    if unknown:
        k = rng.choice(unknown)
        out.append(({**findings, k: rng.choice(["yes", "no"])}, "overconfident"))
    return out


def _binary(a: Answer, rng: random.Random, modality: str) -> list[tuple[Answer, str]]:
    if a["label"] == "unknown":
        return [({**a, "label": rng.choice(["yes", "no"])}, "overconfident")]
    return [({**a, "label": _FLIP[a["label"]]}, "contradiction")]


def _detection(a: Answer, rng: random.Random, modality: str) -> list[tuple[Answer, str]]:
    out = []
    present, absent, unknown = a["present"], a["absent"], a["unknown"]
    if present:
        t = rng.choice(present)
        bad = _copy(a)
        bad["present"] = [x for x in present if x != t]
        bad["absent"] = absent + [t]
        bad["events"] = [e for e in a["events"] if e["type"] != t]
        bad["timing"].pop(t, None)
        out.append((bad, "contradiction"))
        evs = [e for e in a["events"] if e["type"] == t]
        if evs:
            shift = rng.choice([0.7, 1.3, -0.6])
            bad = _copy(a)
            bad["events"] = [({**e, "start_s": round(max(0.0, e["start_s"] + shift), 2),
                               "end_s": round(max(0.1, e["end_s"] + shift), 2)} if e["type"] == t else e) for e in a["events"]]
            out.append((bad, "wrong_time"))
        if a["timing"].get(t) not in (None, "unknown") and t in ("systolic murmur", "diastolic murmur"):
            bad = _copy(a)
            options = {"systolic murmur": ["early", "mid", "late", "holosystolic"], "diastolic murmur": ["early", "mid", "late"]}[t]
            bad["timing"][t] = rng.choice([o for o in options if o != a["timing"][t]])
            out.append((bad, "wrong_timing"))
    candidates = [t for t in absent + unknown if t != "murmur"]
    if candidates:
        t = rng.choice(candidates)
        bad = _copy(a)
        bad["present"] = present + [t]
        bad["absent"] = [x for x in absent if x != t]
        bad["unknown"] = [x for x in unknown if x != t]
        if "murmur" in t:
            bad["timing"][t] = "early"
            if "murmur" in bad["unknown"]:
                bad["unknown"].remove("murmur")
        else:
            end = max([e["end_s"] for e in a["events"]] + [4.0])
            start = round(rng.uniform(0.0, max(0.1, end - 1.0)), 2)
            bad["events"] = sorted(a["events"] + [{"type": t, "start_s": start, "end_s": round(start + 0.8, 2)}],
                                   key=lambda e: e["start_s"])
        out.append((bad, "hallucination" if t in absent else "overconfident"))
    if not present and not absent and unknown:
        bad = {**_copy(a), "absent": list(unknown), "unknown": []}
        out.append((bad, "overconfident"))
    return out


def _heart_murmur(rng: random.Random) -> dict[str, Any]:
    return {"timing": rng.choice(["holosystolic", "mid", "early"]), "shape": rng.choice(["plateau", "diamond"]),
            "grade": rng.choice([2, 3]), "pitch": "unknown", "quality": rng.choice(["harsh", "blowing"])}


def _reporting(a: Answer, rng: random.Random, modality: str) -> list[tuple[Answer, str]]:
    out = []
    if modality == "heart":
        m = a.get("murmur")
        if m == "yes":
            for ph, top in (("systolic", 6), ("diastolic", 4)):
                d = a.get(ph)
                if d and isinstance(d.get("grade"), int):
                    g = d["grade"] + 1 if d["grade"] < top else d["grade"] - 1
                    out.append(({**a, ph: {**d, "grade": g}}, "wrong_grade"))
                if d and d.get("timing") not in (None, "unknown"):
                    options = [t for t in ("early", "mid", "late") if t != d["timing"]]
                    out.append(({**a, ph: {**d, "timing": rng.choice(options)}}, "wrong_timing"))
            if a.get("most_audible") not in (None, "unknown"):
                other = rng.choice([s for s in HEART_SITES[:4] if s != a["most_audible"]])
                out.append(({**a, "most_audible": other}, "wrong_location"))
            out.append(({**a, "murmur": "no", "systolic": None, "diastolic": None, "most_audible": None}, "contradiction"))
        elif m == "no":
            out.append(({**a, "murmur": "yes", "systolic": _heart_murmur(rng), "most_audible": "unknown"}, "hallucination"))
        else:
            out.append(({**a, "murmur": "no"}, "overconfident"))
            out.append(({**a, "murmur": "yes", "systolic": _heart_murmur(rng), "most_audible": "unknown"}, "overconfident"))
    elif modality == "lung":
        sounds = {t: a[t] for t in ("crackle", "wheeze", "rhonchi", "stridor") if t in a}
        out += [({**a, **bad}, kind) for bad, kind in _flip_findings(sounds, rng)]
    elif modality == "cough":
        c = a.get("covid", "unknown")
        out.append(({**a, "covid": _FLIP[c]} if c in _FLIP else {**a, "covid": rng.choice(["yes", "no"])},
                    "contradiction" if c in _FLIP else "overconfident"))
    if modality in _OTHER_DX:
        extra = [d for d in _OTHER_DX[modality] if d not in a.get("diagnosis", [])]
        out.append(({**a, "diagnosis": a.get("diagnosis", []) + [rng.choice(extra)]}, "hallucination"))
    return out


def _reasoning(a: Answer, rng: random.Random, modality: str) -> list[tuple[Answer, str]]:
    out = []
    if a["conclusion"] == "unknown":
        dx = rng.choice(_OTHER_DX.get(modality, ["pneumonia"]))
        out.append(({**a, "question": "diagnosis", "conclusion": dx, "supported": True}, "overconfident"))
    elif a["question"] == "diagnosis":
        dx = rng.choice([d for d in _OTHER_DX.get(modality, ["pneumonia"]) if d not in a.get("diagnosis", [])])
        out.append(({**a, "conclusion": dx, "diagnosis": [dx], "supported": True}, "contradiction"))
    for findings, kind in _flip_findings(a.get("findings", {}), rng):
        bad = {**a, "findings": findings}
        for ph in ("systolic", "diastolic"):
            if findings.get(f"{ph} murmur") == "no":
                bad.pop(ph, None)
        out.append((bad, kind))
    return out


def _differential(a: Answer, rng: random.Random, modality: str) -> list[tuple[Answer, str]]:
    cands = a["candidates"]
    pool = [d for d in _OTHER_DX.get(modality, ["pneumonia", "asthma"]) if d not in cands]
    if not cands:
        return [({**a, "candidates": rng.sample(pool, min(2, len(pool)))}, "overconfident")]
    out = []
    if len(cands) >= 2:
        out.append(({**a, "candidates": [cands[1], cands[0]] + cands[2:]}, "wrong_ranking"))
    if pool:
        out.append(({**a, "candidates": [rng.choice(pool)] + cands[1:], "labelled": []}, "hallucination"))
    return out


def _comparison(a: Answer, rng: random.Random, modality: str) -> list[tuple[Answer, str]]:
    swap = {"first": "second", "second": "first", "both": "neither", "neither": "both"}
    if a["answer"] == "unknown":
        return [({**a, "answer": rng.choice(["first", "second", "both", "neither"])}, "overconfident")]
    kind = "wrong_location" if a["question"] == "louder" else "contradiction"
    out = [({**a, "answer": swap[a["answer"]]}, kind)]
    if a["question"] == "which" and a["answer"] in ("both", "neither"):
        out.append(({**a, "answer": rng.choice(["first", "second"])}, "contradiction"))
    return out


def _location(a: Answer, rng: random.Random, modality: str) -> list[tuple[Answer, str]]:
    if a["question"] == "most_audible":
        sites = HEART_SITES[:4]
        if a["site"] == "unknown":
            return [({**a, "site": rng.choice(a.get("sites") or list(sites))}, "overconfident")]
        return [_wrong_site(a, rng)]
    out = [({**a, "findings": f}, kind) for f, kind in _flip_findings(a.get("findings", {}), rng)]
    if a["question"] == "murmur_where" and a["findings"].get("murmur") == "yes" and a.get("site") not in (None, "unknown"):
        out.append(_wrong_site(a, rng))
    return out


def _wrong_site(a: Answer, rng: random.Random) -> tuple[Answer, str]:
    """The same answer with another of the four valve sites named as loudest."""
    others = [s for s in HEART_SITES[:4] if s != a["site"]]
    return {**a, "site": rng.choice(others), "sites": [s for s in a["sites"] if s != a["site"]]}, "wrong_location"


PERTURB: dict[str, Callable[[Answer, random.Random, str], list[tuple[Answer, str]]]] = {
    "binary": _binary, "detection": _detection, "reporting": _reporting, "reasoning": _reasoning,
    "differential": _differential, "comparison": _comparison, "location": _location,
}


def rejected_response(task: str, answer: Answer, chosen: str, modality: str, rng: random.Random,
                      style_rng: Callable[[], random.Random]) -> tuple[str, str] | None:
    """A response that contradicts `answer` (text, kind), or None when no perturbation does.

    `style_rng()` returns a fresh Random seeded like the chosen response's, so both share phrasing.
    """
    options = PERTURB[task](_copy(answer), rng, modality)
    rng.shuffle(options)
    for bad, kind in options:
        text = RESPONSES[task](bad, style_rng())
        if text != chosen and check_consistency(text, answer, task):
            return text, kind
    return None


def _signature(lab: dict[str, Any]) -> tuple:
    return tuple(sorted(sound_findings(lab).items()))


Pool = dict[tuple[str, str], list[tuple[dict[str, Any], tuple]]]


def mismatch_pool(labs: list[dict[str, Any]]) -> Pool:
    """Records that can lend a mismatched recording, by (modality, split), with their sound labels."""
    pool: Pool = {}
    for lab in labs:
        if lab.get("media"):
            pool.setdefault((lab["modality"], lab["split"]), []).append((lab, _signature(lab)))
    return pool


def rejected_audios(row: dict[str, Any], labs: list[dict[str, Any]], pool: Pool,
                    rng: random.Random) -> tuple[list[Any], str]:
    """Media for which the chosen answer is wrong: mismatched recordings or degradation specs.

    A mismatched recording comes from another patient of the same modality and split (never
    across splits, so test audio never enters training) whose labels differ from this row's.
    """
    audios = row["audios"]
    if row["task"] == "comparison":
        a = row["answer"]
        if a["first"] != a["second"] and a["answer"] in ("first", "second") and audios[0] != audios[1]:
            return [audios[1], audios[0]], "swapped"
        return [{"path": p, **rng.choice(DEGRADATIONS)} for p in audios], "degraded"
    lab = labs[0]
    if rng.random() < 0.5:
        a = row["answer"]
        candidates = [(o, sig) for o, sig in pool.get((lab["modality"], lab["split"]), []) if o["patient_id"] != lab["patient_id"]]
        if row["task"] == "binary" and a["label"] in _FLIP:
            differ = [o for o, _ in candidates if o.get(a["finding"]) == _FLIP[a["label"]]]
        else:
            sig = _signature(lab)
            differ = [o for o, osig in candidates if osig != sig and all(v != "unknown" for _, v in osig)]
        if differ:
            return [rng.choice(differ)["media"][0]], "mismatched"
    return [{"path": audios[0], **rng.choice(DEGRADATIONS)}], "degraded"


def preference_row(row: dict[str, Any], labs: list[dict[str, Any]], pool: Pool,
                   rng: random.Random, style_rng: Callable[[], random.Random]) -> dict[str, Any] | None:
    """The preference row for one instruction row, or None when no rejected response contradicts it."""
    chosen = row["messages"][-1]["content"]
    found = rejected_response(row["task"], row["answer"], chosen, labs[0]["modality"], rng, style_rng)
    if found is None:
        return None
    text, kind = found
    bad_audios, audio_kind = rejected_audios(row, labs, pool, rng)
    return {
        "prompt": row["messages"][:-1],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": text}],
        "audios": row["audios"],
        "rejected_audios": bad_audios,
        "rejection": {"text": kind, "audio": audio_kind},
        **{k: row[k] for k in ("task", "record_ids", "patient_id", "dataset", "split", "answer")},
    }
