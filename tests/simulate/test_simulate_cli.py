"""`clinlm simulate` from the command line, and the real adapters reading what it wrote.

The round-trip tests prove the simulator writes the native layouts faithfully: `run_ingest` with
the circor / icbhi / coughvid adapters reads every simulated recording with zero rejects, and the
labels it finds are the ones in the files (parsed here independently).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinlm.cli import app


def adapter(name: str):
    """Skip (with the reason) when the adapter module is not importable yet."""
    try:
        return importlib.import_module(f"clinlm.sources.{name}")
    except ImportError as exc:
        pytest.skip(f"clinlm.sources.{name} is not importable ({exc}); round trip not checked")


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "sim"
    result = CliRunner().invoke(app, ["simulate", str(out), "--patients", "6", "--seed", "0"])
    assert result.exit_code == 0, result.output
    for name in ("circor", "icbhi", "coughvid"):
        assert name in result.output and (out / name).is_dir()
    return out


def test_cli_writes_every_modality(sim):
    datasets = json.loads((sim / "simulation.json").read_text())["datasets"]
    assert {name: d["patients"] for name, d in datasets.items()} == {"circor": 6, "icbhi": 6, "coughvid": 6}
    assert all(d["status"] == "complete" and d["seed"] == 0 for d in datasets.values())
    assert len(list((sim / "circor" / "training_data").glob("*.txt"))) == 6
    assert len((sim / "icbhi" / "data_info" / "patient_diagnosis.csv").read_text().splitlines()) == 6
    assert len(list((sim / "coughvid").glob("*.json"))) == 6
    for name in ("circor", "icbhi", "coughvid"):
        assert (sim / "truth" / f"{name}.csv").is_file()


def test_cli_rejects_bad_input(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["simulate", str(tmp_path / "x"), "--modality", "eeg"])
    assert bad.exit_code == 2 and "unknown modality" in bad.output
    zero = runner.invoke(app, ["simulate", str(tmp_path / "y"), "--patients", "0"])
    assert zero.exit_code == 2 and "at least 1" in zero.output
    two = runner.invoke(app, ["simulate", str(tmp_path / "z"), "--patients", "1", "--modality", "heart+lung"])
    assert two.exit_code == 0, two.output
    assert sorted(p.name for p in (tmp_path / "z").iterdir()) == ["circor", "icbhi", "simulation.json", "truth"]


def _patient_meta(txt: Path) -> dict[str, str]:
    return dict(l[1:].split(": ", 1) for l in txt.read_bytes().decode().split("\r\n") if l.startswith("#"))


def test_circor_adapter_reads_everything(sim, tmp_path):
    adapter("circor")
    from clinlm.ingest import run_ingest

    result = run_ingest("circor", sim / "circor", tmp_path / "rec", progress=False)
    td = sim / "circor" / "training_data"
    assert result.rejects == []
    assert sorted(r.record_id for r in result.records) == sorted(f"circor/{p.stem}" for p in td.glob("*.wav"))
    for r in result.records:
        pid = r.record_id.split("/")[1].split("_")[0]
        meta = _patient_meta(td / f"{pid}.txt")
        assert r.murmur == meta["Murmur"].lower()
        assert r.abnormal == (meta["Outcome"] == "Abnormal")
        expected_locs = [] if meta["Murmur locations"] == "nan" else meta["Murmur locations"].split("+")
        assert sorted(r.murmur_locations) == sorted(expected_locs)
        if meta["Systolic murmur grading"] != "nan":
            assert r.systolic_grade == ["I", "II", "III", "IV", "V", "VI"].index(meta["Systolic murmur grading"].split("/")[0]) + 1
        tsv_rows = (td / f"{Path(r.media[0]).stem}.tsv").read_text().splitlines()
        assert len([e for e in r.events if e.kind == "heart_state"]) == len(tsv_rows)
        assert r.sample_rate == 4000 and r.site in ("AV", "PV", "TV", "MV")


def test_icbhi_adapter_reads_everything(sim, tmp_path):
    adapter("icbhi")
    from clinlm.ingest import run_ingest

    result = run_ingest("icbhi", sim / "icbhi", tmp_path / "rec", progress=False)
    folder = sim / "icbhi" / "audio_and_txt_files"
    diagnosis = dict(l.split(",") for l in (sim / "icbhi" / "data_info" / "patient_diagnosis.csv").read_text().splitlines())
    assert result.rejects == []
    assert sorted(r.record_id.split("/")[-1] for r in result.records) == sorted(p.stem for p in folder.glob("*.wav"))
    for r in result.records:
        stem = r.record_id.split("/")[-1]
        cycles = [l.split("\t") for l in (folder / f"{stem}.txt").read_text().splitlines()]
        assert r.crackle == any(c[2] == "1" for c in cycles)
        assert r.wheeze == any(c[3] == "1" for c in cycles)
        assert len([e for e in r.events if e.kind == "resp_cycle"]) == len(cycles)
        assert r.diagnosis == [diagnosis[stem.split("_")[0]].lower()]


def test_coughvid_adapter_reads_everything(sim, tmp_path):
    adapter("coughvid")
    from clinlm.ingest import run_ingest

    result = run_ingest("coughvid", sim / "coughvid", tmp_path / "rec", progress=False)
    assert result.rejects == [] and len(result.records) == 6
    for r in result.records:
        uid = Path(r.media[0]).stem
        meta = json.loads((sim / "coughvid" / f"{uid}.json").read_text())
        assert r.cough_status == (meta["status"].lower() if "status" in meta else None)
        assert r.sample_rate == 48000
