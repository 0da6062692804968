"""Patient-level splits: every record of a patient lands in the same split.

Stable for a seed, stratified by each patient's main label so rare labels reach every split.
A dataset's official split (e.g. ICBHI's train/test list) is kept as it is: adapters set
`Record.split`, and only patients without one are assigned here (the validation split of an
official train/test dataset is carved from its train patients).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

import numpy as np

from clinlm.records import Record

DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def main_label(record: Record) -> str:
    """The label used to stratify: the first one the record has, in order of clinical weight."""
    if record.murmur:
        return f"murmur={record.murmur}"
    if record.abnormal is not None:
        return f"abnormal={record.abnormal}"
    if record.diagnosis:
        return f"dx={record.diagnosis[0]}"
    if record.cough_status:
        return f"cough={record.cough_status}"
    if record.superclasses:
        return f"ecg={'+'.join(sorted(record.superclasses))}"
    if record.rhythm:
        return f"rhythm={record.rhythm}"
    if record.crackle is not None or record.wheeze is not None:
        return f"crackle={record.crackle},wheeze={record.wheeze}"
    return "unlabelled"


def _assign(patients: list[str], fractions: dict[str, float], rng: np.random.Generator) -> dict[str, str]:
    """Shuffle one stratum's patients and cut it by the fractions (largest remainder rounding)."""
    order = sorted(patients)
    rng.shuffle(order)
    n = len(order)
    names = list(fractions)
    raw = np.array([fractions[k] for k in names], dtype=float) * n
    counts = np.floor(raw).astype(int)
    # Hand out what rounding left over to the splits with the largest remainder; with few patients
    # make sure train gets the first one, then test, then val.
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    out, start = {}, 0
    for name, c in zip(names, counts):
        for pid in order[start : start + c]:
            out[pid] = name
        start += c
    return out


def assign_splits(
    records: Iterable[Record],
    seed: int = 0,
    fractions: dict[str, float] | None = None,
) -> dict[str, str]:
    """Map patient_id -> split for all records, honouring official splits set by the adapter.

    Returns the mapping; callers write it into `Record.split`. Raises when an adapter gave two
    records of one patient different official splits (a patient must never straddle splits).
    """
    fractions = fractions or DEFAULT_FRACTIONS
    labels: dict[str, Counter] = defaultdict(Counter)
    official: dict[str, set[str]] = defaultdict(set)
    for r in records:
        labels[r.patient_id][main_label(r)] += 1
        if r.split:
            official[r.patient_id].add(r.split)
    mixed = {p: s for p, s in official.items() if len(s) > 1}
    if mixed:
        pid, s = next(iter(mixed.items()))
        raise ValueError(f"patient {pid} has records in several official splits {sorted(s)}")

    result: dict[str, str] = {p: next(iter(s)) for p, s in official.items()}
    strata: dict[str, list[str]] = defaultdict(list)
    for pid, counter in labels.items():
        if pid in result:
            continue
        stratum = counter.most_common(1)[0][0]
        strata[stratum].append(pid)
    rng = np.random.default_rng(seed)
    if result:
        # Official train/test: carve val out of the official train patients only; an official
        # val (PTB-XL's fold 9) is kept as it is.
        train = sorted(p for p, s in result.items() if s == "train")
        val_frac = fractions.get("val", 0.0)
        if train and val_frac > 0 and "val" not in result.values():
            for pid, s in _assign(train, {"train": 1 - val_frac, "val": val_frac}, rng).items():
                result[pid] = s
    for stratum in sorted(strata):
        result.update(_assign(strata[stratum], fractions, rng))
    return result
