"""A small, documented table from labelled findings to candidate diagnoses (differential, reasoning).

Each rule says which findings it needs and which conditions those findings are commonly
associated with, most typical first. The associations are the standard textbook ones taught for
auscultation (e.g. Bickley, *Bates' Guide to Physical Examination*; the murmur tables of the
AHA/ACC valvular heart disease guideline; Pasterkamp et al., "Towards the standardisation of
lung sound nomenclature", Eur Respir J 2016). They are candidates *consistent with* the sounds,
never a diagnosis: the bench always puts a labelled diagnosis first and says the rest are
possibilities. Edit `HEART_RULES` / `LUNG_RULES` to change them; `candidates()` is the only
reader.

A rule matches when every key it names agrees with the labels:
- heart: "phase" (systolic/diastolic murmur heard here), "timing" (list), "site" (list of
  canonical sites where the recording is), "max_grade" (the labelled grade is at most this);
- lung: "crackle", "wheeze", "rhonchi", "stridor" (each "yes"/"no"), "max_age" (years).
All matching rules contribute, in table order, until `limit` candidates are collected.
"""

from __future__ import annotations

from typing import Any

HEART_RULES: list[dict[str, Any]] = [
    {"phase": "systolic", "timing": ["holosystolic"], "site": ["mitral"],
     "candidates": ["mitral regurgitation", "ventricular septal defect"]},
    {"phase": "systolic", "timing": ["holosystolic"], "site": ["tricuspid"],
     "candidates": ["ventricular septal defect", "tricuspid regurgitation"]},
    {"phase": "systolic", "timing": ["late"], "site": ["mitral"], "candidates": ["mitral valve prolapse"]},
    {"phase": "systolic", "timing": ["early", "mid"], "site": ["aortic"], "candidates": ["aortic stenosis", "innocent murmur"]},
    {"phase": "systolic", "timing": ["early", "mid"], "site": ["pulmonic"],
     "candidates": ["pulmonary stenosis", "atrial septal defect", "innocent murmur"]},
    {"phase": "systolic", "max_grade": 2, "timing": ["early", "mid"], "candidates": ["innocent murmur"]},
    {"phase": "diastolic", "timing": ["early"], "site": ["aortic", "pulmonic", "tricuspid"],
     "candidates": ["aortic regurgitation", "pulmonary regurgitation"]},
    {"phase": "diastolic", "timing": ["mid", "late"], "site": ["mitral"], "candidates": ["mitral stenosis"]},
    {"phase": "systolic", "candidates": ["congenital heart disease", "innocent murmur"]},
    {"phase": "diastolic", "candidates": ["rheumatic heart disease", "congenital heart disease"]},
    {"phase": "any", "candidates": ["congenital heart disease", "innocent murmur"]},
]
HEART_NO_MURMUR = ["healthy"]

LUNG_RULES: list[dict[str, Any]] = [
    {"stridor": "yes", "candidates": ["upper airway obstruction"]},
    {"wheeze": "yes", "max_age": 2, "candidates": ["bronchiolitis", "asthma"]},
    {"crackle": "yes", "wheeze": "yes", "candidates": ["copd", "bronchiectasis", "pneumonia"]},
    {"wheeze": "yes", "candidates": ["asthma", "copd", "bronchiolitis"]},
    {"crackle": "yes", "candidates": ["pneumonia", "heart failure", "lung fibrosis", "bronchiectasis"]},
    {"rhonchi": "yes", "candidates": ["bronchitis", "copd", "pneumonia"]},
]
LUNG_CLEAR = ["healthy", "urti"]  # no adventitious sound: clear lungs (URTI rarely changes them)


def _heart(labels: dict[str, Any]) -> list[str]:
    here = labels.get("murmur")
    if here == "no" and labels.get("patient_murmur") == "absent":
        return list(HEART_NO_MURMUR)
    if here != "yes":
        return []
    out: list[str] = []
    phases = [p for p in ("systolic", "diastolic") if labels.get(p)]
    for rule in HEART_RULES:
        if rule["phase"] == "any":
            if phases:
                continue
        elif rule["phase"] not in phases:
            continue
        desc = labels.get(rule["phase"]) or {}
        if "timing" in rule and desc.get("timing") not in rule["timing"]:
            continue
        if "site" in rule and labels.get("site") not in rule["site"]:
            continue
        if "max_grade" in rule and not (isinstance(desc.get("grade"), int) and desc["grade"] <= rule["max_grade"]):
            continue
        out += [c for c in rule["candidates"] if c not in out]
    return out


def _lung(labels: dict[str, Any]) -> list[str]:
    sounds = {k: labels.get(k) for k in ("crackle", "wheeze", "rhonchi", "stridor")}
    if all(v == "no" for k, v in sounds.items() if k in ("crackle", "wheeze")) and "yes" not in sounds.values():
        return list(LUNG_CLEAR)
    out: list[str] = []
    age = labels.get("age_years")
    for rule in LUNG_RULES:
        if any(sounds.get(k) != v for k, v in rule.items() if k in sounds):
            continue
        if "max_age" in rule and not (age is not None and age <= rule["max_age"]):
            continue
        out += [c for c in rule["candidates"] if c not in out]
    return out


def candidates(labels: dict[str, Any], limit: int = 3) -> list[str]:
    """Ranked candidate diagnoses for a record's labels: the labelled diagnosis first, then the table.

    [] when the labels support no candidate (the response must then say it cannot be determined).
    """
    table = _heart(labels) if labels["modality"] == "heart" else _lung(labels) if labels["modality"] == "lung" else []
    labelled = [d for d in labels.get("diagnosis", [])]
    if labelled == ["healthy"] and table and table[0] != "healthy":
        table = []  # a healthy label with abnormal sounds: do not invent diseases beside it
    out = list(dict.fromkeys(labelled + table))
    if "healthy" in labelled and len(labelled) == 1:
        out = [d for d in out if d in LUNG_CLEAR + HEART_NO_MURMUR]
    elif labelled and "healthy" not in labelled:
        out = [d for d in out if d != "healthy"]
    return out[:limit]


def supports(labels: dict[str, Any], diagnosis: str) -> bool:
    """Do the labelled sounds alone point to `diagnosis` (per the table)?"""
    table = _heart(labels) if labels["modality"] == "heart" else _lung(labels) if labels["modality"] == "lung" else []
    return diagnosis in table
