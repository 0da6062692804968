"""Findings -> impression rows: format, phrasings, and splits that keep patients and duplicates together."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from clinlm.bench.dedup import duplicate_groups, normalise_text
from clinlm.bench.impression import PHRASINGS, SIMILAR_HEADER, assign_group_splits, build_impression_bench
from clinlm.ingest import run_ingest
from clinlm.records import RECORDS_FILE, Record, atomic_write_table, records_to_table

ORGANS = ["heart", "lungs", "mediastinum", "pleura", "aorta", "spine", "diaphragm", "ribs", "trachea", "hila"]
STATES = ["normal", "enlarged", "clear", "calcified", "tortuous", "degenerative", "elevated", "fractured", "midline", "prominent"]


def _records(n_patients: int = 120, seed: int = 0) -> list[Record]:
    """Reports with templated duplicates, near duplicates, unique texts, and patients with several studies."""
    rng = np.random.default_rng(seed)
    template = (
        "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear bilaterally. There is no "
        "pleural effusion or pneumothorax. No focal airspace consolidation. The visualised upper abdomen is "
        "unremarkable. The osseous structures are {}."
    )
    out: list[Record] = []
    study = 0
    for p in range(n_patients):
        for _ in range(1 + (p % 3 == 0)):  # every third patient has two studies
            study += 1
            kind = study % 4
            if kind == 0:  # the template, punctuation/case/XXXX variants: exact duplicates after normalising
                text = template.format("intact")
                findings = text.upper() if study % 8 == 0 else text.replace(".", " . XXXX")
                impression = "No acute cardiopulmonary abnormality."
            elif kind == 1:  # near duplicates: one word of the template changed
                findings = template.format(STATES[study % len(STATES)])
                impression = "No acute disease."
            else:  # unique text
                words = [f"The {ORGANS[i]} is {STATES[j]}." for i, j in zip(rng.permutation(10)[:4], rng.integers(0, 10, 4))]
                findings = " ".join(words) + f" Study number {study} nodule {study * 7} mm."
                impression = f"Finding {study}: {words[0]}"
            out.append(Record(record_id=f"toy/s{study}", patient_id=f"toy/p{p}", dataset="toy", modality="report",
                              findings=findings, impression=impression, abnormal=kind >= 2))
    return out


def _write(records: list[Record], folder: Path) -> Path:
    atomic_write_table(records_to_table(records), folder / RECORDS_FILE)
    return folder


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for s in ("train", "val", "test") for line in (out / f"{s}.jsonl").read_text().splitlines()]


def test_rows_and_splits(tmp_path: Path) -> None:
    records = _records()
    stats = build_impression_bench([_write(records, tmp_path / "rec")], tmp_path / "bench", seed=3)
    rows = _rows(tmp_path / "bench")
    assert len(rows) == len(records) == stats["rows"]

    by_id = {r.record_id: r for r in records}
    for row in rows:
        (rid,) = row["record_ids"]
        rec = by_id[rid]
        assert row["task"] == "impression" and row["audios"] == [] and row["dataset"] == "toy"
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        user, assistant = (m["content"] for m in row["messages"])
        # The prompt: [phrasing] "FINDINGS: ..." [the impressions of similar training reports].
        body, _, similar = user.partition(f"\n\n{SIMILAR_HEADER}\n")
        assert "<audio>" not in user and body.endswith(f"FINDINGS: {rec.findings}")
        assert body[: -len(f"FINDINGS: {rec.findings}")].strip() in PHRASINGS
        assert len(similar.splitlines()) == stats["retrieval"]["k"] and all(line.startswith("- ") for line in similar.splitlines())
        assert assistant == rec.impression == row["answer"]["impression"]
        assert row["patient_id"] == rec.patient_id
    assert len({row["messages"][0]["content"].split("FINDINGS:")[0] for row in rows}) > 3  # several phrasings used

    split_of = {row["record_ids"][0]: row["split"] for row in rows}
    # No patient in two splits.
    patients: dict[str, set] = defaultdict(set)
    for row in rows:
        patients[row["patient_id"]].add(row["split"])
    assert all(len(s) == 1 for s in patients.values())
    # Exact duplicates after normalisation share a split (checked independently of the grouping code).
    by_text: dict[str, set] = defaultdict(set)
    for r in records:
        by_text[normalise_text(r.findings)].add(split_of[r.record_id])
    assert all(len(s) == 1 for s in by_text.values())
    # The one-word near duplicates of the template also share one split with it.
    template_like = {split_of[r.record_id] for r in records if r.findings.lower().startswith("the heart is normal in size")}
    assert len(template_like) == 1
    # All three splits are used, and the unique reports spread roughly 70/10/20.
    counts = stats["rows_per_split"]
    assert set(counts) == {"train", "val", "test"} and min(counts.values()) > 0
    assert stats["groups_in_several_splits"] == 0

    # Duplicate counts match an independent count of repeated normalised texts.
    from collections import Counter

    c = Counter(normalise_text(r.findings) for r in records)
    assert stats["duplicates"]["exact_duplicate_rows"] == sum(v for v in c.values() if v > 1)
    assert stats["duplicates"]["exact_duplicate_groups"] == sum(1 for v in c.values() if v > 1)
    card = (tmp_path / "bench" / "card.md").read_text()
    assert f"{stats['duplicates']['exact_duplicate_rows']} of {len(records)} rows" in card
    assert json.loads((tmp_path / "bench" / "stats.json").read_text()) == stats


def test_same_seed_same_bench_other_seed_other_split(tmp_path: Path) -> None:
    rec = _write(_records(), tmp_path / "rec")
    build_impression_bench([rec], tmp_path / "a", seed=1)
    build_impression_bench([rec], tmp_path / "b", seed=1)
    build_impression_bench([rec], tmp_path / "c", seed=2)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    split = {s: {r["record_ids"][0]: r["split"] for r in _rows(tmp_path / s)} for s in "ac"}
    assert split["a"] != split["c"]


def test_split_all_and_bad_inputs(tmp_path: Path) -> None:
    rec = _write(_records(20), tmp_path / "rec")
    stats = build_impression_bench([rec], tmp_path / "ood", split_all="test")
    assert stats["rows_per_split"]["train"] == 0 and stats["rows_per_split"]["test"] == stats["rows"]
    heart = _write([Record(record_id="c/1", patient_id="c/p", dataset="c", modality="heart")], tmp_path / "heart")
    with pytest.raises(ValueError, match="clinlm ingest openi-csv"):
        build_impression_bench([heart], tmp_path / "none")
    with pytest.raises(ValueError, match="split-all"):
        build_impression_bench([rec], tmp_path / "bad", split_all="dev")


def test_group_splitter_keeps_groups_whole_and_hits_fractions() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(400), rng.integers(1, 4, 400))  # 400 groups of 1-3 rows
    strata = ["a" if g % 3 else "b" for g in groups]
    splits = assign_group_splits(groups, strata, seed=0)
    for g in np.unique(groups):
        assert len({splits[i] for i in np.flatnonzero(groups == g)}) == 1
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.7) < 0.02 and abs(share["val"] - 0.1) < 0.02 and abs(share["test"] - 0.2) < 0.02
    for stratum in ("a", "b"):  # each stratum also near the fractions
        sub = [s for s, t in zip(splits, strata) if t == stratum]
        assert abs(sub.count("test") / len(sub) - 0.2) < 0.03


def test_duplicate_groups_threshold() -> None:
    texts = ["Heart normal. Lungs clear.", "HEART NORMAL; lungs clear XXXX", "Heart normal. Lungs clear. Small effusion.", "Large mass in the right apex."]
    labels, stats = duplicate_groups(texts, threshold=0.99)
    assert labels[0] == labels[1] and labels[0] != labels[2] and labels[3] not in labels[:3]
    assert stats["exact_duplicate_rows"] == 2 and stats["exact_duplicate_groups"] == 1
    labels, stats = duplicate_groups(texts, threshold=0.5)
    assert labels[0] == labels[1] == labels[2] and labels[3] != labels[0]
    assert stats["near_duplicate_groups"] == 1 and stats["near_duplicate_rows"] == 3
    labels, _ = duplicate_groups(texts, threshold=0.99, links=[(2, 3)])  # linked by patient
    assert labels[2] == labels[3]


@pytest.mark.shared_data
def test_real_iu_reports(shared_data: Path, tmp_path: Path) -> None:
    """A few hundred real IU reports: the bench finds their real templated duplicates and splits by study."""
    run_ingest("openi-csv", shared_data / "iu_xray_openi_reports", tmp_path / "rec", progress=False)
    table = __import__("pyarrow.parquet", fromlist=["x"]).read_table(tmp_path / "rec" / RECORDS_FILE).slice(0, 400)
    atomic_write_table(table, tmp_path / "sub" / RECORDS_FILE)
    stats = build_impression_bench([tmp_path / "sub"], tmp_path / "bench", seed=0)
    assert stats["rows"] == 400 and stats["patients_equal_studies"]
    assert stats["duplicates"]["exact_duplicate_rows"] > 0 and stats["duplicates"]["near_duplicate_groups"] > 0
    assert "split is by study" in (tmp_path / "bench" / "card.md").read_text()
    rows = _rows(tmp_path / "bench")
    assert any("XXXX" in r["messages"][0]["content"] for r in rows)  # de-identification marks kept


def test_bench_build_routes_reports_to_impression(tmp_path: Path) -> None:
    """`clinlm bench build` on report records: --task impression, or no --task at all, gives these rows."""
    from clinlm.bench.build import build_bench

    rec = _write(_records(30), tmp_path / "rec")
    build_impression_bench([rec], tmp_path / "direct", seed=0)
    build_bench([rec], tmp_path / "named", seed=0, tasks=["impression"], workers=1)
    build_bench([rec], tmp_path / "default", seed=0, workers=1)
    assert _rows(tmp_path / "named") == _rows(tmp_path / "direct") == _rows(tmp_path / "default")
