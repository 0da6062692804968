"""SFT with the Trainer: the loss falls, the best model is kept, a killed run resumes exactly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from clinlm_toys import tiny_overrides, write_toy_bench
from safetensors.torch import load_file

from clinlm.train.run import apply_override, load_config, train_from_config

RECIPE = "configs/stetholm_tiny.yaml"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_toy_bench(tmp_path_factory.mktemp("bench"), n_patients=12)  # 16 train rows


def weights(ckpt):
    return load_file(ckpt / "model.safetensors")


def test_training_lowers_the_loss_and_keeps_the_best_validation_model(bench, tmp_path):
    over = tiny_overrides(bench, tmp_path, val=True) + ["train.max_steps=12", "train.save_steps=4", "train.lr=0.01", "train.save_total_limit=null"]
    ckpt = train_from_config(RECIPE, over)
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-12" / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    evals = {h["step"]: h["eval_loss"] for h in state["log_history"] if "eval_loss" in h}
    assert losses[-1] < 0.7 * losses[0]
    assert sorted(evals) == [4, 8, 12]
    best_step = min(evals, key=evals.get)
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    best = weights(tmp_path / "checkpoints" / f"checkpoint-{best_step}")
    final = weights(ckpt)
    assert best.keys() == final.keys() and all(torch.equal(best[k], final[k]) for k in best)


def test_a_killed_run_resumes_to_the_same_weights(bench, tmp_path):
    # 16 rows, batch 4: 4 steps per epoch. The "kill" leaves checkpoint-6 (mid second epoch) as the
    # last thing on disk; resuming must replay steps 7-8 in that epoch's order and then reshuffle
    # for the third epoch exactly as the uninterrupted run did.
    over = lambda out: tiny_overrides(bench, out) + ["train.max_steps=10", "train.save_steps=6", "train.save_total_limit=null", "train.lr=0.01"]
    straight = train_from_config(RECIPE, over(tmp_path / "straight"))

    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "straight", killed)
    shutil.rmtree(killed / "model")
    shutil.rmtree(killed / "checkpoints" / "checkpoint-10")  # the Trainer's end-of-training save
    assert [p.name for p in (killed / "checkpoints").iterdir()] == ["checkpoint-6"]
    with pytest.raises(ValueError, match="--resume"):
        train_from_config(RECIPE, over(killed))  # refuses to start over on top of checkpoints
    resumed = train_from_config(RECIPE, over(killed), resume=True)

    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # and it did train after step 6: the step-6 weights are not the final ones
    mid = weights(killed / "checkpoints" / "checkpoint-6")
    assert any(not torch.equal(mid[k], a[k]) for k in a)


def test_resume_without_a_checkpoint_says_what_to_do(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_from_config(RECIPE, tiny_overrides(bench, tmp_path), resume=True)


def test_overrides_are_parsed_as_yaml_and_typos_are_caught():
    cfg = load_config(RECIPE, ["train.epochs=3", "model.lora={r: 8, alpha: 16}", "data.tasks=[binary, location]", "data.val=null"])
    assert cfg["train"]["epochs"] == 3 and cfg["model"]["lora"] == {"r": 8, "alpha": 16}
    assert cfg["data"]["tasks"] == ["binary", "location"] and cfg["data"]["val"] is None
    with pytest.raises(KeyError, match="known keys.*epochs"):
        apply_override(cfg, "train.epoch=3")
    with pytest.raises(KeyError, match="not a section"):
        apply_override(cfg, "trian.epochs=3")
    with pytest.raises(ValueError, match="section.key=value"):
        apply_override(cfg, "train.epochs")
    with pytest.raises(FileNotFoundError, match="config not found"):
        load_config("configs/nope.yaml")


def test_cli_train_takes_overrides_and_reports_mistakes(bench, tmp_path):
    from typer.testing import CliRunner

    from clinlm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", RECIPE, *tiny_overrides(bench, tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "model" / "model.safetensors").exists()
    res = runner.invoke(app, ["train", RECIPE, "train.epoch=3"])
    assert res.exit_code == 2 and "known keys" in res.output
    res = runner.invoke(app, ["train", RECIPE, *tiny_overrides(bench, tmp_path / "again"), f"data.train={tmp_path / 'none.jsonl'}"])
    assert res.exit_code == 2 and "not found" in res.output


def test_audio_parts_learn_at_their_own_rate(bench, tmp_path):
    from clinlm.models.build import build_model
    from clinlm.train.data import read_rows
    from clinlm.train.sft import run_sft

    cfg = load_config(RECIPE, tiny_overrides(bench, tmp_path) + ["train.audio_lr_scale=0.25", "train.lr=0.004", "train.max_steps=1"])
    rows = read_rows(bench["train"])
    model = build_model(cfg["model"], cfg["features"], rows)
    trainer = run_sft(model, rows, None, cfg["train"], tmp_path)
    by_param = {id(p): g["initial_lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        expected = 0.004 if name.startswith("language_model.") else 0.001
        assert by_param[id(p)] == pytest.approx(expected), name
    decays = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert decays[id(model.audio_tower.convs[0].bias)] == 0.0 and decays[id(model.audio_tower.convs[0].weight)] > 0
