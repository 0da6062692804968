"""What a Record's labels support, in the bench vocabulary (`clinlm.bench.facts`).

`record_labels(record)` turns one Record into a small, JSON-friendly dict that every task
builder reads (and that travels between processes for the comparison pairs). The rules that
matter clinically live here, in one place:

- Labels are "yes" | "no" | "unknown"; a finding that does not apply to the modality (crackles
  on a heart recording) is absent from the dict, so no task can ask about it.
- CirCor's murmur label is per patient, with the sites where it is audible. A recording's own
  murmur label is "yes" at a listed site, "no" at a site the annotators did not list, "no" when
  the patient has no murmur, and "unknown" when the patient label is unknown (or present with
  no site information to place it). Murmur descriptors (timing, grade, ...) apply only where
  the murmur is heard.
- Lung adventitious sounds come from the annotations: ICBHI cycles (crackle, wheeze) or
  SPRSound-style sound events (which also annotate rhonchi and stridor, so their absence is
  known there and "unknown" elsewhere). A recording-level flag without events still counts.
- The heart rate is taken from the record, or derived from annotated S1 onsets (median S1-S1
  interval, at least four S1s, 30-250 bpm); otherwise it is unknown.
"""

from __future__ import annotations

import re
from statistics import median
from typing import Any

from clinlm.bench.facts import DIAGNOSES, TIMINGS, canonical_site
from clinlm.records import Record

_DX_RES = [(name, re.compile(rf"^(?:{pattern})$", re.IGNORECASE)) for name, pattern in DIAGNOSES.items()]
# SPRSound / ICBHI event labels -> adventitious sound types ("normal" -> none).
_EVENT_TYPES = {
    "crackle": ("crackle",), "fine crackle": ("crackle",), "coarse crackle": ("crackle",),
    "wheeze": ("wheeze",), "rhonchi": ("rhonchi",), "stridor": ("stridor",),
    "crackle+wheeze": ("crackle", "wheeze"), "wheeze+crackle": ("crackle", "wheeze"),
    "wheeze & crackle": ("crackle", "wheeze"), "crackle & wheeze": ("crackle", "wheeze"),
    "normal": (),
}
_COVID_YES = re.compile(r"covid|positive", re.IGNORECASE)
_COVID_NO = re.compile(r"healthy|symptomatic|negative|no_resp|recovered", re.IGNORECASE)


def yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def canonical_diagnosis(name: str) -> str:
    """"COPD" -> "copd", "Upper respiratory tract infection" -> "urti"; unknown names lower-cased."""
    name = str(name).strip()
    for canon, rx in _DX_RES:
        if rx.match(name):
            return canon
    return name.lower()


def normalise_timing(value: str | None, phase: str) -> str | None:
    """"Early-systolic" / "early" / "Holosystolic" -> the vocabulary in facts.TIMINGS."""
    if value is None:
        return None
    v = str(value).strip().lower().replace("_", "-")
    if v in ("holosystolic", "pansystolic"):
        return "holosystolic"
    if v in ("holodiastolic", "pandiastolic"):
        return "holodiastolic"
    v = re.sub(r"[- ]?(systolic|diastolic)$", "", v)
    return v if v in TIMINGS[phase] else None


def _grade(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    m = re.match(r"^\s*(vi|iv|v|i{1,3}|\d)", str(value), re.IGNORECASE)
    roman = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}
    if not m:
        return None
    token = m.group(1).lower()
    return int(token) if token.isdigit() else roman[token]


def _descriptor(record: Record, phase: str) -> dict[str, Any] | None:
    raw = {k: getattr(record, f"{phase}_{k}") for k in ("timing", "shape", "grade", "pitch", "quality")}
    if all(v is None for v in raw.values()):
        return None
    out = {
        "timing": normalise_timing(raw["timing"], phase),
        "shape": str(raw["shape"]).lower() if raw["shape"] else None,
        "grade": _grade(raw["grade"]),
        "pitch": str(raw["pitch"]).lower() if raw["pitch"] else None,
        "quality": str(raw["quality"]).lower() if raw["quality"] else None,
    }
    return {k: ("unknown" if v is None else v) for k, v in out.items()}


