"""Patient-level splits: no patient in two splits, stable for a seed, stratified, official kept."""

from __future__ import annotations

import pytest

from clinlm.records import Record
from clinlm.splits import assign_splits


def _records(n_patients=100, per_patient=3):
    out = []
    for p in range(n_patients):
        for k in range(per_patient):
            out.append(Record(record_id=f"r{p}_{k}", patient_id=f"p{p}", dataset="d", modality="heart",
                              murmur="present" if p % 5 == 0 else "absent"))
    return out


def test_stable_for_a_seed_and_different_across_seeds():
    recs = _records()
    assert assign_splits(recs, seed=0) == assign_splits(list(reversed(recs)), seed=0)
    assert assign_splits(recs, seed=0) != assign_splits(recs, seed=1)


def test_fractions_and_stratification():
    splits = assign_splits(_records(), seed=0)
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 70, "val": 10, "test": 20}
    present = [p for p in splits if int(p[1:]) % 5 == 0]
    assert {splits[p] for p in present} == {"train", "val", "test"}  # the rare label reaches all splits


def test_official_split_is_kept_and_val_comes_from_train():
    recs = _records(20, 1)
    for r in recs:
        r.split = "test" if int(r.patient_id[1:]) < 5 else "train"
    splits = assign_splits(recs, seed=0)
    assert all(splits[f"p{i}"] == "test" for i in range(5))
    assert {splits[f"p{i}"] for i in range(5, 20)} == {"train", "val"}


def test_patient_in_two_official_splits_is_an_error():
    a = Record(record_id="a", patient_id="p", dataset="d", modality="lung", split="train")
    b = Record(record_id="b", patient_id="p", dataset="d", modality="lung", split="test")
    with pytest.raises(ValueError, match="several official splits"):
        assign_splits([a, b])
