"""`clinlm train CONFIG key.sub=value ...`: a recipe YAML + dotted overrides -> a checkpoint folder.

    clinlm train configs/stetholm_tiny.yaml data.train=bench/train.jsonl data.val=bench/val.jsonl
    clinlm train configs/stetholm_tiny.yaml train.epochs=3 model.language_model=/path/to/local/llm \
        'model.lora={r: 8, alpha: 32, dropout: 0.1, target_modules: [q_proj, v_proj]}'
    clinlm train configs/stetholm_tiny.yaml --resume      # continue a killed run

A recipe has four sections: `data` (JSONL paths, task filter), `features` (signals/features.py),
`model` (models/build.py) and `train` (train/sft.py). Override values are parsed as YAML
(`3` is an int, `null` is None, `[a, b]` a list); a key that is not in the recipe is an error,
so typos do not pass silently.

A recipe with `stage: dpo` or `stage: mdpo` is a preference recipe, trained by `clinlm.train.dpo`
from an SFT checkpoint (top-level `init=` and `data=` overrides; configs/stetholm_dpo.yaml).

Output (`train.output_dir`):
    model/          the self-describing checkpoint (clinlm.load / clinlm eval / clinlm ask)
    checkpoints/    the Trainer's resumable checkpoints
    prep/           tokenizer and feature statistics fitted on the training data
    feature_cache/  log-mel features per recording (reused by later runs)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SECTIONS = ("data", "features", "model", "train")
DATA_KEYS = {"train", "val", "tasks", "repeat"}


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The recipe with dotted `key.sub=value` overrides applied."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config not found: {path} (recipes live in configs/)")
    cfg = yaml.safe_load(path.read_text()) or {}
    if "stage" in cfg:  # a preference recipe (stage: dpo | mdpo) has its own keys and checks
        from clinlm.train.dpo import load_preference_config

        return load_preference_config(path, overrides)
    unknown = set(cfg) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)}; a recipe has {', '.join(SECTIONS)}")
    for section in SECTIONS:
        cfg.setdefault(section, {})
    for item in overrides or []:
        apply_override(cfg, item)
    return cfg


# Maps keyed by task name, empty in the recipes: an override may add a key to them
# (data.repeat.binary=3) where elsewhere an unknown key is a typo to report.
TASK_MAPS = {"data.repeat", "train.task_loss_weights"}


def apply_override(cfg: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ValueError(f"override {item!r} must look like section.key=value (e.g. train.epochs=3)")
    parts = key.strip().split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise KeyError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section of the recipe")
        node = node[part]
    if parts[-1] not in node and ".".join(parts[:-1]) not in TASK_MAPS:
        known = ", ".join(sorted(node)) or "(none)"
        raise KeyError(f"override {item!r}: no key {parts[-1]!r} there; known keys: {known}")
    node[parts[-1]] = yaml.safe_load(raw)


def train_from_config(config_path: str | Path, overrides: list[str] | None = None, resume: bool = False, console=None) -> Path:
    """Train the recipe; returns the checkpoint folder (output_dir/model)."""
    from transformers import set_seed

    from clinlm.models.build import build_model
    from clinlm.models.checkpoint import save_checkpoint
    from clinlm.train.data import read_rows, repeat_rows
    from clinlm.train.sft import run_sft

    cfg = load_config(config_path, overrides)
    if "stage" in cfg:  # a DPO / mDPO recipe
        from clinlm.train.dpo import train_preference

        return train_preference(cfg, resume=resume, console=console)
    resolved = copy.deepcopy(cfg)
    data, train = cfg["data"], cfg["train"]
    unknown = set(data) - DATA_KEYS
    if unknown:
        raise ValueError(f"unknown data settings {sorted(unknown)}; known: {sorted(DATA_KEYS)}")
    if not data.get("train"):
        raise ValueError("data.train is not set: pass data.train=path/to/train.jsonl")
    out = Path(train.get("output_dir") or "runs/clinlm")
    ckpts = out / "checkpoints"
    if not resume and ckpts.exists() and any(ckpts.glob("checkpoint-*")):
        raise ValueError(f"{ckpts} already holds checkpoints: pass --resume to continue, or choose another train.output_dir")
    out.mkdir(parents=True, exist_ok=True)

    tasks = data.get("tasks")
    train_rows = repeat_rows(read_rows(data["train"], tasks=tasks), data.get("repeat"))
    val_rows = read_rows(data["val"], tasks=tasks) if data.get("val") else None
    if not train_rows:
        raise ValueError(f"{data['train']} has no rows{f' for tasks {tasks}' if tasks else ''}")
    if console is not None:
        console.print(f"[bold]train[/] {len(train_rows)} rows" + (f", [bold]val[/] {len(val_rows)} rows" if val_rows else ""))

    set_seed(int(train.get("seed", 0)))  # the same seed builds the same initial weights
    model = build_model(cfg["model"], cfg["features"], train_rows, prep_dir=out / "prep", cache_dir=out / "feature_cache")
    if console is not None:
        for part, (trainable, total) in model.trainable_summary().items():
            console.print(f"  {part}: {trainable:,} trainable of {total:,} parameters")
    if int(train.get("tower_warmup_epochs") or 0) > 0 and not resume:  # a resumed run restores trained weights anyway
        from clinlm.train.media_warmup import warm_up_towers

        warm_up_towers(model, train_rows, int(train["tower_warmup_epochs"]), lr=float(train.get("tower_warmup_lr", 1e-3)),
                       seed=int(train.get("seed", 0)), console=console)
    run_sft(model, train_rows, val_rows, train, out, resume=resume, console=console)
    ckpt = save_checkpoint(model, model.tokenizer, model.features.cfg if model.features else None, resolved, out / "model")
    if console is not None:
        console.print(f"[green]checkpoint[/] {ckpt}")
    _finish_impression_checkpoint(ckpt, data["train"], val_rows, train, console)
    return ckpt


def _finish_impression_checkpoint(ckpt: Path, train_file: str, val_rows, train: dict[str, Any], console) -> None:
    """For findings -> impression rows: the retrieval index travels with the checkpoint (so `clinlm ask`
    prompts as the bench did), and the impression reranker is fitted on the validation rows."""
    from clinlm.bench.retrieval import attach_index

    if attach_index(train_file, ckpt) is None:
        return  # not impression rows, or a stale index (attach_index warns)
    if console is not None:
        console.print(f"[green]retrieval index[/] copied into {ckpt}")
    rows = [r for r in val_rows or [] if r.get("task") == "impression"]
    if not rows or not train.get("impression_reranker", True):
        return
    from clinlm.evaluate.impression_rerank import fit_for_checkpoint

    fit_for_checkpoint(ckpt, rows, batch_size=int(train.get("batch_size") or 16), console=console)
