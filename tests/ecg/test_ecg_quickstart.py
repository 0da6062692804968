"""`clinlm ingest --option key=value` and `clinlm quickstart --modality ecg` on tiny settings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clinlm.cli import app
from clinlm.ingest import parse_options
from clinlm.quickstart import run_quickstart
from clinlm.records import read_records_table


@pytest.mark.parametrize("items, expected", [
    (["sampling_rate=100"], {"sampling_rate": 100}),
    (["sampling-rate=500"], {"sampling_rate": 500}),
    ([], {}),
])
def test_options_are_typed_keyword_arguments_of_the_adapter(items, expected):
    assert parse_options("ptbxl", items) == expected


@pytest.mark.parametrize("items, message", [
    (["rate=100"], r"adapter ptbxl has no option 'rate'; its options: sampling_rate \(default 500\)"),
    (["sampling_rate"], r"must look like key=value"),
])
def test_bad_options_say_what_the_adapter_takes(items, message):
    with pytest.raises(ValueError, match=message):
        parse_options("ptbxl", items)


@pytest.mark.shared_data
def test_ingest_ptbxl_at_100_hz_from_the_command_line(shared_data, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", "ptbxl", str(shared_data / "ptbxl"), "--out", str(tmp_path / "rec"), "--option", "sampling_rate=100"])
    assert res.exit_code == 0, res.output
    table = read_records_table(tmp_path / "rec").to_pylist()
    assert table and all("/records100/" in r["media"][0] and r["sample_rate"] == 100 for r in table)
    assert json.loads((tmp_path / "rec" / "summary.json").read_text())["options"] == {"sampling_rate": 100}
    res = runner.invoke(app, ["ingest", "ptbxl", str(shared_data / "ptbxl"), "--out", str(tmp_path / "x"), "--option", "hz=100"])
    assert res.exit_code == 2 and "has no option 'hz'" in res.output


@pytest.mark.slow
def test_ecg_quickstart_runs_end_to_end_on_tiny_settings(tmp_path):
    tiny = ["model.language_model=tiny", "model.ecg_tower_size=tiny", "model.num_ecg_tokens=2", "train.max_steps=2",
            "train.batch_size=8", "train.logging_steps=1"]
    # 18 simulated patients, seed 1: the official test fold (strat_fold 10) holds an AF and a sinus tachycardia ECG
    rows = run_quickstart(tmp_path / "qs", seed=1, patients=18, modality="ecg", overrides=tiny)
    systems = {r["system"] for r in rows}
    assert systems == {"model", "majority", "text_only"}
    tasks = {r["task"] for r in rows}
    assert {"ecg_closed", "ecg_report", "ecg_mcq", "ecg_conversation", "ecg_class:af"} <= tasks
    af = [r for r in rows if r["task"] == "ecg_closed" and r["metric"] == "af_accuracy"]
    assert {r["system"] for r in af} == systems and all(r["n"] == 2 for r in af)
    rec = read_records_table(tmp_path / "qs" / "rec" / "ecg").to_pylist()
    assert len(rec) == 18 and all("/records100/" in r["media"][0] for r in rec)  # ingested at 100 Hz
    assert (tmp_path / "qs" / "model" / "ecg_features.json").exists() and (tmp_path / "qs" / "eval" / "report.md").exists()
    timings = json.loads((tmp_path / "qs" / "timings.json").read_text())
    assert {"simulate", "ingest ecg", "bench", "train (ECG model)", "eval"} <= set(timings)
    # a second call finds every stage done and only reprints the figures
    again = run_quickstart(tmp_path / "qs", seed=1, patients=18, modality="ecg", overrides=tiny)
    assert again == json.loads((tmp_path / "qs" / "eval" / "metrics.json").read_text())
