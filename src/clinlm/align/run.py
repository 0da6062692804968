"""`clinlm align CONFIG key=value ... --out DIR`: align an audio encoder to a frozen text teacher (AcuLa).

    clinlm reports rec/heart rec/lung --out reports/
    clinlm align configs/align_default.yaml encoder=builtin teacher=minilm --out runs/aligned
    clinlm align configs/align_default.yaml encoder=/models/whisper-tiny train.alignment=infonce --out runs/aligned_w

The recipe has the four sections of a training recipe (configs/align_default.yaml documents each key):
`data` (record folders, the reports, which splits to align on), `features` (signals/features.py),
`model` (encoder, teacher, head size) and `train` (objective and optimisation). Overrides are
`section.key=value`; a bare `key=value` names the one section that has that key (`encoder=`,
`teacher=`, `alignment=`). Only the `train` split is aligned on by default, so the probe's test
patients are never seen (their reports are written from the very labels the probe predicts).

The path: records + their reports -> audio features (once, cached) and teacher embeddings (once
per unique report: the teacher is frozen) -> `AlignModel` (encoder + heads, align/objective.py)
trained with the transformers Trainer (losses logged by name) -> the encoder folder.

Output (`train.output_dir`, `--out`):
    encoder/            the aligned encoder (models/encoder_folder.py): `model.audio_tower=<it>` in
                        `clinlm train`, or an encoder for `clinlm probe`
    config.yaml         the resolved recipe
    losses.json         the Trainer's log: every logged step with each named loss
    summary.json        records used/rejected, unique reports, steps, wall and CPU seconds per stage
    feature_cache/      features per recording (reused by later runs with the same settings)
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import Dataset

from clinlm.records import Record, atomic_write_text, iter_records
from clinlm.train.run import SECTIONS, apply_override, load_config

DATA_KEYS = {"records", "reports", "splits"}
MODEL_KEYS = {"encoder", "tower_size", "teacher", "teacher_layer", "head_hidden"}
TRAIN_KEYS = {
    "output_dir", "seed", "alignment", "align_weight", "ssl", "ssl_weight", "mask_ratio", "mask_span",
    "epochs", "max_steps", "batch_size", "lr", "weight_decay", "warmup", "scheduler", "max_grad_norm",
    "logging_steps",
}
KNOWN = {"data": DATA_KEYS, "model": MODEL_KEYS, "train": TRAIN_KEYS}
AUDIO_MODALITIES = ("heart", "lung", "cough")


# ------------------------------------------------------------------------------------ config

def load_align_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The align recipe with overrides applied (bare `key=value` resolved to its one section)."""
    cfg = load_config(path)
    for item in overrides or []:
        key, sep, _ = item.partition("=")
        key = key.strip()
        if sep and key and "." not in key:
            homes = [s for s in SECTIONS if isinstance(cfg.get(s), dict) and key in cfg[s]]
            if len(homes) != 1:
                where = f"several sections ({', '.join(homes)})" if homes else "no section"
                raise KeyError(f"override {item!r}: {where} of {path} has a key {key!r}; write it as section.{key}=...")
            item = f"{homes[0]}.{item.strip()}"
        apply_override(cfg, item)
    for section, known in KNOWN.items():
        unknown = set(cfg[section]) - known
        if unknown:
            raise ValueError(f"unknown {section} settings {sorted(unknown)}; known: {sorted(known)}")
    return cfg


# ------------------------------------------------------------------------------------ encoder

