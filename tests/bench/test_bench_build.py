"""`build_bench`: files, row contract, splits, determinism, missing media, preference rows, real data."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from bench_records import cough, heart, lung, random_records, variety, write_records
from conftest import write_wav

from clinlm.bench import build as build_module
from clinlm.bench.build import build_bench
from clinlm.bench.facts import TASKS, check_consistency, extract_facts
from clinlm.bench.validate import validate_files
from clinlm.records import SPLITS

ROW_KEYS = {"messages", "audios", "task", "record_ids", "patient_id", "dataset", "split", "answer"}
PREF_KEYS = {"prompt", "chosen", "rejected", "audios", "rejected_audios", "rejection", "task", "record_ids",
             "patient_id", "dataset", "split", "answer"}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The variety of records (wavs on disk, one annotation-only SPRSound record) built once."""
    tmp = tmp_path_factory.mktemp("bench")
    records = variety(media_dir=tmp / "wav")
    records[-5].media = []  # an annotation-only SPRSound record (metadata["missing_media"] is set)
    records[-5].metadata = {"missing_media": [str(tmp / "wav" / "missing.wav")]}
    rec = write_records(records, tmp / "rec", wav=lambda p: write_wav(p, seconds=0.5))
    stats = build_bench([rec], tmp / "bench", seed=0, workers=1)
    return tmp, records, stats


def test_files_and_row_contract(built):
    tmp, records, stats = built
    out = tmp / "bench"
    for name in ["card.md", "stats.json", *(f"{s}.jsonl" for s in SPLITS), *(f"preference/{s}.jsonl" for s in SPLITS)]:
        assert (out / name).exists(), name
    pngs = list(out.glob("*.png"))
    assert len(pngs) >= 3 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not list(out.rglob("*.tmp"))
    rows = {s: read(out / f"{s}.jsonl") for s in SPLITS}
    assert sum(map(len, rows.values())) == stats["rows"] > 0
    seen_tasks = set()
    for split, split_rows in rows.items():
        for row in split_rows:
            assert set(row) == ROW_KEYS
            assert row["split"] == split
            assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
            assert row["messages"][0]["content"].count("<audio>") == len(row["audios"]) == len(row["record_ids"])
            assert check_consistency(row["messages"][1]["content"], row["answer"], row["task"]) == []
            seen_tasks.add(row["task"])
    assert seen_tasks == set(TASKS)


def test_patient_never_in_two_files_and_splits_follow_records(built):
    tmp, records, _ = built
    split_of = {r.record_id: r.split for r in records}
    patient_splits = defaultdict(set)
    for s in SPLITS:
        for row in read(tmp / "bench" / f"{s}.jsonl"):
            patient_splits[row["patient_id"]].add(s)
            assert all(split_of[r] == s for r in row["record_ids"])
    assert all(len(v) == 1 for v in patient_splits.values())


def test_comparison_pairs_two_recordings_of_one_patient(built):
    tmp, records, stats = built
    patient_of = {r.record_id: r.patient_id for r in records}
    comps = [row for s in SPLITS for row in read(tmp / "bench" / f"{s}.jsonl") if row["task"] == "comparison"]
    assert comps and len(comps) <= stats["comparison_pairs"]
    for row in comps:
        a, b = row["record_ids"]
        assert a != b and patient_of[a] == patient_of[b] == row["patient_id"]
        assert len(row["audios"]) == 2


def test_preference_rows_follow_trl_format(built):
    tmp, _, stats = built
    prefs = [p for s in SPLITS for p in read(tmp / "bench" / "preference" / f"{s}.jsonl")]
    assert len(prefs) == sum(stats["preference_rows_per_split"].values()) > 0.9 * stats["rows"]
    audio_kinds = set()
    for p in prefs:
        assert set(p) == PREF_KEYS
        assert p["prompt"][-1]["role"] == "user" and p["chosen"][0]["role"] == p["rejected"][0]["role"] == "assistant"
        assert p["chosen"] != p["rejected"]
        assert check_consistency(p["chosen"][0]["content"], p["answer"], p["task"]) == []
        assert check_consistency(p["rejected"][0]["content"], p["answer"], p["task"])
        assert len(p["rejected_audios"]) == len(p["audios"])
        audio_kinds.add(p["rejection"]["audio"])
        for bad, good in zip(p["rejected_audios"], p["audios"]):
            if isinstance(bad, dict):  # a degradation spec of the same file
                assert bad["path"] == good and bad["degrade"] in {"noise", "low_pass", "dropout", "time_crop"}
            else:  # a mismatched recording: another patient's, or the pair swapped
                assert bad != good or p["task"] == "comparison"
    assert {"degraded", "mismatched"} <= audio_kinds


