"""DPO / mDPO training from a tiny SFT checkpoint: recipes, data, logged terms, frozen reference, margins."""

from __future__ import annotations

import json

import pytest
import torch
from dpo_toys import dpo_overrides, toy_sft_checkpoint
from safetensors.torch import load_file

import clinlm
from clinlm.train.preference_data import read_preference_rows
from clinlm.train.run import load_config, train_from_config

DPO, MDPO = "configs/stetholm_dpo.yaml", "configs/stetholm_mdpo.yaml"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_sft_checkpoint(tmp_path_factory.mktemp("dpo"))


def test_preference_recipes_take_top_level_init_and_data():
    cfg = load_config(DPO, ["init=qs/model", "data=bench/preference/train.jsonl", "dpo.beta=0.2", "train.max_steps=3"])
    assert cfg["stage"] == "dpo" and cfg["init"] == "qs/model" and cfg["data"] == "bench/preference/train.jsonl"
    assert cfg["dpo"]["beta"] == 0.2 and cfg["train"]["max_steps"] == 3
    mdpo = load_config(MDPO)
    assert mdpo["stage"] == "mdpo" and mdpo["dpo"]["conditional_weight"] > 0 and mdpo["dpo"]["anchor_weight"] > 0
    with pytest.raises(KeyError, match="known keys.*beta"):
        load_config(DPO, ["dpo.bta=0.2"])
    with pytest.raises(ValueError, match="stage must be"):
        load_config(DPO, ["stage=ppo"])
    with pytest.raises(ValueError, match="loss_type"):
        load_config(DPO, ["dpo.loss_type=kto"])
    with pytest.raises(ValueError, match="init is not set"):
        load_config(DPO, ["init=null"])
    with pytest.raises(ValueError, match="unknown degradation"):
        load_config(MDPO, ["dpo.augment=[hiss]"])
    with pytest.raises(ValueError, match="conditional_exclude"):
        load_config(MDPO, ["dpo.conditional_exclude=[hiss]"])


