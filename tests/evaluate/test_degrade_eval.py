"""`clinlm eval --degrade`: per-condition metric rows, degraded audio that the model really hears, table and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from dpo_toys import toy_sft_checkpoint
from typer.testing import CliRunner

from clinlm.cli import app


def _bench_schema(path):
    """The toy rows' answers in the bench schema the evaluator scores (binary murmur question)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r["answer"] = {"finding": "murmur", "label": "yes" if r["answer"]["murmur"] == "present" else "no"}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    bench, _, ckpt = toy_sft_checkpoint(root, steps=20)
    for split in ("train", "test"):
        _bench_schema(bench[split])
    return bench, ckpt


@pytest.mark.slow
def test_every_system_and_condition_gets_its_rows_and_hears_the_degraded_audio(toy, tmp_path, monkeypatch):
    import clinlm.evaluate.report as report
    from clinlm.evaluate.robustness import evaluate_robustness

    # each condition's own report plots (tested with the evaluator) cost seconds apiece: skip them here
    monkeypatch.setattr(report, "write_plots", lambda *a, **k: {})

    bench, ckpt = toy
    out = tmp_path / "robust"
    monkeypatch.chdir(tmp_path)  # a relative --out, as users type it: the degraded rows must still find their audio
    rows = evaluate_robustness(ckpt, bench["test"], "robust", ["noise:snr=0,20", "clipping"], [f"twin={ckpt}"],
                               batch_size=2, max_new_tokens=6, n_boot=50)
    conditions = ["clean", "noise:snr=0", "noise:snr=20", "clipping"]
    assert json.loads((out / "metrics.json").read_text()) == rows
    got = {(r["system"], r["condition"]) for r in rows if (r["task"], r["metric"]) == ("binary", "accuracy")}
    assert got == {(s, c) for s in ("sft", "twin") for c in conditions} | {("majority", "clean")}
    for r in rows:
        assert {"system", "task", "metric", "value", "ci_low", "ci_high", "n", "condition"} <= set(r)

    # the degraded copies have the requested SNR, and the condition's rows point at them
    clean_rows = [json.loads(line) for line in bench["test"].read_text().splitlines()]
    noisy_rows = [json.loads(line) for line in (out / "conditions" / "noise_snr=0.jsonl").read_text().splitlines()]
    assert len(noisy_rows) == len(clean_rows)
    for clean, noisy in zip(clean_rows, noisy_rows):
        path = noisy["audios"][0]
        assert path.startswith(str(out / "audio" / "noise_snr=0"))
        x, _ = sf.read(bench["test"].parent / clean["audios"][0], dtype="float32")
        y, _ = sf.read(path, dtype="float32")
        assert 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2)) == pytest.approx(0.0, abs=0.05)  # PCM_16 source

    # the model heard the noise: its P(yes) differs from the clean run on the same rows
    def yes_probs(condition):
        lines = (out / "sft" / condition / "predictions.jsonl").read_text().splitlines()
        return [p["yes_prob"] for p in map(json.loads, lines) if p["system"] == "model"]

    assert yes_probs("clean") != yes_probs("noise_snr=0")
    assert (out / "sft" / "noise_snr=0" / "report.md").exists()

    md = (out / "robustness.md").read_text()
    assert "## binary: accuracy" in md and "| noise:snr=0 |" in md and "contradiction_rate (lower is better)" in md
    assert (out / "plots" / "robustness_snr.png").stat().st_size > 0 and (out / "plots" / "robustness_conditions.png").stat().st_size > 0
    # the twin is the same checkpoint: on the same rows and noisy files, every paired difference is exactly 0
    paired = json.loads((out / "paired.json").read_text())
    assert {(r["condition"], r["metric"]) for r in paired} == {(c, m) for c in conditions for m in ("accuracy", "contradiction_rate")}
    assert all(r["system"] == "twin" and r["minus"] == "sft" and r["difference"] == r["ci_low"] == r["ci_high"] == 0.0 for r in paired)
    assert "## Paired differences: each system minus sft" in md
    info = json.loads((out / "robustness.json").read_text())
    assert [c["label"] for c in info["conditions"]] == conditions and info["conditions"][1]["snr_db"] == 0.0


def test_cli_takes_several_specs_after_one_degrade(monkeypatch, tmp_path):
    import clinlm.evaluate.robustness as robustness

    seen = {}
    monkeypatch.setattr(robustness, "evaluate_robustness", lambda *a, **k: seen.update(args=a, kwargs=k))
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "runs/dpo/model", "bench/test.jsonl", "--degrade", "noise:snr=0,10,20", "clipping", "band-limit", "dropout"])
    assert result.exit_code == 0, result.output
    checkpoint, data, out, specs, compare = seen["args"]
    assert specs == ["noise:snr=0,10,20", "clipping", "band-limit", "dropout"] and out is None and compare == []
    result = runner.invoke(app, ["eval", "a/model", "t.jsonl", "--compare", "mdpo=runs/mdpo/model", "--compare", "runs/sft/model", "-o", str(tmp_path)])
    assert result.exit_code == 0 and seen["args"][3] == [] and seen["args"][4] == ["mdpo=runs/mdpo/model", "runs/sft/model"]

    result = runner.invoke(app, ["eval", "a/model", "t.jsonl", "clipping", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "after --degrade" in result.output
    result = runner.invoke(app, ["eval", "a/model", "t.jsonl"])
    assert result.exit_code == 2 and "--out is required" in result.output


def test_bad_specs_and_systems_are_refused_before_any_work(toy, tmp_path):
    from clinlm.evaluate.robustness import evaluate_robustness, parse_systems

    bench, ckpt = toy
    with pytest.raises(ValueError, match="unknown degradation"):
        evaluate_robustness(ckpt, bench["test"], tmp_path, ["hiss"])
    with pytest.raises(ValueError, match="used twice"):
        parse_systems(ckpt, [str(ckpt)])
    with pytest.raises(FileNotFoundError, match="not found"):
        parse_systems(ckpt, ["x=/no/such/model"])
    assert [n for n, _ in parse_systems(ckpt, [f"b={ckpt}"])] == ["sft", "b"]
