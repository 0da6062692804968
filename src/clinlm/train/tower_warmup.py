"""Audio tower warm-up: teach the built-in encoder the labelled findings before the LM sees it.

    from clinlm.train.tower_warmup import warm_up_tower
    warm_up_tower([rec/heart, rec/lung], features_cfg, out="qs/encoder")   # an encoder folder
    clinlm train configs/stetholm_tiny.yaml model.audio_tower=qs/encoder ...

Why: an audio-language model reads its audio through an encoder that already hears (StethoLM
starts from a pretrained auscultation encoder). The embedded default has no pretrained encoder,
and a randomly initialised tower trained only through the language model's next-token loss
learns slowly, because the LM is itself learning the answer language at the same time. A short
supervised warm-up on the training split's own labels gives the tower that starting point:

- heart recordings: murmur present / absent (every frame: a murmur recurs in every beat);
- lung recordings: crackles and wheezes per breathing cycle (frame targets from the cycle
  annotations, so the tower learns *where*, not only *whether*);
- every recording: abnormal / normal;
- heart recordings: murmur "unknown" (the annotator could not call it) / known.

Loss: binary cross-entropy per frame of the tower's findings head (`ConvAudioEncoder(findings=...)`;
targets max-pooled to its frame rate), masked where a label is unknown or does not apply. The head
stays in the tower: its per-frame probabilities are four more output channels, so the language
model reads "a crackle-like event here" directly. Only the training split is used, so the
held-out patients stay unseen. The result is an encoder folder (models/encoder_folder.py),
the same format `clinlm align` writes, which `model.audio_tower=<folder>` loads with its
feature settings and statistics.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from clinlm.signals.features import AudioFeatures, FeatureConfig

TARGETS = ("murmur", "crackle", "wheeze", "abnormal", "murmur_unknown")
# The word the bench's answers use for a target whose name is not a bench finding (models/build.py
# gives each finding token the embedding of its word): a murmur the annotator could not call is
# answered "... cannot be determined ...".
TARGET_WORDS = {"murmur_unknown": "determined"}


def frame_targets(record: dict[str, Any], frames: int, seconds_per_frame: float) -> np.ndarray:
    """(frames, len(TARGETS)) float32 in {0, 1}, NaN where unknown or not applicable."""
    y = np.full((frames, len(TARGETS)), np.nan, dtype=np.float32)
    murmur = record.get("murmur")  # the patient's label: present / absent / unknown
    here = record.get("murmur_here", {"present": "yes", "absent": "no"}.get(murmur))  # this recording's: yes / no / unknown
    if record.get("modality") == "heart" and here in ("yes", "no"):
        # The recording's own label (bench/labels.py): a murmur patient's recording at a site the
        # annotators did not list is "no" there (the murmur is below audibility), which is what the
        # bench then asks; a patient-level target told the LM "murmur" where the answer was "no".
        y[:, 0] = here == "yes"
    if record.get("modality") == "heart" and murmur in ("present", "absent", "unknown"):
        # CirCor's "Unknown": the annotator could not tell (a noisy recording). Without this target
        # the tower had no reason to flag such recordings and the LM answered them yes or no
        # (2 of 12 held-out "cannot be determined" rows right).
        y[:, 4] = murmur == "unknown"
    if record.get("modality") == "lung":
        cycles = [e for e in (record.get("events") or []) if e.get("kind") == "resp_cycle"]
        if cycles:
            t = (np.arange(frames) + 0.5) * seconds_per_frame
            y[:, 1:3] = 0.0
            for e in cycles:
                inside = (t >= e["start_s"]) & (t < e["end_s"])
                y[inside, 1] = e.get("label") in ("crackle", "both")
                y[inside, 2] = e.get("label") in ("wheeze", "both")
    if record.get("abnormal") is not None and not (isinstance(record["abnormal"], float) and math.isnan(record["abnormal"])):
        y[:, 3] = bool(record["abnormal"])
    return y


def training_records(inputs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Training-split audio records from ingest folders (records.parquet)."""
    from clinlm.bench.labels import record_labels
    from clinlm.records import iter_records

    rows: list[dict[str, Any]] = []
    for folder in inputs:
        path = Path(folder) / "records.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `clinlm ingest` first")
        for rec in iter_records(path):
            if rec.split != "train" or not rec.media or rec.modality not in ("heart", "lung"):
                continue
            rows.append({
                "record_id": rec.record_id, "patient_id": rec.patient_id, "modality": rec.modality, "media": list(rec.media),
                "split": rec.split, "murmur": rec.murmur.lower() if rec.murmur else None, "abnormal": rec.abnormal,
                "events": [{"kind": e.kind, "start_s": e.start_s, "end_s": e.end_s, "label": e.label} for e in rec.events],
                "murmur_here": record_labels(rec).get("murmur") if rec.modality == "heart" else None,
            })
    if not rows:
        raise ValueError(f"no training-split heart or lung recordings in {[str(p) for p in inputs]}")
    return rows


def warm_up_tower(
    inputs: Sequence[str | Path],
    features: dict[str, Any],
    out: str | Path,
    tower_size: str = "small",
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    console=None,
) -> Path:
    """Train the built-in tower + a linear head on frame targets; write an encoder folder to `out`."""
    from rich.progress import Progress

    from clinlm.models.audio_tower import build_audio_tower
    from clinlm.models.encoder_folder import save_encoder_folder
    from clinlm.models.presets import tower_preset

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    records = training_records(inputs)
    fc = FeatureConfig.from_dict({**features, "kind": "logmel"})
    feats = AudioFeatures(fc, cache_dir=cache_dir)
    t0 = time.perf_counter()
    feats.fit(r["media"][0] for r in records)
    x = torch.stack([feats(r["media"][0]) for r in records])  # (n, frames, channels)
    seconds_per_frame = fc.hop / fc.sample_rate
    y = torch.from_numpy(np.stack([frame_targets(r, fc.num_frames, seconds_per_frame) for r in records]))
    prep_s = time.perf_counter() - t0

    # The findings head stays in the tower: its per-frame probabilities are output channels.
    spec = {"type": "conv", "n_mels": fc.num_channels, **tower_preset(tower_size), "findings": list(TARGETS)}
    tower = build_audio_tower(spec)
    params = list(tower.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses: list[float] = []
    with Progress(transient=True, disable=console is None) as progress:
        task = progress.add_task("tower warm-up", total=steps)
        for _ in range(steps):
            idx = torch.from_numpy(rng.integers(0, len(x), min(batch_size, len(x))))
            _, logits = tower.forward_with_findings(x[idx])  # (batch, frames', targets)
            # targets at the tower's frame rate: max over the input frames each output frame covers
            target = nn.functional.adaptive_max_pool1d(torch.nan_to_num(y[idx], nan=-1.0).transpose(1, 2), logits.shape[1]).transpose(1, 2)
            known = target >= 0
            loss = nn.functional.binary_cross_entropy_with_logits(logits[known], target[known])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            progress.advance(task)
    info = {
        "trained_by": "clinlm.train.tower_warmup",
        "targets": list(TARGETS),
        "records": len(records),
        "steps": steps,
        "loss_first_10": float(np.mean(losses[:10])),
        "loss_last_10": float(np.mean(losses[-10:])),
        "feature_seconds": round(prep_s, 1),
        "inputs": [str(p) for p in inputs],
    }
    folder = save_encoder_folder(out, tower, spec, fc, info=info)
    if console is not None:
        console.print(f"tower warm-up: {len(records)} recordings, loss {info['loss_first_10']:.3f} -> {info['loss_last_10']:.3f}; encoder {folder}")
    return folder
