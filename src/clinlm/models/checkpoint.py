"""The self-describing checkpoint: one folder, loadable with `clinlm.load(path)`.

    config.json            ClinConfig: LM config, tower spec, projector, prefix tokens, LoRA settings
    model.safetensors      every weight: audio tower, projector, LM (with its LoRA layers)
    adapter/               the LoRA adapter alone, in peft's format (when LoRA is used)
    tokenizer.json, tokenizer_config.json, chat_template.jinja
    features.json          audio: sample rate, band-pass, mel settings, normalisation statistics
    feature_extractor/     a transformers audio encoder's own preprocessor (hf towers only)
    ecg_features.json      ECG: sample rate, seconds, lead order, band-pass, per-lead statistics
    image_features.json    images: size, per-channel statistics (or kind "hf")
    image_processor/       a transformers vision encoder's own image processor (hf towers only)
    clinlm.yaml            the resolved recipe config
    provenance.json        versions (torch, transformers, peft, clinlm), the command, time

`export_merged` (`clinlm export`) writes the language model alone, LoRA merged in, as a plain
transformers folder (AutoModelForCausalLM.from_pretrained works on it).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from clinlm.models.composite import ClinConfig, ClinModel
from clinlm.signals.ecg_features import EcgFeatureConfig, EcgFeatures
from clinlm.signals.features import FEATURE_EXTRACTOR_DIR, FEATURES_FILE, AudioFeatures, FeatureConfig
from clinlm.signals.image_features import IMAGE_PROCESSOR_DIR, ImageFeatureConfig, ImageFeatures

CONFIG_FILE = "clinlm.yaml"
PROVENANCE_FILE = "provenance.json"
ADAPTER_DIR = "adapter"


def versions() -> dict[str, str]:
    import peft
    import transformers

    import clinlm

    return {
        "clinlm": clinlm.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(model: ClinModel, tokenizer, feature_config: FeatureConfig | None, config: dict[str, Any], out: str | Path) -> Path:
    """Write everything inference needs into `out` (created); returns `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if model.config.lora:
        model.language_model.save_pretrained(out / ADAPTER_DIR)
    tokenizer.save_pretrained(out)
    if feature_config is not None:
        feature_config.save(out)
        extractor = getattr(getattr(model, "features", None), "extractor", None)
        if extractor is not None:
            extractor.save_pretrained(out / FEATURE_EXTRACTOR_DIR)
    media = getattr(model, "media_features", None) or {}
    if "ecg" in media:
        media["ecg"].cfg.save(out)
    if "image" in media:
        media["image"].cfg.save(out)
        if media["image"].processor is not None:
            media["image"].processor.save_pretrained(out / IMAGE_PROCESSOR_DIR)
    (out / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    provenance = {
        "command": list(sys.argv),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "trainable_parameters": {k: list(v) for k, v in model.trainable_summary().items()},
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1))
    return out


def _state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.exists():  # sharded (large LMs)
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(folder / shard))
        return state
    return load_file(folder / "model.safetensors")


def load_checkpoint(path: str | Path, device: str | torch.device | None = None) -> ClinModel:
    """A ClinModel in eval mode with `.tokenizer`, `.features`, `.media_features` and `.recipe` attached."""
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a clinlm checkpoint (no config.json); train one with `clinlm train`")
    config = ClinConfig.from_pretrained(path)
    if config.model_type != "clinlm":
        raise ValueError(f"{path} holds a {config.model_type!r} model, not a clinlm checkpoint")
    model = ClinModel(config)
    missing, unexpected = model.load_state_dict(_state_dict(path), strict=False)
    missing = set(missing) - set(model.all_tied_weights_keys)  # tied copies are not stored twice
    if missing or unexpected:
        raise ValueError(
            f"{path}/model.safetensors does not fit its config.json: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    model.tokenizer = AutoTokenizer.from_pretrained(path)
    model.features = None
    if config.audio_tower is not None:
        extractor = None
        if (path / FEATURE_EXTRACTOR_DIR).exists():
            extractor = AutoFeatureExtractor.from_pretrained(path / FEATURE_EXTRACTOR_DIR)
        model.features = AudioFeatures(FeatureConfig.load(path), extractor)
    model.media_features = {} if model.features is None else {"audio": model.features}
    if config.ecg_tower is not None:
        model.media_features["ecg"] = EcgFeatures(EcgFeatureConfig.load(path))
    if config.vision_tower is not None:
        processor = AutoImageProcessor.from_pretrained(path / IMAGE_PROCESSOR_DIR) if (path / IMAGE_PROCESSOR_DIR).exists() else None
        model.media_features["image"] = ImageFeatures(ImageFeatureConfig.load(path), processor)
    recipe = path / CONFIG_FILE
    model.recipe = yaml.safe_load(recipe.read_text()) if recipe.exists() else {}
    if device is not None:
        model.to(device)
    return model.eval()


def export_merged(checkpoint: str | Path, out: str | Path) -> Path:
    """The LM part as a plain transformers folder (LoRA merged in) with its tokenizer."""
    model = load_checkpoint(checkpoint)
    lm = model.language_model
    if model.config.lora:
        lm = lm.merge_and_unload()
    out = Path(out)
    lm.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    return out
