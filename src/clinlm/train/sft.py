"""Supervised fine-tuning with the transformers Trainer: loss on assistant tokens only.

The Trainer does the loop, mixed precision, checkpointing, resume and multi-GPU; this module only
supplies the data (encoded rows + `Collator`), a length-grouped sampler whose order depends on
the seed and the epoch alone, which is what makes a resumed run end with the very weights of an
uninterrupted one (the Trainer's own LengthGroupedSampler draws from the global RNG, whose state
at an epoch start differs after a resume), and a separate learning rate for the audio parts
(`train.audio_lr_scale`).

Several GPUs, unchanged code (one process per GPU, data parallel):

    accelerate launch -m clinlm.cli train configs/stetholm_tiny.yaml train.batch_size=8
    torchrun --nproc_per_node 4 -m clinlm.cli train configs/stetholm_tiny.yaml

bf16 is used where the GPU supports it, fp16 on older GPUs, fp32 on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from clinlm.models.media import model_kinds, tokens_per_item
from clinlm.train.collator import Collator, MediaSlot, encode_row

TRAIN_KEYS = {
    "output_dir", "seed", "epochs", "max_steps", "batch_size", "grad_accum", "lr", "weight_decay",
    "warmup", "scheduler", "max_length", "save_steps", "save_total_limit", "logging_steps", "max_grad_norm",
    "audio_lr_scale", "tower_warmup_epochs", "tower_warmup_lr",  # the last two: train/media_warmup.py, before SFT
    "task_loss_weights",
    "impression_reranker",  # findings -> impression: fit evaluate/impression_rerank.py on val after training (default true)
}


class EncodedRows(Dataset):
    """Rows tokenised once up front (lengths are needed for grouping anyway)."""

    def __init__(self, items: list[dict[str, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def task_weights(weights: dict[str, float] | None) -> dict[str, float]:
    """`train.task_loss_weights` checked: {task: weight > 0}."""
    out = {}
    for task, w in (weights or {}).items():
        try:
            out[str(task)] = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"train.task_loss_weights.{task}={w!r} is not a number") from None
        if not out[str(task)] > 0:
            raise ValueError(f"train.task_loss_weights.{task}={w!r} must be > 0 (leave a task out with data.tasks instead)")
    return out


def encode_rows(rows: list[dict[str, Any]], model, max_length: int,
                loss_weights: dict[str, float] | None = None) -> tuple[EncodedRows, list[str]]:
    """(dataset, skipped) where skipped names each row longer than max_length tokens.

    `loss_weights` ({task: weight}, others 1): each item then carries "loss_weight", which
    multiplies the loss of every one of its answer tokens (the collator stacks them).
    """
    counts = tokens_per_item(model)  # {kind: prefix tokens} of the media the model takes; {} = text-only
    items, skipped = [], []
    for row in rows:
        item = encode_row(row, model.tokenizer, counts, text_only=not counts)
        if loss_weights:
            item["loss_weight"] = loss_weights.get(row.get("task"), 1.0)
        if len(item["input_ids"]) > max_length:
            skipped.append(f"{item['row']}: {len(item['input_ids'])} tokens > train.max_length={max_length}")
            continue
        items.append(item)
    return EncodedRows(items), skipped


def collator_for(model, padding_side: str = "right") -> Collator:
    # Audio features come from `model.features` (the server swaps in in-memory features there);
    # ECG and image features from `model.media_features`.
    other = getattr(model, "media_features", None) or {}
    return Collator(
        pad_token_id=model.tokenizer.pad_token_id,
        audio_token_id=None if model.audio_tower is None else model.config.audio_token_id,
        num_audio_tokens=model.config.num_audio_tokens,
        features=model.features,
        padding_side=padding_side,
        media={k.name: MediaSlot(getattr(model.config, k.token_id_key), getattr(model.config, k.num_tokens_key), other.get(k.name))
               for k in model_kinds(model) if k.name != "audio"},
    )


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from a generator seeded with (seed, epoch)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls this at every epoch start
        self.generator.manual_seed(self.seed + int(epoch))


class ClinTrainer(Trainer):
    """The Trainer with two changes: the seeded length-grouped sampler, and a learning rate for the
    audio tower and projector of `lr x audio_lr_scale` (the optimizer's other settings unchanged)."""

    def __init__(self, *args, audio_lr_scale: float = 1.0, **kwargs):
        self.audio_lr_scale = audio_lr_scale
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(it["input_ids"]) for it in ds.items]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return SeededLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths, seed)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(model))
            groups: dict[tuple[bool, bool], list] = {}
            for name, p in model.named_parameters():
                if p.requires_grad:
                    groups.setdefault((not name.startswith("language_model."), name in decay), []).append(p)
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = cls(
                [
                    {
                        "params": params,
                        "weight_decay": self.args.weight_decay if decays else 0.0,
                        "lr": self.args.learning_rate * (self.audio_lr_scale if audio else 1.0),
                    }
                    for (audio, decays), params in groups.items()
                ],
                **kwargs,
            )
        return self.optimizer


