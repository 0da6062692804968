"""An audio encoder folder: a tower with its weights and the features it was trained with.

`clinlm align` writes one (`runs/aligned/encoder/`), and `model.audio_tower=<folder>` in
`clinlm train` reads it back with `load_encoder_folder`, so the aligned encoder drops into the
audio-language model with exactly the preprocessing it learned on.

    encoder/
      clinlm_encoder.json   {"format": "clinlm-audio-encoder", "tower": <tower spec>, "info": {...}}
      features.json         signals/features.py FeatureConfig (log-mel settings + fitted statistics,
                            or for a transformers encoder: band-pass, crop length, sample rate)
      built-in tower:       model.safetensors  (the ConvAudioEncoder state dict)
      transformers encoder: config.json, model.safetensors, preprocessor_config.json: a normal
                            transformers folder (the whole model, e.g. Whisper with its unused
                            decoder, so AutoModel.from_pretrained loads it unchanged)

The tower spec is the one `models/audio_tower.py` stores in checkpoints (`build_audio_tower(spec)`
rebuilds the architecture), so nothing here depends on the tower's constructor arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from clinlm.models.audio_tower import build_audio_tower, load_hf_audio_tower
from clinlm.signals.features import FeatureConfig

ENCODER_FILE = "clinlm_encoder.json"
FORMAT = "clinlm-audio-encoder"
WEIGHTS_FILE = "model.safetensors"


def is_encoder_folder(path: str | Path) -> bool:
    return (Path(path) / ENCODER_FILE).is_file()


def save_encoder_folder(
    folder: str | Path,
    tower: nn.Module,
    spec: dict[str, Any],
    features: FeatureConfig,
    info: dict[str, Any] | None = None,
    hf_model: Any = None,
    extractor: Any = None,
) -> Path:
    """Write the folder (a transformers encoder: pass the whole `hf_model` and its `extractor`)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if spec["type"] == "hf":
        if hf_model is None or extractor is None:
            raise ValueError("a transformers encoder folder needs the whole model and its feature extractor")
        hf_model.save_pretrained(folder)
        extractor.save_pretrained(folder)
        spec = {k: v for k, v in spec.items() if k != "hf_config"}  # config.json holds it
    else:
        state = {k: v.detach().contiguous().cpu() for k, v in tower.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
    features.save(folder)
    meta = {"format": FORMAT, "tower": spec, "info": info or {}}
    (folder / ENCODER_FILE).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return folder


def load_encoder_folder(folder: str | Path) -> tuple[nn.Module, Any, dict[str, Any], FeatureConfig]:
    """(tower with its trained weights, feature extractor or None, tower spec, FeatureConfig)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not is_encoder_folder(folder):
        raise FileNotFoundError(f"{folder} has no {ENCODER_FILE}: not an encoder folder written by `clinlm align`")
    meta = json.loads((folder / ENCODER_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / ENCODER_FILE}: format {meta.get('format')!r}, expected {FORMAT!r}")
    fc = FeatureConfig.load(folder)
    spec = meta["tower"]
    if spec["type"] == "hf":
        tower, extractor, spec = load_hf_audio_tower(folder)
        return tower, extractor, spec, fc
    tower = build_audio_tower(spec)
    missing, unexpected = tower.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder / WEIGHTS_FILE} does not fit the tower spec: missing {missing}, unexpected {unexpected}")
    if not fc.fitted:
        raise ValueError(f"{folder / 'features.json'} has no normalisation statistics: the folder is incomplete")
    return tower, None, spec, fc
