"""Preference optimisation after SFT: DPO and multimodal DPO (mDPO) with the transformers Trainer.

    clinlm train configs/stetholm_dpo.yaml  init=qs/model data=bench/preference/train.jsonl
    clinlm train configs/stetholm_mdpo.yaml init=qs/model data=bench/preference/train.jsonl

A preference recipe has `stage: dpo | mdpo`, `init` (the SFT checkpoint: the policy starts from
it and a frozen copy of it is the reference model), `data` / `val` (preference JSONL),
`dpo:` (beta, loss type, mDPO weights: `clinlm.train.dpo_loss`; which rejected audio feeds the
conditional term and noise augmentation of the real audio: `clinlm.train.preference_data`),
`model: {freeze: ...}` and the same `train:` section as SFT (`clinlm.train.sft.training_arguments`). The output folder holds
`model/` (a normal clinlm checkpoint), `checkpoints/` (resumable) and `degraded_audio/` (the
rejected audio that the bench gives as degradation specs, written once).

Why not TRL's `DPOTrainer` (trl 1.16) on the composite model:
- it tokenises the prompt itself from the chat template, so the `<audio>` placeholder would not
  be expanded to the model's `num_audio_tokens` prefix slots, and no audio would reach the model;
- it scores responses through a fused LM head that calls the model's backbone (`base_model`)
  directly, bypassing `ClinModel.forward`/`embed`, where the audio embeddings are spliced in
  (see ../shared/docs/ENVIRONMENT.md, "TRL DPO with audio"); making that work means changing
  the composite model's forward;
- mDPO needs a third sequence per row (the chosen answer under the rejected audio) and two more
  loss terms, and `DPOTrainer._compute_loss` has no hook for either.
So the same loss is computed here in a Trainer subclass (`PreferenceTrainer.compute_loss`, the
formulas in `dpo_loss`), and tests/train/test_dpo_trl.py checks it against TRL's DPOTrainer on a
text-only tiny model: the loss and rewards agree to float precision.

The batch is [chosen x B, rejected x B (, chosen under rejected audio x B)] in one forward pass of
the policy and one, without gradients, of the reference. Dropout is switched off in both (as TRL
does): the log-ratio of a sequence must not change from one call to the next.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from clinlm.train.dpo_loss import LOSS_TYPES, preference_losses, sequence_logps
from clinlm.train.preference_data import GROUPS, STAGES, PreferenceCollator, encode_preference_rows, read_preference_rows
from clinlm.train.sft import ClinTrainer, collator_for, training_arguments

RECIPE_KEYS = {"stage", "init", "data", "val", "dpo", "model", "train"}
# dpo: section = the loss's settings (dpo_loss.preference_losses) + which audio the rows use (preference_data)
LOSS_DEFAULTS = {"beta": 0.1, "loss_type": "sigmoid", "conditional_weight": 1.0, "anchor_weight": 1.0, "anchor_delta": 0.0}
AUDIO_DEFAULTS = {"conditional_exclude": [], "augment": [], "augment_fraction": 0.5}
DPO_KEYS = set(LOSS_DEFAULTS) | set(AUDIO_DEFAULTS)
MODEL_KEYS = {"freeze"}


def load_preference_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The preference recipe with `key=value` / `section.key=value` overrides applied and checked."""
    import yaml

    from clinlm.train.run import apply_override

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config not found: {path} (recipes live in configs/)")
    cfg = yaml.safe_load(path.read_text()) or {}
    unknown = set(cfg) - RECIPE_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; a preference recipe has {', '.join(sorted(RECIPE_KEYS))}")
    for key in ("init", "data", "val"):
        cfg.setdefault(key, None)
    for key in ("dpo", "model", "train"):
        cfg[key] = cfg.get(key) or {}
    for item in overrides or []:
        apply_override(cfg, item)
    if cfg.get("stage") not in STAGES:
        raise ValueError(f"{path}: stage must be one of {', '.join(STAGES)}, not {cfg.get('stage')!r}")
    for section, known in (("dpo", DPO_KEYS), ("model", MODEL_KEYS)):
        bad = set(cfg[section]) - known
        if bad:
            raise ValueError(f"unknown {section} settings {sorted(bad)}; known: {sorted(known)}")
    if cfg["dpo"].get("loss_type", "sigmoid") not in LOSS_TYPES:
        raise ValueError(f"dpo.loss_type must be one of {', '.join(LOSS_TYPES)}, not {cfg['dpo']['loss_type']!r}")
    from clinlm.signals.degrade import DEGRADATIONS, parse_specs

    parse_specs(cfg["dpo"].get("augment") or [])  # a bad spec fails here, not after the model has loaded
    bad = set(cfg["dpo"].get("conditional_exclude") or []) - set(DEGRADATIONS)
    if bad:
        raise ValueError(f"dpo.conditional_exclude names unknown degradations {sorted(bad)}; known: {', '.join(DEGRADATIONS)}")
    if not cfg["init"]:
        raise ValueError("init is not set: pass init=path/to/sft/model (the checkpoint DPO starts from)")
    if not cfg["data"]:
        raise ValueError("data is not set: pass data=bench/preference/train.jsonl")
    return cfg