def test_preference_rows_resolve_paths_and_are_checked(toy, tmp_path):
    _, prefs, _ = toy
    rows = read_preference_rows(prefs["train"])
    assert rows and all(r["audios"][0].startswith("/") for r in rows)
    specs = [a for r in rows for a in r["rejected_audios"] if isinstance(a, dict)]
    paths = [a for r in rows for a in r["rejected_audios"] if isinstance(a, str)]
    assert specs and paths and all(s["path"].startswith("/") for s in specs) and all(p.startswith("/") for p in paths)

    row = json.loads(prefs["train"].read_text().splitlines()[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**row, "rejected_audios": row["rejected_audios"] * 2}) + "\n")
    with pytest.raises(ValueError, match="2 rejected_audios for 1 audios"):
        read_preference_rows(bad)
    bad.write_text(json.dumps({**row, "audios": []}) + "\n")
    with pytest.raises(ValueError, match="placeholder"):
        read_preference_rows(bad)
    bad.write_text(json.dumps({**row, "chosen": []}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: 'chosen'"):
        read_preference_rows(bad)


@pytest.mark.slow
def test_mdpo_recipe_logs_each_term_and_writes_a_loadable_checkpoint(toy, tmp_path):
    bench, prefs, sft = toy
    # without the recipe's noise augmentation of the real audio, so every degraded file is a rejected one
    ckpt = train_from_config(MDPO, dpo_overrides(sft, prefs["train"], tmp_path, steps=4) + ["dpo.augment=[]"])
    last = sorted((tmp_path / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    history = [h for h in json.loads((last / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(history) == 4
    for h in history:
        for key in ("loss/dpo", "loss/conditional", "loss/anchor", "rewards/chosen", "rewards/rejected", "rewards/margins",
                    "rewards/conditional_margins"):
            assert key in h, key
        assert h["loss"] == pytest.approx(h["loss/dpo"] + h["loss/conditional"] + h["loss/anchor"], rel=1e-4)
    # the degraded rejected audio was written once per (recording, spec), as float WAV
    n_specs = len({(a["path"], a["snr_db"]) for r in read_preference_rows(prefs["train"]) for a in r["rejected_audios"] if isinstance(a, dict)})
    assert len(list((tmp_path / "degraded_audio").glob("*.wav"))) == n_specs
    model = clinlm.load(ckpt)
    assert model.recipe["stage"] == "mdpo" and model.recipe["init"] == str(sft) and "data" in model.recipe["init_recipe"]
    from clinlm.infer import generate
    from clinlm.train.data import read_rows

    assert len(generate(model, read_rows(bench["test"])[:2], max_new_tokens=4)) == 2


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["dpo", "mdpo"])
def test_reference_stays_frozen_and_the_margin_grows(toy, tmp_path, stage):
    from clinlm.train.dpo import run_preference
    from clinlm.train.preference_data import GROUPS

    _, prefs, sft = toy
    # the loss mechanics on the rows as given (noise augmentation: test_conditional_exclusion_and_noise_augmentation...)
    cfg = load_config(DPO if stage == "dpo" else MDPO, dpo_overrides(sft, prefs["train"], tmp_path, steps=12) + ["dpo.augment=[]"])
    model, ref = clinlm.load(sft), clinlm.load(sft)
    model.train()
    rows = read_preference_rows(prefs["train"])
    trainer = run_preference(model, ref, rows, None, cfg, tmp_path)

    init = load_file(sft / "model.safetensors")
    ref_state = trainer.ref_model.state_dict()
    assert all(torch.equal(ref_state[k], v) for k, v in init.items())  # the reference did not move
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in init.items())  # the policy did
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())

    # on every training row: the policy now prefers chosen over rejected more than the reference does
    # (at the start policy = reference, so every margin was 0)
    model.eval()
    batch = trainer._prepare_inputs(trainer.data_collator(trainer.train_dataset.items))
    with torch.no_grad():
        parts = trainer.preference_parts(model, batch)
        start = trainer.preference_parts(trainer.ref_model, batch)
    assert start["rewards/margins"].abs().item() < 1e-4
    assert parts["rewards/margins"].item() > 0.1 and parts["rewards/accuracies"].item() >= 0.75
    assert parts["loss/dpo"].item() < start["loss/dpo"].item()
    if stage == "mdpo":
        assert set(GROUPS["mdpo"]) == {"chosen", "rejected", "conditional"}
        assert parts["rewards/conditional_margins"].item() > 0.05  # the answer now depends on the audio


def test_conditional_exclusion_and_noise_augmentation_of_the_real_audio(toy, tmp_path):
    from clinlm.signals.degrade import parse_specs
    from clinlm.train.preference_data import PreferenceCollator, encode_preference_rows
    from clinlm.train.sft import collator_for

    _, prefs, sft = toy
    model = clinlm.load(sft)
    rows = read_preference_rows(prefs["train"])
    noisy = [isinstance(r["rejected_audios"][0], dict) for r in rows]
    assert any(noisy) and not all(noisy)
    ds, skipped = encode_preference_rows(rows, model, "mdpo", 512, tmp_path / "deg", conditional_exclude=("noise",))
    assert not skipped and len(ds) == len(rows)
    # rows whose rejected audio is a noise spec keep DPO and anchor, not the conditional term
    assert [it["conditional_mask"] for it in ds.items] == [0.0 if n else 1.0 for n in noisy]
    for it, row, n in zip(ds.items, rows, noisy):
        assert it["conditional"]["audios"] == (row["audios"] if n else row["rejected_audios"])
    batch = PreferenceCollator(collator_for(model), ("chosen", "rejected", "conditional"))(ds.items[:3])
    assert batch["conditional_mask"].tolist() == [it["conditional_mask"] for it in ds.items[:3]]
    assert batch["input_ids"].shape[0] == 9 and batch["audio_features"].shape[0] == 9

    aug, _ = encode_preference_rows(rows, model, "dpo", 512, tmp_path / "deg", augment=parse_specs(["noise:snr=5"]), augment_fraction=0.5)
    changed = [it["chosen"]["audios"] != row["audios"] for it, row in zip(aug.items, rows)]
    assert any(changed) and not all(changed)  # about half the rows hear a noisy copy ...
    for it, row, c in zip(aug.items, rows, changed):
        assert it["rejected"]["audios"] == it["chosen"]["audios"]  # ... in both responses of the pair
        if c:
            assert it["chosen"]["audios"][0].startswith(str(tmp_path / "deg"))
    again, _ = encode_preference_rows(rows, model, "dpo", 512, tmp_path / "deg", augment=parse_specs(["noise:snr=5"]), augment_fraction=0.5)
    assert [it["chosen"]["audios"] for it in again.items] == [it["chosen"]["audios"] for it in aug.items]  # seeded