def load_encoder(name: str, feature_cfg: dict[str, Any], tower_size: str = "small") -> dict[str, Any]:
    """`builtin` (random init from the current torch seed), an encoder folder, or a transformers
    audio folder -> {"tower", "spec", "features" (FeatureConfig), "extractor", "hf_model"}."""
    from clinlm.models.audio_tower import HFAudioEncoder, _encoder_only, build_audio_tower
    from clinlm.models.encoder_folder import is_encoder_folder, load_encoder_folder
    from clinlm.models.presets import tower_preset
    from clinlm.signals.features import FeatureConfig

    if name == "builtin":
        fc = FeatureConfig.from_dict({**feature_cfg, "kind": "logmel"})
        spec = {"type": "conv", "n_mels": fc.num_channels, **tower_preset(tower_size)}
        return {"tower": build_audio_tower(spec), "spec": spec, "features": fc, "extractor": None, "hf_model": None}
    folder = Path(name)
    if (folder / "config.json").exists():
        # A transformers model: keep the whole model (e.g. Whisper's decoder) so the result saves as
        # a normal transformers folder; only its encoder is wrapped and trained.
        from transformers import AutoFeatureExtractor, AutoModel

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            extractor = AutoFeatureExtractor.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"no feature extractor (preprocessor_config.json) in {folder}: {exc}") from exc
        full = AutoModel.from_pretrained(folder)
        encoder = _encoder_only(full)
        input_name = extractor.model_input_names[0]
        spec = {"type": "hf", "input_name": input_name, "hf_config": encoder.config.to_dict()}
        if is_encoder_folder(folder):
            fc = FeatureConfig.load(folder)
        else:
            keep = {k: feature_cfg[k] for k in ("band_hz", "filter_order", "max_seconds") if k in feature_cfg}
            fc = FeatureConfig(kind="hf", sample_rate=int(extractor.sampling_rate), **keep)
        return {"tower": HFAudioEncoder(encoder, input_name), "spec": spec, "features": fc, "extractor": extractor, "hf_model": full}
    if is_encoder_folder(folder):
        tower, extractor, spec, fc = load_encoder_folder(folder)
        return {"tower": tower, "spec": spec, "features": fc, "extractor": extractor, "hf_model": None}
    raise FileNotFoundError(
        f"model.encoder={name} is neither 'builtin', an encoder folder from `clinlm align`, nor a local "
        "transformers audio model folder (config.json + preprocessor_config.json)"
    )


def input_feature_size(enc: dict[str, Any]) -> int | None:
    """The feature axis size of a transformers encoder's input (Whisper's mel bins), for masking."""
    return getattr(enc["extractor"], "feature_size", None) if enc["extractor"] is not None else None


# ------------------------------------------------------------------------------------ data

def align_records(folders: list[str | Path], splits: list[str] | None) -> tuple[list[Record], dict[str, int]]:
    """Audio records of the given splits whose media exist; counts of what was left out and why."""
    records, left = [], {"other modality": 0, "other split": 0, "media not on disk": 0}
    for folder in folders:
        for r in iter_records(Path(folder)):
            if r.modality not in AUDIO_MODALITIES:
                left["other modality"] += 1
            elif splits and r.split not in splits:
                left["other split"] += 1
            elif not r.media or not Path(r.media[0]).is_file():
                left["media not on disk"] += 1
            else:
                records.append(r)
    return records, left


def report_texts(records: list[Record], reports: str | Path | None) -> list[str]:
    """One report per record: from a `clinlm reports` folder, or templated now when `reports` is null."""
    from clinlm.align.reports import read_reports, report_answer, template_report

    if reports is None:
        out = []
        for r in records:
            answer = report_answer(r)
            if answer is None:
                raise ValueError(f"no report can be written for {r.record_id} ({r.modality})")
            out.append(template_report(r, answer))
        return out
    table = read_reports(reports)
    missing = [r.record_id for r in records if r.record_id not in table]
    if missing:
        raise ValueError(
            f"{reports} has no report for {len(missing)} of {len(records)} records (e.g. {missing[:3]}): run "
            "`clinlm reports` on the same record folders, or set data.reports=null for templated reports"
        )
    return [table[r.record_id] for r in records]


