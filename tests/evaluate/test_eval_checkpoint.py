"""`evaluate` on a real tiny trained checkpoint and its text-only twin (slow: trains two models)."""

from __future__ import annotations

import json

import pytest
from clinlm_toys import tiny_overrides, write_toy_bench

RECIPE = "configs/stetholm_tiny.yaml"


def _facts_schema(path):
    """The toy bench's binary rows with `answer` in the bench schema the evaluator scores against."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r["answer"] = {"finding": "murmur", "label": "yes" if r["answer"]["murmur"] == "present" else "no"}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.mark.slow
def test_evaluate_a_tiny_checkpoint_and_its_text_only_twin(tmp_path):
    import clinlm
    from clinlm.evaluate.run import evaluate, prompt_of
    from clinlm.infer import generate
    from clinlm.train.data import read_rows
    from clinlm.train.run import train_from_config

    bench = write_toy_bench(tmp_path / "bench", n_patients=12, comparison=False)
    for split in ("train", "test"):
        _facts_schema(bench[split])
    model = train_from_config(RECIPE, tiny_overrides(bench, tmp_path / "audio"))
    text_only = train_from_config(RECIPE, tiny_overrides(bench, tmp_path / "text") + ["model.audio_tower=none"])

    out = tmp_path / "eval"
    rows = evaluate(model, bench["test"], out, text_only=text_only, batch_size=2, max_new_tokens=6, n_boot=100)

    index = {(r["system"], r["task"], r["metric"]): r for r in rows}
    for system in ("model", "majority", "text_only"):
        acc = index[(system, "binary", "accuracy")]
        assert acc["n"] == 2 and (acc["value"] is None or 0.0 <= acc["value"] <= 1.0)
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    model_preds = [p for p in preds if p["system"] == "model"]
    assert all(0.0 <= p["yes_prob"] <= 1.0 for p in model_preds)
    # what the evaluator recorded is what the model says to the same prompts (greedy, deterministic)
    test_rows = read_rows(bench["test"])
    direct = generate(clinlm.load(model), [{**r, "messages": prompt_of(r)} for r in test_rows], max_new_tokens=6, batch_size=2)
    assert [p["prediction"] for p in model_preds] == direct
    assert "text-only**: `" in (out / "report.md").read_text()