def test_missing_media_skipped_and_counted(built):
    tmp, records, stats = built
    assert stats["skipped_no_media"] == 1
    assert "skipped: **1**" in (tmp / "bench" / "card.md").read_text()
    assert json.loads((tmp / "bench" / "stats.json").read_text())["skipped_no_media"] == 1
    ids = {r for s in SPLITS for row in read(tmp / "bench" / f"{s}.jsonl") for r in row["record_ids"]}
    assert records[-5].record_id not in ids


def test_allow_missing_media_points_at_expected_path_and_validate_reports_it(built, tmp_path):
    tmp, records, _ = built
    stats = build_bench([tmp / "rec"], tmp_path / "b", workers=1, allow_missing_media=True)
    assert stats["skipped_no_media"] == 0
    rows = [row for s in SPLITS for row in read(tmp_path / "b" / f"{s}.jsonl") if records[-5].record_id in row["record_ids"]]
    assert rows and all(row["audios"] == [str(tmp / "wav" / "missing.wav")] for row in rows)
    report = validate_files([tmp_path / "b" / f"{s}.jsonl" for s in SPLITS])
    assert report.errors and all("missing.wav" in p.message for p in report.errors)


def test_output_validates(built):
    tmp, _, _ = built
    out = tmp / "bench"
    report = validate_files([out / f"{s}.jsonl" for s in SPLITS] + [out / "preference" / f"{s}.jsonl" for s in SPLITS])
    assert report.errors == [], report.errors[:3]


def test_deterministic_for_a_seed_and_any_worker_count(tmp_path):
    records = random_records(120, seed=5, media_dir=tmp_path / "wav")
    rec = write_records(records, tmp_path / "rec")  # media paths need not exist to build
    build_module.BATCH_SIZE, old = 25, build_module.BATCH_SIZE  # several batches, so pairs cross batches
    try:
        build_bench([rec], tmp_path / "a", seed=1, workers=1)
        build_bench([rec], tmp_path / "b", seed=1, workers=2)
        build_bench([rec], tmp_path / "c", seed=2, workers=1)
    finally:
        build_module.BATCH_SIZE = old
    for name in [*(f"{s}.jsonl" for s in SPLITS), *(f"preference/{s}.jsonl" for s in SPLITS)]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()


def test_split_all_puts_every_record_in_one_split(built, tmp_path):
    tmp, _, _ = built
    stats = build_bench([tmp / "rec"], tmp_path / "ood", split_all="test", workers=1)
    assert read(tmp_path / "ood" / "train.jsonl") == [] and read(tmp_path / "ood" / "val.jsonl") == []
    rows = read(tmp_path / "ood" / "test.jsonl")
    assert len(rows) == stats["rows"] > 0 and {r["split"] for r in rows} == {"test"}


def test_task_subset(built, tmp_path):
    tmp, _, _ = built
    stats = build_bench([tmp / "rec"], tmp_path / "sub", tasks=["binary", "location"], workers=1)
    assert set(stats["rows_per_task"]) == {"binary", "location"}
    binary = [r for s in SPLITS for r in read(tmp_path / "sub" / f"{s}.jsonl") if r["task"] == "binary"]
    # one question per labelled finding: heart murmur (+abnormal when labelled), lung crackle/wheeze/...
    per_record = defaultdict(list)
    for r in binary:
        per_record[r["record_ids"][0]].append(r["answer"]["finding"])
    assert all(len(v) == len(set(v)) for v in per_record.values())
    assert per_record["circor/1_MV"] == ["murmur"]


