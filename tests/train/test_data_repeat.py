"""data.repeat: a task's rows appear n times per epoch; bad settings are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from clinlm_toys import tiny_overrides, write_toy_bench

from clinlm.train.data import read_rows, repeat_rows
from clinlm.train.run import load_config, train_from_config


def test_repeat_rows_copies_only_the_named_tasks():
    rows = [{"task": "binary", "i": 0}, {"task": "reporting", "i": 1}, {"task": "binary", "i": 2}]
    out = repeat_rows(rows, {"binary": 3})
    assert [r["i"] for r in out] == [0, 0, 0, 1, 2, 2, 2]
    assert repeat_rows(rows, {}) == rows and repeat_rows(rows, None) == rows
    for bad in ({"binary": 0}, {"binary": 1.5}, {"binary": True}):
        with pytest.raises(ValueError, match="data.repeat"):
            repeat_rows(rows, bad)


def test_a_repeated_task_trains_on_more_rows(tmp_path):
    from rich.console import Console

    bench = write_toy_bench(tmp_path / "bench", n_patients=6)
    rows = read_rows(bench["train"])
    n_binary = sum(r["task"] == "binary" for r in rows)
    assert 0 < n_binary < len(rows)
    recipe = Path(__file__).resolve().parents[2] / "configs" / "stetholm_tiny.yaml"
    console = Console(record=True, width=200)
    over = tiny_overrides(bench, tmp_path / "run", recipe=load_config(recipe)) + ["data.repeat={binary: 2}", "train.max_steps=1"]
    assert train_from_config(recipe, over, console=console).exists()
    assert f"train {len(rows) + n_binary} rows" in console.export_text()