def disable_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


class PreferenceTrainer(ClinTrainer):
    """ClinTrainer (seeded length-grouped order, audio learning-rate scale) with the DPO / mDPO
    loss; every loss term and reward is logged by name (averaged over the logging interval)."""

    def __init__(self, *args, ref_model: torch.nn.Module, stage: str, dpo: dict[str, Any], **kwargs):
        super().__init__(*args, **kwargs)
        self.stage = stage
        self.dpo = {**LOSS_DEFAULTS, **{k: v for k, v in dpo.items() if k in LOSS_DEFAULTS}}
        if stage == "dpo":  # plain DPO: no conditional pair, no anchor
            self.dpo.update(conditional_weight=0.0, anchor_weight=0.0)
        self.ref_model = ref_model.to(self.args.device).eval()
        for p in self.ref_model.parameters():
            p.requires_grad_(False)
        self.model_accepts_loss_kwargs = False  # the loss is a mean per micro-batch: let the Trainer divide by grad_accum
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def _logps(self, model, inputs) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        groups = GROUPS[self.stage]
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], audio_features=inputs.get("audio_features"))
        logps, lengths = sequence_logps(out.logits, inputs["labels"])  # (groups x B,)
        return dict(zip(groups, logps.chunk(len(groups)))), dict(zip(groups, lengths.chunk(len(groups))))

    def preference_parts(self, model, inputs) -> dict[str, torch.Tensor]:
        policy, lengths = self._logps(model, inputs)
        with torch.no_grad():
            reference, _ = self._logps(self.ref_model, inputs)
        return preference_losses(policy, reference, lengths, conditional_mask=inputs.get("conditional_mask"), **self.dpo)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        parts = self.preference_parts(model, inputs)
        mode = "train" if model.training else "eval"
        for name, value in parts.items():
            if name != "loss":
                self._metrics[mode][name].append(float(value))
        return (parts["loss"], {}) if return_outputs else parts["loss"]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        logs.update({prefix + k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v})
        self._metrics[mode].clear()
        super().log(logs, start_time)