@pytest.mark.parametrize("make,error", [
    (lambda d: [write_records([heart("9", "MV", split="train")], d / "a"), write_records([heart("9", "AV", split="test")], d / "b")],
     "patient circor/9 is in two splits"),
    (lambda d: [write_records([heart("9", "MV")], d / "a"), write_records([heart("9", "MV")], d / "b")], "appears twice"),
    (lambda d: [write_records([heart("9", "MV", split=None)], d / "a")], "has no split"),
    (lambda d: [d / "nothing"], "no records.parquet"),
])
def test_bad_inputs_raise_clear_errors(tmp_path, make, error):
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        build_bench(make(tmp_path), tmp_path / "out", workers=1)


def test_bad_options(built, tmp_path):
    tmp, _, _ = built
    with pytest.raises(ValueError, match="unknown task"):
        build_bench([tmp / "rec"], tmp_path / "o", tasks=["binary", "nonsense"])
    with pytest.raises(ValueError, match="split-all"):
        build_bench([tmp / "rec"], tmp_path / "o", split_all="holdout")
    with pytest.raises(ValueError, match="go together"):
        build_bench([tmp / "rec"], tmp_path / "o", llm_url="http://127.0.0.1:1")


def test_failed_build_leaves_previous_output(built, tmp_path, monkeypatch):
    tmp, _, _ = built
    out = tmp_path / "keep"
    build_bench([tmp / "rec"], out, workers=1)
    before = (out / "train.jsonl").read_bytes()

    def boom(job):
        raise RuntimeError("worker failed")

    monkeypatch.setattr(build_module, "_build_batch", boom)
    with pytest.raises(RuntimeError):
        build_bench([tmp / "rec"], out, workers=1)
    assert (out / "train.jsonl").read_bytes() == before
    assert not list(out.rglob("*.tmp"))


def test_unlabelled_records_give_few_rows_and_ecg_is_skipped(tmp_path):
    from clinlm.records import Record

    records = [lung("200", "Al", [], diagnosis=None, split="train", media_dir=tmp_path), cough("c9", None, media_dir=tmp_path),
               Record(record_id="ptbxl/1", patient_id="ptbxl/1", dataset="ptbxl", modality="ecg", media=["/x/1"], split="train")]
    stats = build_bench([write_records(records, tmp_path / "rec")], tmp_path / "b", workers=1)
    assert stats["skipped_modality"] == {"ecg": 1}
    rows = read(tmp_path / "b" / "train.jsonl")
    assert {r["task"] for r in rows} == {"binary", "reporting"}
    assert len(rows) == 4  # one "cannot be determined" question and one report per record
    assert all(extract_facts(r["messages"][1]["content"])["unknown"] for r in rows)


# ----------------------------------------------------------------------- real and simulated data

def _ingest(adapter: str, root: Path, out: Path) -> Path:
    from clinlm.ingest import run_ingest

    pytest.importorskip(f"clinlm.sources.{adapter}")
    run_ingest(adapter, root, out, progress=False)
    return out


@pytest.mark.shared_data
def test_real_circor(shared_data, tmp_path):
    rec = _ingest("circor", shared_data / "circor_physionet2022", tmp_path / "rec")
    stats = build_bench([rec], tmp_path / "b", workers=1)
    assert stats["skipped_no_media"] == 0 and set(stats["rows_per_task"]) == set(TASKS)
    files = [tmp_path / "b" / f"{s}.jsonl" for s in SPLITS] + [tmp_path / "b" / "preference" / f"{s}.jsonl" for s in SPLITS]
    assert validate_files(files).errors == []
    rows = [r for s in SPLITS for r in read(tmp_path / "b" / f"{s}.jsonl")]
    murmur = [r["answer"]["label"] for r in rows if r["task"] == "binary" and r["answer"]["finding"] == "murmur"]
    assert {"yes", "no"} <= set(murmur)
    grades = [r["answer"]["systolic"]["grade"] for r in rows if r["task"] == "reporting" and r["answer"].get("systolic")]
    assert grades and all(g in (1, 2, 3, "unknown") for g in grades)


