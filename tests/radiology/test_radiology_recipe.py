"""configs/radiology_impression.yaml: the embedded default trains; its documented LoRA line works on a local LM."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import torch
from clinlm_toys import REPO, make_llama_folder, write_impression_bench

import clinlm
from clinlm.infer import generate
from clinlm.train.data import read_rows
from clinlm.train.run import load_config, train_from_config

RECIPE = REPO / "configs" / "radiology_impression.yaml"
_bench = write_impression_bench


def _documented_lora_override() -> str:
    """The `'model.lora={...}'` argument the recipe's comment tells users to pass with a local LM."""
    text = RECIPE.read_text()
    (line,) = re.findall(r"'model\.lora=\{[^']*\}'", text)
    return shlex.split(line)[0]


def test_recipe_settings() -> None:
    cfg = load_config(RECIPE)
    assert cfg["model"]["audio_tower"] == "none" and cfg["model"]["language_model"] == "small"
    assert cfg["data"] == {"train": "bench/iu/train.jsonl", "val": "bench/iu/val.jsonl", "tasks": ["impression"]}
    assert cfg["train"]["output_dir"] == "runs/radiology"
    lora = load_config(RECIPE, [_documented_lora_override()])["model"]["lora"]
    assert (lora["r"], lora["alpha"], lora["dropout"]) == (8, 16, 0.05)  # Radiology-Llama2's settings


def test_embedded_default_trains_text_only(tmp_path: Path) -> None:
    bench = _bench(tmp_path / "bench")
    over = [f"data.train={bench['train']}", f"data.val={bench['val']}", "model.language_model=tiny",
            "train.max_steps=2", "train.batch_size=4", f"train.output_dir={tmp_path / 'run'}"]
    model = clinlm.load(train_from_config(RECIPE, over))
    assert model.audio_tower is None and model.features is None and not model.config.lora
    answers = generate(model, read_rows(bench["test"])[:2], max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_documented_lora_line_on_a_local_llm(tmp_path: Path) -> None:
    """Radiology-Llama2's LoRA on any local causal LM: only the adapter trains, the base stays fixed."""
    bench = _bench(tmp_path / "bench")
    llm = make_llama_folder(tmp_path / "llm")
    over = [f"data.train={bench['train']}", "data.val=null", f"model.language_model={llm}", _documented_lora_override(),
            "train.lr=5e-3", "train.max_steps=3", "train.batch_size=4", f"train.output_dir={tmp_path / 'run'}"]
    ckpt = train_from_config(RECIPE, over)
    model = clinlm.load(ckpt)
    assert model.config.lora["r"] == 8 and model.config.lora["lora_alpha"] == 16 and model.config.lora["lora_dropout"] == 0.05
    assert (ckpt / "adapter").is_dir()
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(llm).state_dict()
    trained = model.language_model.get_base_model().state_dict()
    lora_b = [v for k, v in trained.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero means it trained
    q_base = next(k for k in trained if k.endswith("self_attn.q_proj.base_layer.weight"))
    q_orig = q_base.replace("base_layer.", "")
    assert torch.equal(trained[q_base], original[q_orig])  # the pretrained weights did not move
    answers = generate(model, read_rows(bench["test"])[:2], max_new_tokens=4)
    assert len(answers) == 2



def test_clinlm_eval_scores_impression_rows_beside_the_baselines(tmp_path: Path) -> None:
    from clinlm.evaluate.run import evaluate

    bench = _bench(tmp_path / "bench")
    over = [f"data.train={bench['train']}", "data.val=null", "model.language_model=tiny", "train.max_steps=2",
            "train.batch_size=4", f"train.output_dir={tmp_path / 'run'}"]
    ckpt = train_from_config(RECIPE, over)
    rows = evaluate(ckpt, bench["test"], tmp_path / "eval", max_new_tokens=8, n_boot=50)
    systems = {r["system"] for r in rows if not r.get("paired_difference")}
    assert systems == {"model", "most_frequent", "tfidf_nn", "minilm_nn"}
    assert {r["system"] for r in rows if r.get("paired_difference")} == {f"model - {b}" for b in ("most_frequent", "tfidf_nn", "minilm_nn")}
    assert {r["metric"] for r in rows} == {"rouge1", "rouge2", "rougeL", "bertscore_f1"}
    assert {r["subset"] for r in rows} == {"all"}  # 4 distinct training impressions: all are "templates"
    # The test findings are copies of training findings: retrieval finds the exact impression.
    assert next(r["value"] for r in rows if r["system"] == "tfidf_nn" and r["metric"] == "rouge1") == 1.0
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved == rows
    preds = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and set(preds[0]["predictions"]) == systems
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Abnormal subset" in report and "0.4185" in report and "not a like-for-like comparison" in report