def run_preference(model, ref_model, train_rows, val_rows, cfg: dict[str, Any], out: Path, resume: bool = False, console=None) -> PreferenceTrainer:
    """Train `model` (in place) against the frozen `ref_model`; returns the Trainer."""
    from clinlm.signals.degrade import parse_specs

    stage, train_cfg = cfg["stage"], cfg["train"]
    max_length = int(train_cfg.get("max_length", 512))
    seed = int(train_cfg.get("seed", 0))
    degraded = out / "degraded_audio"
    audio = {**AUDIO_DEFAULTS, **{k: v for k, v in cfg["dpo"].items() if k in AUDIO_DEFAULTS}}
    options = dict(conditional_exclude=tuple(audio["conditional_exclude"] or ()), augment=parse_specs(audio["augment"] or []),
                   augment_fraction=float(audio["augment_fraction"]))
    train_ds, skipped = encode_preference_rows(train_rows, model, stage, max_length, degraded, seed, **options)
    # validation rows keep their real audio: the validation loss measures the preferences as given
    val_ds, val_skipped = (encode_preference_rows(val_rows, model, stage, max_length, degraded, seed, options["conditional_exclude"])
                           if val_rows else (None, []))
    skipped += val_skipped
    if skipped:
        (out / "skipped_rows.txt").write_text("\n".join(skipped) + "\n")
        if console is not None:
            console.print(f"[yellow]skipped {len(skipped)} preference rows[/] (listed with reasons in {out / 'skipped_rows.txt'})")
    if not len(train_ds):
        raise ValueError(f"no preference rows left to train on ({len(train_rows)} read; see {out / 'skipped_rows.txt'})")
    disable_dropout(model)
    disable_dropout(ref_model)
    has_val = val_ds is not None and len(val_ds) > 0
    trainer = PreferenceTrainer(
        model=model,
        ref_model=ref_model,
        stage=stage,
        dpo=cfg["dpo"],
        audio_lr_scale=float(train_cfg.get("audio_lr_scale", 1.0)),
        args=training_arguments(train_cfg, out, has_val=has_val),
        train_dataset=train_ds,
        eval_dataset=val_ds if has_val else None,
        data_collator=PreferenceCollator(collator_for(model), GROUPS[stage]),
    )
    last = None
    if resume:
        from transformers.trainer_utils import get_last_checkpoint

        ckpts = Path(trainer.args.output_dir)
        last = get_last_checkpoint(str(ckpts)) if ckpts.exists() else None
        if last is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {ckpts} to resume from; run without --resume")
    trainer.train(resume_from_checkpoint=last)
    return trainer


def train_preference(cfg: dict[str, Any], resume: bool = False, console=None) -> Path:
    """Run a loaded `stage: dpo | mdpo` recipe (`load_preference_config`; `clinlm.train.run.train_from_config`
    calls this for such recipes); returns the checkpoint folder (train.output_dir/model)."""
    from transformers import set_seed

    from clinlm.models.checkpoint import load_checkpoint, save_checkpoint

    resolved = copy.deepcopy(cfg)
    out = Path(cfg["train"].get("output_dir") or f"runs/{cfg['stage']}")
    ckpts = out / "checkpoints"
    if not resume and ckpts.exists() and any(ckpts.glob("checkpoint-*")):
        raise ValueError(f"{ckpts} already holds checkpoints: pass --resume to continue, or choose another train.output_dir")
    out.mkdir(parents=True, exist_ok=True)
    train_rows = read_preference_rows(cfg["data"])
    val_rows = read_preference_rows(cfg["val"]) if cfg.get("val") else None
    if not train_rows:
        raise ValueError(f"{cfg['data']} has no preference rows")
    if console is not None:
        console.print(f"[bold]{cfg['stage']}[/] from {cfg['init']}: {len(train_rows)} preference rows"
                      + (f", {len(val_rows)} for validation" if val_rows else ""))

    set_seed(int(cfg["train"].get("seed", 0)))
    model = load_checkpoint(cfg["init"])
    ref_model = load_checkpoint(cfg["init"])  # the frozen reference: the SFT model as it was
    model.train()
    model.freeze(dict(cfg["model"].get("freeze") or {}))
    if model.features is not None:
        model.features.cache_dir = out / "feature_cache"  # log-mels of the recordings, reused by later runs
    if console is not None:
        for part, (trainable, total) in model.trainable_summary().items():
            console.print(f"  {part}: {trainable:,} trainable of {total:,} parameters")
    run_preference(model, ref_model, train_rows, val_rows, cfg, out, resume=resume, console=console)
    resolved["init_recipe"] = model.recipe  # the SFT recipe the init checkpoint was made with
    ckpt = save_checkpoint(model, model.tokenizer, model.features.cfg if model.features else None, resolved, out / "model")
    if console is not None:
        console.print(f"[green]checkpoint[/] {ckpt}")
    return ckpt