def training_arguments(train_cfg: dict[str, Any], output_dir: Path, has_val: bool) -> TrainingArguments:
    """The recipe's `train:` section -> TrainingArguments (checkpoints in output_dir/checkpoints)."""
    unknown = set(train_cfg) - TRAIN_KEYS
    if unknown:
        raise ValueError(f"unknown train settings {sorted(unknown)}; known: {sorted(TRAIN_KEYS)}")
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    save_steps = train_cfg.get("save_steps")
    strategy = "steps" if save_steps else "epoch"
    return TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        seed=int(train_cfg.get("seed", 0)),
        num_train_epochs=float(train_cfg.get("epochs", 3)),
        max_steps=int(train_cfg.get("max_steps") or -1),
        per_device_train_batch_size=int(train_cfg.get("batch_size", 16)),
        per_device_eval_batch_size=int(train_cfg.get("batch_size", 16)),
        gradient_accumulation_steps=int(train_cfg.get("grad_accum", 1)),
        learning_rate=float(train_cfg.get("lr", 1e-3)),
        weight_decay=float(train_cfg.get("weight_decay", 0.0)),
        warmup_steps=float(train_cfg.get("warmup", 0.0)),
        lr_scheduler_type=str(train_cfg.get("scheduler", "cosine")),
        max_grad_norm=float(train_cfg.get("max_grad_norm", 1.0)),
        logging_steps=float(train_cfg.get("logging_steps", 20)),
        logging_first_step=True,
        save_strategy=strategy,
        save_steps=float(save_steps or 500),
        eval_strategy=strategy if has_val else "no",
        eval_steps=float(save_steps) if save_steps else None,
        save_total_limit=train_cfg.get("save_total_limit", 2),
        load_best_model_at_end=has_val,
        metric_for_best_model="eval_loss" if has_val else None,
        greater_is_better=False if has_val else None,
        prediction_loss_only=True,  # validation loss only; logits (batch, seq, vocab) would pile up
        use_cpu=not cuda,
        bf16=bf16,
        fp16=cuda and not bf16,
        report_to="none",
        remove_unused_columns=False,  # the collator needs "audios" and "row"
        label_names=["labels"],
        dataloader_num_workers=0,  # features are cached in this process; collation is cheap
        include_num_input_tokens_seen="non_padding",
    )


def run_sft(
    model,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]] | None,
    train_cfg: dict[str, Any],
    output_dir: Path,
    resume: bool = False,
    console=None,
):
    """Train `model` in place (best validation-loss weights when there is a val set); returns the Trainer."""
    max_length = int(train_cfg.get("max_length", 512))
    # Task weights shape the training objective only; validation loss stays the plain token mean,
    # comparable across recipes.
    weights = task_weights(train_cfg.get("task_loss_weights"))
    unknown = set(weights) - {r.get("task") for r in train_rows}
    if unknown and console is not None:
        console.print(f"[yellow]train.task_loss_weights names tasks with no training rows: {sorted(unknown)}[/]")
    train_ds, skipped = encode_rows(train_rows, model, max_length, loss_weights=weights)
    val_ds, val_skipped = encode_rows(val_rows, model, max_length) if val_rows else (None, [])
    skipped += val_skipped
    if skipped:
        (output_dir / "skipped_rows.txt").write_text("\n".join(skipped) + "\n")
        if console is not None:
            console.print(f"[yellow]skipped {len(skipped)} rows longer than train.max_length={max_length} tokens[/] (listed in {output_dir / 'skipped_rows.txt'})")
    if not len(train_ds):
        raise ValueError(f"no training rows left (all {len(train_rows)} longer than train.max_length={max_length}?)")
    args = training_arguments(train_cfg, output_dir, has_val=bool(val_ds) and len(val_ds) > 0)
    trainer = ClinTrainer(
        model=model,
        audio_lr_scale=float(train_cfg.get("audio_lr_scale", 1.0)),
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds if val_ds is not None and len(val_ds) else None,
        data_collator=collator_for(model),
    )
    last = None
    if resume:
        from transformers.trainer_utils import get_last_checkpoint

        ckpts = Path(args.output_dir)
        last = get_last_checkpoint(str(ckpts)) if ckpts.exists() else None
        if last is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {ckpts} to resume from; run without --resume")
    trainer.train(resume_from_checkpoint=last)
    return trainer