@pytest.mark.shared_data
def test_real_icbhi_annotations_only(shared_data, tmp_path):
    rec = _ingest("icbhi", shared_data / "icbhi2017_annotations_only", tmp_path / "rec")
    # A slice keeps the test fast: the first 60 recordings (their patients' other records dropped too).
    from clinlm.records import read_records

    records = read_records(rec)
    keep = {r.patient_id for r in records[:60]}
    small = write_records([r for r in records if r.patient_id in keep], tmp_path / "small")
    skipped = build_bench([small], tmp_path / "skip", workers=1)
    assert skipped["rows"] == 0 and skipped["skipped_no_media"] == skipped["records"] > 0
    stats = build_bench([small], tmp_path / "b", workers=1, allow_missing_media=True)
    assert stats["rows"] > 0 and stats["rows_per_task"]["detection"]
    rows = [r for s in SPLITS for r in read(tmp_path / "b" / f"{s}.jsonl")]
    events = [e for r in rows if r["task"] == "detection" for e in r["answer"]["events"]]
    assert events and {e["type"] for e in events} <= {"crackle", "wheeze"}
    assert all(r["audios"][0].endswith(".wav") for r in rows)


@pytest.mark.shared_data
def test_real_sprsound_annotations(shared_data, tmp_path):
    rec = _ingest("sprsound", shared_data / "sprsound_annotations_only", tmp_path / "rec")
    stats = build_bench([rec], tmp_path / "b", workers=1, allow_missing_media=True)
    rows = [r for s in SPLITS for r in read(tmp_path / "b" / f"{s}.jsonl")]
    assert stats["records_used"] == 7 and rows
    sites = {r["answer"]["site"] for r in rows if r["task"] == "location"}
    assert sites <= {"left posterior", "left lateral", "right posterior", "right lateral"} and sites
    crackle_rows = [r for r in rows if r["task"] == "detection" and "crackle" in r["answer"]["present"]]
    assert crackle_rows and all(e["start_s"] < e["end_s"] for r in crackle_rows for e in r["answer"]["events"])


@pytest.mark.slow
def test_simulated_heart_and_lung(tmp_path):
    simulate = pytest.importorskip("clinlm.simulate")
    simulate.run_simulation(tmp_path / "sim", patients=6, seed=0, modality="heart", progress=False)
    simulate.run_simulation(tmp_path / "sim", patients=6, seed=0, modality="lung", progress=False)
    inputs = [_ingest("circor", tmp_path / "sim" / "circor", tmp_path / "rec" / "heart"),
              _ingest("icbhi", tmp_path / "sim" / "icbhi", tmp_path / "rec" / "lung")]
    stats = build_bench(inputs, tmp_path / "b", workers=1)
    assert set(stats["rows_per_task"]) == set(TASKS)
    files = [tmp_path / "b" / f"{s}.jsonl" for s in SPLITS] + [tmp_path / "b" / "preference" / f"{s}.jsonl" for s in SPLITS]
    assert validate_files(files).errors == []


def test_impression_task_is_built_by_its_own_module(tmp_path):
    pytest.importorskip("clinlm.bench.impression")
    from clinlm.records import Record

    reports = [Record(record_id=f"openi/{i}", patient_id=f"openi/{i}", dataset="openi", modality="report",
                      findings=f"The heart is normal in size. Finding number {i}.", impression=f"No acute disease {i}.")
               for i in range(12)]
    stats = build_bench([write_records(reports, tmp_path / "rec")], tmp_path / "imp", tasks=["impression"], workers=1)
    assert stats["task"] == "impression" and stats["rows"] == 12
    with pytest.raises(ValueError, match="built on its own"):
        build_bench([tmp_path / "rec"], tmp_path / "x", tasks=["impression", "binary"])


def test_show_prints_counts_and_examples(built):
    from rich.console import Console

    from clinlm.bench.show import show_bench

    tmp, _, stats = built
    console = Console(width=200, record=True)
    show_bench(tmp / "bench", console)
    text = console.export_text()
    assert "rows per task" in text and "comparison" in text and "skipped 1 records without media" in text
    assert str(stats["rows"]) in text and "assistant:" in text
    with pytest.raises(FileNotFoundError, match="clinlm bench build"):
        show_bench(tmp / "nothing", console)
