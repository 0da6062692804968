"""`clinlm probe`: patient-level splits, tasks from labels, AUROC with CIs, outputs, merging runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from align_fixtures import ALIGN_CONFIG, TINY_ALIGN, tiny_teacher, toy_recs  # noqa: F401  (pytest fixtures)
from typer.testing import CliRunner

from clinlm.cli import app
from clinlm.probe.report import ROW_KEYS, summarise
from clinlm.probe.run import evaluate_task, probe_records, run_probe, unit_split
from clinlm.probe.tasks import probe_tasks
from clinlm.records import RECORDS_FILE, Record, atomic_write_table, records_to_table


def tiny_config(tmp_path, recs):
    """An align recipe file with the tiny settings, for builtin:random's features in the probe."""
    from clinlm.align.run import load_align_config

    import yaml

    cfg = load_align_config(ALIGN_CONFIG, [f"data.records=[{recs['circor']},{recs['icbhi']}]", *TINY_ALIGN])
    path = tmp_path / "align_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_probe_units_never_put_a_patient_on_both_sides(toy_recs):
    records, _ = probe_records(list(toy_recs.values()))
    split_of = {r.patient_id: r.split for r in records}
    tasks = {t.name: t for t in probe_tasks(records)}
    assert {"circor/murmur", "circor/abnormal", "icbhi/crackle", "icbhi/wheeze", "icbhi/diagnosis:copd"} <= set(tasks)
    assert tasks["circor/murmur"].unit == "patient" and tasks["icbhi/crackle"].unit == "recording"
    for task in tasks.values():
        side = unit_split(task, split_of)
        train = {task.patient[u] for u, s in side.items() if s == "train"}
        test = {task.patient[u] for u, s in side.items() if s == "test"}
        assert train and test and not train & test, task.name
    # Two records of the crackle task from one patient are always on the same side.
    crackle = tasks["icbhi/crackle"]
    by_patient = {}
    for u, s in unit_split(crackle, split_of).items():
        by_patient.setdefault(crackle.patient[u], set()).add(s)
    assert all(len(s) == 1 for s in by_patient.values()) and max(len(crackle.records[u]) for u in crackle.records) == 1


def test_a_patient_in_two_splits_is_refused(tmp_path, toy_recs):
    from clinlm.records import read_records

    records = read_records(toy_recs["circor"])
    records[0].split, records[1].split = "train", "test"  # the two recordings of patient 0
    atomic_write_table(records_to_table(records), tmp_path / "bad" / RECORDS_FILE)
    with pytest.raises(ValueError, match="splits"):
        probe_records([tmp_path / "bad"])