class AlignItems(Dataset):
    """features[i] (input shape) and target[i] (d_teacher,): a recording and its report's embedding."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor):
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[i], "target": self.targets[i]}


def compute_features(features, paths: list[str], progress: bool = True) -> tuple[torch.Tensor, list[int], list[dict[str, str]]]:
    """(stacked features (n_ok, ...), indices of the readable paths, rejects [{path, reason}])."""
    from tqdm.auto import tqdm

    from clinlm.signals.audio import AudioError

    rows, ok, rejects = [], [], []
    for i, path in enumerate(tqdm(paths, desc="features", disable=not progress, leave=False)):
        try:
            rows.append(features(path))
            ok.append(i)
        except (AudioError, ValueError, RuntimeError) as exc:
            rejects.append({"path": path, "reason": str(exc)})
    if not rows:
        raise ValueError(f"none of the {len(paths)} recordings could be read; first reason: {rejects[0]['reason'] if rejects else '-'}")
    return torch.stack(rows), ok, rejects


# ------------------------------------------------------------------------------------ training

class DatasetBatchSampler(torch.utils.data.Sampler):
    """An order in which every run of `batch_size` indices comes from one dataset.

    Mixed batches would let the alignment be explained by the heart / lung / cough difference alone
    (CKA is dominated by the largest directions of variance; InfoNCE would get easy negatives), so
    each batch compares recordings of one kind. Per epoch: each dataset's indices are shuffled and
    cut into full batches (the few left over are dropped this epoch only; a dataset smaller than
    one batch is topped up with repeats of itself), and the batches are shuffled. The order
    depends on (seed, epoch) alone; the Trainer calls `set_epoch` at every epoch start.
    """

    def __init__(self, groups: list[str], batch_size: int, seed: int):
        self.groups, self.batch_size, self.seed, self.epoch = groups, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        by: dict[str, list[int]] = {}
        for i, name in enumerate(self.groups):
            by.setdefault(name, []).append(i)
        batches = []
        for name in sorted(by):
            idx = torch.tensor(by[name])[torch.randperm(len(by[name]), generator=g)]
            if len(idx) < self.batch_size:
                extra = idx[torch.randint(len(idx), (self.batch_size - len(idx),), generator=g)]
                idx = torch.cat([idx, extra])
            n = len(idx) // self.batch_size
            batches += idx[: n * self.batch_size].reshape(n, self.batch_size).tolist()
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def __iter__(self):
        for batch in self._batches():
            yield from batch

    def __len__(self) -> int:
        return sum(len(b) for b in self._batches())


def _trainer_class():
    from transformers import Trainer

    class AlignTrainer(Trainer):
        """The Trainer with dataset-pure batches, logging the mean of every named loss part since the
        last log line."""

        def __init__(self, *args, groups: list[str], **kwargs):
            self.groups = groups
            super().__init__(*args, **kwargs)
            self._parts: dict[str, list[float]] = {}

        def _get_train_sampler(self, train_dataset=None):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return DatasetBatchSampler(self.groups, self.args.train_batch_size, seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(**inputs)
            for k, v in out.items():
                if k != "loss":
                    self._parts.setdefault(k, []).append(float(v.detach()))
            return (out["loss"], out) if return_outputs else out["loss"]

        def log(self, logs, *args, **kwargs):
            if "loss" in logs:
                for k, values in self._parts.items():
                    logs[k] = round(sum(values) / len(values), 5)
                self._parts = {}
            if getattr(self.model, "logit_scale", None) is not None and "loss" in logs:
                logs["temperature"] = round(float(1 / self.model.logit_scale.detach().exp()), 5)
            super().log(logs, *args, **kwargs)

    return AlignTrainer


def training_arguments(train: dict[str, Any], out: Path, progress: bool):
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    batch = int(train.get("batch_size", 64))
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        seed=int(train.get("seed", 0)),
        num_train_epochs=float(train.get("epochs", 30)),
        max_steps=int(train.get("max_steps") or -1),
        per_device_train_batch_size=batch,
        learning_rate=float(train.get("lr", 1e-3)),
        weight_decay=float(train.get("weight_decay", 0.01)),
        warmup_steps=float(train.get("warmup", 0.05)),
        lr_scheduler_type=str(train.get("scheduler", "cosine")),
        max_grad_norm=float(train.get("max_grad_norm", 1.0)),
        logging_steps=float(train.get("logging_steps", 10)),
        logging_first_step=True,
        save_strategy="no",  # minutes of work: the encoder folder is written at the end
        report_to="none",
        remove_unused_columns=False,
        label_names=[],
        dataloader_drop_last=True,  # the sampler yields full batches only
        dataloader_num_workers=0,
        use_cpu=not cuda,
        disable_tqdm=not progress,
    )


def align(cfg: dict[str, Any], teacher=None, console=None, progress: bool = True) -> dict[str, Any]:
    """Run a resolved align config; returns {"encoder": folder, "summary", "model": AlignModel, "teacher",
    "items": the training pairs, "start_state": the encoder's initial weights}. `teacher` may be passed
    in already loaded (tests inspect its weights)."""
    from transformers import set_seed

    from clinlm.align.objective import AlignModel
    from clinlm.align.teacher import cached_encode, load_teacher
    from clinlm.models.encoder_folder import save_encoder_folder
    from clinlm.signals.features import AudioFeatures

    t0, c0 = time.perf_counter(), time.process_time()
    data, model_cfg, train = cfg["data"], cfg["model"], cfg["train"]
    out = Path(train.get("output_dir") or "runs/aligned")
    out.mkdir(parents=True, exist_ok=True)
    folders = data.get("records") or []
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    if not folders:
        raise ValueError("data.records is empty: give the ingest folders to align on, e.g. data.records=[rec/heart,rec/lung]")
    splits = data.get("splits")
    records, left_out = align_records(folders, [splits] if isinstance(splits, str) else splits)
    if len(records) < 4:
        raise ValueError(f"only {len(records)} usable records in {folders} (splits {splits}); left out: {left_out}")
    texts = report_texts(records, data.get("reports"))

    # The same seed builds the same initial encoder as `clinlm probe builtin:random` (before = after at step 0).
    set_seed(int(train.get("seed", 0)))
    enc = load_encoder(str(model_cfg.get("encoder", "builtin")), cfg["features"], str(model_cfg.get("tower_size", "small")))
    start_state = {k: v.detach().clone() for k, v in enc["tower"].state_dict().items()}
    features = AudioFeatures(enc["features"], enc["extractor"], out / "feature_cache")
    stage = {}
    tic = time.perf_counter()
    if not enc["features"].fitted:
        features.fit(r.media[0] for r in records)
    feats, ok, rejects = compute_features(features, [r.media[0] for r in records], progress)
    records, texts = [records[i] for i in ok], [texts[i] for i in ok]
    stage["features_s"] = round(time.perf_counter() - tic, 2)

    tic = time.perf_counter()
    if teacher is None:
        teacher = load_teacher(str(model_cfg.get("teacher", "minilm")), int(model_cfg.get("teacher_layer", -1)))
    unique = list(dict.fromkeys(texts))
    index = {t: i for i, t in enumerate(unique)}
    # Frozen teacher: embeddings cached beside the reports (or in the output folder), keyed by text.
    cache_dir = Path(data["reports"]) if data.get("reports") and Path(data["reports"]).is_dir() else out
    cache = cache_dir / f"teacher_{hashlib.sha1(teacher.name.encode()).hexdigest()[:10]}.npz"
    emb = torch.from_numpy(cached_encode(teacher, unique, cache, progress=progress))  # (n_unique, d_teacher)
    targets = emb[torch.tensor([index[t] for t in texts])]  # (n, d_teacher)
    stage["teacher_s"] = round(time.perf_counter() - tic, 2)

    objective = {k: train[k] for k in ("alignment", "align_weight", "ssl", "ssl_weight", "mask_ratio", "mask_span") if k in train}
    objective["head_hidden"] = model_cfg.get("head_hidden", 256)
    model = AlignModel(enc["tower"], teacher.dim, feats[0], objective, input_feature_size(enc))
    items = AlignItems(feats, targets)
    if console is not None:
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        console.print(f"[bold]align[/] {len(items)} recordings, {len(unique)} unique reports, teacher {teacher.name} "
                      f"({teacher.dim}-d), {n_train:,} trainable parameters, {model.alignment} + {model.ssl}")
    tic = time.perf_counter()
    trainer = _trainer_class()(model=model, args=training_arguments(train, out, progress), train_dataset=items,
                               groups=[r.dataset for r in records])
    if not progress:  # no bar and no printed log lines either (they are in losses.json)
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.train()
    stage["train_s"] = round(time.perf_counter() - tic, 2)
    model.eval()

    history = trainer.state.log_history
    atomic_write_text(json.dumps(history, indent=1) + "\n", out / "losses.json")
    summary = {
        "records": len(items), "unique_reports": len(unique), "left_out": left_out, "unreadable": rejects,
        "encoder": str(model_cfg.get("encoder", "builtin")), "teacher": teacher.name, "teacher_dim": teacher.dim,
        "alignment": model.alignment, "ssl": model.ssl, "steps": trainer.state.global_step,
        "first_loss": next((h for h in history if "loss" in h), None),
        "last_loss": next((h for h in reversed(history) if "loss" in h), None),
        **stage, "wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
        "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
    }
    info = {k: summary[k] for k in ("encoder", "teacher", "alignment", "ssl", "steps", "records", "unique_reports")}
    info["record_folders"] = [str(f) for f in folders]
    folder = save_encoder_folder(out / "encoder", enc["tower"], enc["spec"], enc["features"], info=info,
                                 hf_model=enc["hf_model"], extractor=enc["extractor"])
    atomic_write_text(yaml.safe_dump(cfg, sort_keys=False), out / "config.yaml")
    atomic_write_text(json.dumps(summary, indent=1, default=str) + "\n", out / "summary.json")
    if console is not None:
        last = summary["last_loss"] or {}
        parts = ", ".join(f"{k} {v}" for k, v in last.items() if k.startswith(("align_", "ssl_")))
        console.print(f"[green]encoder[/] {folder}  ({summary['steps']} steps, {summary['wall_s']} s wall, "
                      f"{summary['cpu_s']} s CPU; last {parts})")
    return {"encoder": folder, "summary": summary, "model": model, "teacher": teacher, "items": items,
            "datasets": [r.dataset for r in records], "start_state": start_state}


def run_align(config: str | Path, overrides: list[str] | None = None, out: str | Path | None = None, console=None) -> Path:
    """The `clinlm align` entry: config + overrides (+ --out) -> the encoder folder."""
    cfg = load_align_config(config, overrides)
    if out is not None:
        cfg["train"]["output_dir"] = str(out)
    return align(copy.deepcopy(cfg), console=console)["encoder"]
