"""Every shipped training recipe in configs/ runs, on tiny data, and gives a loadable checkpoint."""

from __future__ import annotations

import pytest
from clinlm_toys import shipped_configs, tiny_overrides, write_toy_bench

import clinlm
from clinlm.infer import generate
from clinlm.train.data import read_rows
from clinlm.train.run import SECTIONS, load_config, train_from_config

# The audio SFT recipes (data/features/model/train sections); other trainers' configs, and the
# ECG / image recipes (tests/ecg/test_ecg_model.py, on ECG rows), have their own tests.
RECIPES = [p for p in shipped_configs() if set(load_config(p)) == set(SECTIONS) and "audio_tower" in load_config(p)["model"]
           and all(str(load_config(p)["model"].get(k, "none")).lower() == "none" for k in ("ecg_tower", "vision_tower"))]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_toy_bench(tmp_path_factory.mktemp("bench"), n_patients=8, impression=True)


def test_the_quickstart_recipes_are_shipped():
    assert {"stetholm_tiny.yaml", "auscultation_real.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipe_trains_on_tiny_data(path, bench, tmp_path):
    recipe = load_config(path)
    over = tiny_overrides(bench, tmp_path, val=True, recipe=recipe)
    ckpt = train_from_config(path, over)
    model = clinlm.load(ckpt)
    assert model.recipe == load_config(path, over)  # the resolved config travels with the model
    assert (model.audio_tower is None) == (str(recipe["model"]["audio_tower"]).lower() == "none")
    rows = read_rows(bench["test"], tasks=recipe["data"].get("tasks"))
    answers = generate(model, rows[:3], max_new_tokens=4)
    assert len(answers) == len(rows[:3]) and all(isinstance(a, str) for a in answers)


def test_text_only_variant_of_the_default_recipe(bench, tmp_path):
    path = next(p for p in RECIPES if p.name == "stetholm_tiny.yaml")
    ckpt = train_from_config(path, tiny_overrides(bench, tmp_path) + ["model.audio_tower=none"])
    model = clinlm.load(ckpt)
    assert model.audio_tower is None and model.features is None
    assert not (ckpt / "features.json").exists()
    rows = read_rows(bench["test"])
    assert len(generate(model, rows[:2], max_new_tokens=3)) == 2  # audio rows, placeholders stripped


@pytest.mark.shared_data
def test_real_recipe_on_the_shared_circor_and_icbhi_samples(shared_data, tmp_path):
    from clinlm.bench.build import build_bench
    from clinlm.ingest import run_ingest

    run_ingest("circor", shared_data / "circor_physionet2022", tmp_path / "rec" / "circor", seed=0)
    run_ingest("icbhi", shared_data / "icbhi2017_respiratory", tmp_path / "rec" / "icbhi", seed=0)
    build_bench([tmp_path / "rec" / "circor", tmp_path / "rec" / "icbhi"], tmp_path / "bench", seed=0, workers=1)
    path = next(p for p in RECIPES if p.name == "auscultation_real.yaml")
    bench = {s: tmp_path / "bench" / f"{s}.jsonl" for s in ("train", "val", "test")}
    over = tiny_overrides(bench, tmp_path / "run", val=True) + ["features.max_seconds=3", "data.tasks=[binary]"]
    ckpt = train_from_config(path, over)
    rows = read_rows(bench["test"], tasks=["binary"])
    assert rows and {r["dataset"] for r in read_rows(bench["train"])} >= {"circor"}
    model = clinlm.load(ckpt)
    assert model.features.cfg.max_seconds == 3 and model.features.cfg.sample_rate == 4000
    assert len(generate(model, rows[:4], max_new_tokens=4)) == len(rows[:4])
