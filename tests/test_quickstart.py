"""`clinlm quickstart` (heart + lung) end to end on tiny settings: every stage, outputs, resume."""

from __future__ import annotations

import json

import pytest

from clinlm.quickstart import run_quickstart

TINY = ["model.language_model=tiny", "model.tower_size=tiny", "model.num_audio_tokens=2", "features.max_seconds=4",
        "train.max_steps=2", "train.batch_size=8", "train.logging_steps=1"]
CATEGORIES = {"binary", "detection", "reporting", "reasoning", "differential", "comparison", "location"}


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "qs"
    rows = run_quickstart(out, seed=0, patients=8, overrides=TINY, warmup_steps=3)
    for path in ("encoder/clinlm_encoder.json", "model/config.json", "text_only/model/config.json",
                 "eval/metrics.json", "eval/report.md", "eval/predictions.jsonl", "timings.json"):
        assert (out / path).exists(), path
    # the audio model reads its audio through the warmed-up encoder folder
    assert json.loads((out / "model" / "provenance.json").read_text())
    systems = {r["system"] for r in rows}
    assert {"model", "majority", "text_only"} <= systems
    assert CATEGORIES <= {r["task"] for r in rows if r["system"] == "model"}
    stages = json.loads((out / "timings.json").read_text())
    assert {"simulate", "bench", "audio tower warm-up", "train (audio model)", "train (text-only baseline)", "eval"} <= set(stages)
    # a second run finds every stage done and only prints the table
    (out / "timings.json").unlink()
    again = run_quickstart(out, seed=0, patients=8, overrides=TINY, warmup_steps=3)
    assert again == json.loads((out / "eval" / "metrics.json").read_text())
    assert json.loads((out / "timings.json").read_text()) == {}
