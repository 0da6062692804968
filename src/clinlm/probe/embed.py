"""Frozen encoder -> one embedding per recording: the encoder's hidden frames averaged over time.

Encoders are named as on the command line:
- `builtin:random`: the built-in encoder with random weights, built exactly as `clinlm align` builds
  its starting point (the align recipe's features, `model.tower_size` and `train.seed`), its
  log-mel statistics fitted on the probe's training recordings: the "before alignment" encoder;
- an encoder folder written by `clinlm align` (its weights and feature settings);
- any local transformers audio model folder (its feature extractor; band-pass and crop length from
  the align recipe's `features`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

RANDOM_BUILTIN = "builtin:random"


def load_probe_encoder(name: str, align_cfg: dict[str, Any], fit_paths: list[str], cache_dir: str | Path | None = None) -> dict[str, Any]:
    """{"tower", "features" (AudioFeatures), ...} for one encoder name, in eval mode."""
    from transformers import set_seed

    from clinlm.align.run import load_encoder
    from clinlm.signals.features import AudioFeatures

    if name == RANDOM_BUILTIN:
        set_seed(int(align_cfg["train"].get("seed", 0)))  # the same draw as the align run's step 0
        enc = load_encoder("builtin", align_cfg["features"], str(align_cfg["model"].get("tower_size", "small")))
    elif name == "builtin":
        raise ValueError("'builtin' alone names no weights: use builtin:random (the random-init encoder) or an encoder folder")
    else:
        enc = load_encoder(name, align_cfg["features"], str(align_cfg["model"].get("tower_size", "small")))
    enc["tower"].eval()
    features = AudioFeatures(enc["features"], enc["extractor"], cache_dir)
    if not enc["features"].fitted:
        features.fit(fit_paths)
    enc["audio"] = features
    return enc


def embed_paths(enc: dict[str, Any], paths: list[str], batch_size: int = 32, progress: bool = True,
                desc: str = "embed") -> tuple[np.ndarray, list[dict[str, str]]]:
    """(embeddings (n, d) float32 with NaN rows for unreadable recordings, rejects [{path, reason}])."""
    from tqdm.auto import tqdm

    from clinlm.signals.audio import AudioError

    tower, features = enc["tower"], enc["audio"]
    first = next(tower.parameters())
    d = int(tower.hidden_size)
    out = np.full((len(paths), d), np.nan, dtype=np.float32)
    rejects: list[dict[str, str]] = []
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, disable=not progress, leave=False):
        batch, rows = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                batch.append(features(paths[i]))
                rows.append(i)
            except (AudioError, ValueError, RuntimeError) as exc:
                rejects.append({"path": paths[i], "reason": str(exc)})
        if not batch:
            continue
        with torch.no_grad():
            hidden = tower(torch.stack(batch).to(first.device, first.dtype))  # (batch, frames, d)
        out[rows] = hidden.mean(1).float().cpu().numpy()
    return out, rejects