def _planted(task, signal: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Record embeddings whose first dimension carries the task label with strength `signal`."""
    rng = np.random.default_rng(seed)
    emb = {}
    for u, rids in task.records.items():
        for r in rids:
            v = rng.standard_normal(8)
            v[0] += signal * (1.0 if task.labels[u] else -1.0)
            emb[r] = v
    return emb


def test_probe_finds_a_planted_signal_and_not_a_missing_one(toy_recs):
    records, _ = probe_records(list(toy_recs.values()))
    split_of = {r.patient_id: r.split for r in records}
    task = next(t for t in probe_tasks(records) if t.name == "icbhi/crackle")
    strong = evaluate_task(task, _planted(task, 4.0), split_of, cv=None, min_train=2, min_test=1, seed=0)
    none = evaluate_task(task, _planted(task, 0.0), split_of, cv=None, min_train=2, min_test=1, seed=0)
    from clinlm.probe.run import auroc_ci

    hi = auroc_ci(strong["labels"], strong["scores"], strong["patients"])
    lo = auroc_ci(none["labels"], none["scores"], none["patients"])
    assert hi.value > 0.95 and hi.low > 0.8
    assert lo.low < 0.5 < lo.high
    assert strong["n_test"] == sum(1 for u in task.labels if split_of[task.patient[u]] == "test")


def test_too_few_units_is_a_listed_skip_and_cv_scores_every_unit_once(toy_recs):
    records, _ = probe_records(list(toy_recs.values()))
    split_of = {r.patient_id: r.split for r in records}
    task = next(t for t in probe_tasks(records) if t.name == "circor/murmur")
    res = evaluate_task(task, _planted(task, 1.0), split_of, cv=None, min_train=5, min_test=50, seed=0)
    assert res["status"] == "skipped" and "test" in res["reason"] and "need 50" in res["reason"]
    cv = evaluate_task(task, _planted(task, 1.0), split_of, cv=3, min_train=5, min_test=3, seed=0)
    assert cv["status"] == "ok" and sorted(cv["units"]) == sorted(task.labels)  # every patient, once
    assert cv["n_test"] == len(task.labels) and cv["n_train"] < len(task.labels)


def test_identical_encoders_differ_by_exactly_zero():
    scores = [{"encoder": e, "task": t, "unit": f"{t}{i}", "patient": f"p{i}", "label": bool(i % 2), "score": float((i * 7) % 5)}
              for e in ("a", "b") for t in ("t1", "t2") for i in range(12)]
    rows = [{"encoder": e, "task": t, "auroc": 0.6, "ci_low": 0.4, "ci_high": 0.8, "n_train": 10, "n_test": 12}
            for e in ("a", "b") for t in ("t1", "t2")]
    s = summarise(rows, scores, [], baseline="a")
    assert s["difference_to_baseline"]["b"] == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert s["mean_auroc"]["a"]["ci_low"] <= s["mean_auroc"]["a"]["mean"] <= s["mean_auroc"]["a"]["ci_high"]


def test_simulator_truth_tables_become_tasks(tmp_path):
    root = tmp_path / "sim"
    (root / "truth").mkdir(parents=True)
    (root / "simulation.json").write_text("{}")
    (root / "truth" / "circor.csv").write_text(
        "patient_id,lesion,s3,s4\n" + "".join(f"{i},{'aortic stenosis' if i % 2 else 'normal'},{i % 3 == 0},False\n" for i in range(6)))
    records = [Record(record_id=f"circor/{i}_AV", patient_id=f"circor/{i}", dataset="circor", modality="heart",
                      media=["/x.wav"], source_path=str(root / "circor" / "training_data" / f"{i}.txt")) for i in range(6)]
    tasks = {t.name: t for t in probe_tasks(records)}
    assert set(tasks) == {"circor/sim_lesion:aortic stenosis", "circor/sim_s3", "circor/sim_s4"}  # two lesions: one task
    assert tasks["circor/sim_s3"].labels == {f"circor/{i}": i % 3 == 0 for i in range(6)}


def test_probe_end_to_end_with_merge_and_cli(toy_recs, tiny_teacher, tmp_path):
    from clinlm.align.run import align, load_align_config

    cfg_path = tiny_config(tmp_path, toy_recs)
    aligned = align(load_align_config(cfg_path, [f"model.teacher={tiny_teacher}", f"train.output_dir={tmp_path / 'a'}"]),
                    progress=False)["encoder"]
    recs = [str(toy_recs["circor"]), str(toy_recs["icbhi"])]
    before = run_probe(["builtin:random", *recs], tmp_path / "before", config=cfg_path, min_train=3, min_test=2, progress=False)
    after = run_probe([str(aligned), *recs], tmp_path / "after", config=cfg_path, min_train=3, min_test=2, progress=False)
    assert list(after["mean_auroc"]) == [str(aligned)] and list(before["mean_auroc"]) == ["builtin:random"]
    rows = json.loads((tmp_path / "after" / "probe.json").read_text())
    assert rows and all(tuple(r) == ROW_KEYS for r in rows)
    assert {"circor/murmur", "icbhi/crackle"} <= {r["task"] for r in rows}
    assert all(0 <= r["ci_low"] <= r["auroc"] <= r["ci_high"] <= 1 for r in rows)
    assert before["skipped"] and all(s["reason"] for s in before["skipped"])  # e.g. the wheeze task on 1-s toys
    for name in ("probe.md", "probe.png", "summary.json", "scores.jsonl"):
        assert (tmp_path / "after" / name).stat().st_size > 0
    res = CliRunner().invoke(app, ["probe", "--merge", str(tmp_path / "before"), "--merge", str(tmp_path / "after"),
                                   "--out", str(tmp_path / "both")])
    assert res.exit_code == 0, res.output
    both = json.loads((tmp_path / "both" / "summary.json").read_text())
    assert both["baseline"] == "builtin:random" and str(aligned) in both["difference_to_baseline"]
    md = (tmp_path / "both" / "probe.md").read_text()
    assert "builtin:random" in md and "mean AUROC" in md and "Skipped tasks" in md
    res = CliRunner().invoke(app, ["probe", "builtin:random", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "ingest folder" in res.output