def _heart_rate(record: Record) -> int | None:
    if record.heart_rate_bpm:
        return int(round(record.heart_rate_bpm))
    s1 = sorted(e.start_s for e in record.events if e.kind == "heart_state" and e.label.lower() == "s1")
    if len(s1) < 4:
        return None
    bpm = 60.0 / median(b - a for a, b in zip(s1, s1[1:]) if b > a)
    return int(round(bpm)) if 30 <= bpm <= 250 else None


def _murmur_here(record: Record, site: str | None, sites: list[str]) -> str:
    m = (record.murmur or "unknown").lower()
    if m == "absent":
        return "no"
    if m != "present":
        return "unknown"
    if not sites:
        return "yes"  # a per-recording label (no sites given): it is heard in this recording
    if site is None:
        return "unknown"
    return "yes" if site in sites else "no"


def _lung(record: Record, out: dict[str, Any]) -> None:
    events: list[dict[str, Any]] = []
    annotated: set[str] = set()
    n_cycles = 0
    for e in record.events:
        if e.kind not in ("resp_cycle", "sound_event"):
            continue
        n_cycles += 1
        annotated.update(("crackle", "wheeze") if e.kind == "resp_cycle" else ("crackle", "wheeze", "rhonchi", "stridor"))
        for t in _EVENT_TYPES.get(e.label.strip().lower(), ()):
            events.append({"type": t, "start_s": round(float(e.start_s), 3), "end_s": round(float(e.end_s), 3)})
    events.sort(key=lambda ev: (ev["start_s"], ev["type"]))
    for t in ("crackle", "wheeze", "rhonchi", "stridor"):
        flag = getattr(record, t, None)
        if any(ev["type"] == t for ev in events) or flag is True:
            out[t] = "yes"
        elif t in annotated or flag is False:
            out[t] = "no"
        elif t in ("crackle", "wheeze"):
            out[t] = "unknown"
    out["events"] = events
    out["n_cycles"] = n_cycles or None


def record_labels(record: Record) -> dict[str, Any]:
    """The labels of one Record that the bench can state, as plain JSON-friendly values."""
    site = canonical_site(record.site)
    out: dict[str, Any] = {
        "record_id": record.record_id,
        "patient_id": record.patient_id,
        "dataset": record.dataset,
        "modality": record.modality,
        "split": record.split,
        "media": list(record.media),
        "site": site,
        "abnormal": yes_no(record.abnormal),
        "diagnosis": list(dict.fromkeys(canonical_diagnosis(d) for d in record.diagnosis if d)),
        "age_years": record.age_years,
    }
    if record.modality == "heart":
        sites = [s for s in (canonical_site(x) for x in record.murmur_locations) if s]
        here = _murmur_here(record, site, sites)
        out["murmur"] = here
        out["patient_murmur"] = (record.murmur or "unknown").lower()
        out["murmur_sites"] = list(dict.fromkeys(sites))
        out["most_audible"] = canonical_site(record.murmur_most_audible)
        out["systolic"] = _descriptor(record, "systolic") if here == "yes" else None
        out["diastolic"] = _descriptor(record, "diastolic") if here == "yes" else None
        out["heart_rate_bpm"] = _heart_rate(record)
    elif record.modality == "lung":
        _lung(record, out)
    elif record.modality == "cough":
        status = record.cough_status
        out["covid"] = ("yes" if _COVID_YES.search(status) and not re.search(r"negative", status, re.I)
                        else "no" if _COVID_NO.search(status) else "unknown") if status else "unknown"
        if record.wheeze is not None:
            out["wheeze"] = yes_no(record.wheeze)
    return out
