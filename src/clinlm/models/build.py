"""Config -> model: the `model:` and `features:` sections of a recipe become a ClinModel.

    model:
      audio_tower: builtin        # builtin | none (text-only) | /local/transformers/audio/model
      tower_size: small           # built-in tower preset (presets.py)
      projector: mlp              # linear | mlp
      num_audio_tokens: 8         # prefix tokens per recording
      language_model: small       # LM preset (tiny | small) | /local/causal/lm
      lora: null                  # or {r: 8, alpha: 32, dropout: 0.1, target_modules: [q_proj, v_proj]}
      freeze: {audio_tower: false, multi_modal_projector: false, language_model: false}

Things fitted on the training data (the embedded LM's tokenizer, the feature normalisation
statistics) are written to `prep_dir` the first time and read back from there afterwards, so a
resumed run uses exactly what the interrupted one used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from clinlm.models.audio_tower import load_hf_audio_tower
from clinlm.models.composite import ClinConfig, ClinModel
from clinlm.models.language_model import AUDIO_TOKEN, build_language_model, is_preset
from clinlm.models.presets import tower_preset
from clinlm.signals.features import FEATURES_FILE, AudioFeatures, FeatureConfig

MODEL_KEYS = {"audio_tower", "tower_size", "projector", "num_audio_tokens", "language_model", "lora", "freeze"}
LORA_KEYS = {"r", "alpha", "dropout", "target_modules"}


def is_text_only(model_cfg: dict[str, Any]) -> bool:
    return str(model_cfg.get("audio_tower", "builtin")).lower() in ("none", "null", "")


def lora_kwargs(lora: dict[str, Any] | None) -> dict[str, Any] | None:
    """The recipe's LoRA block -> peft.LoraConfig keyword arguments (JSON-able, kept in config.json)."""
    if not lora:
        return None
    unknown = set(lora) - LORA_KEYS
    if unknown:
        raise ValueError(f"unknown model.lora keys {sorted(unknown)}; known: {sorted(LORA_KEYS)}")
    return {
        "r": int(lora.get("r", 8)),
        "lora_alpha": float(lora.get("alpha", 16)),
        "lora_dropout": float(lora.get("dropout", 0.05)),
        "target_modules": list(lora.get("target_modules") or ["q_proj", "v_proj"]),
        "bias": "none",
        "task_type": "CAUSAL_LM",
    }


def message_texts(rows: Iterable[dict[str, Any]]) -> Iterable[str]:
    """Every message's text (tokenizer training material)."""
    for row in rows:
        for m in row["messages"]:
            yield m["content"]


def build_model(
    model_cfg: dict[str, Any],
    feature_cfg: dict[str, Any],
    train_rows: list[dict[str, Any]],
    prep_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> ClinModel:
    """A ClinModel with `.tokenizer` and `.features` (AudioFeatures or None) attached."""
    from transformers import AutoTokenizer

    unknown = set(model_cfg) - MODEL_KEYS
    if unknown:
        raise ValueError(f"unknown model settings {sorted(unknown)}; known: {sorted(MODEL_KEYS)}")
    prep = Path(prep_dir) if prep_dir else None
    lm_spec = str(model_cfg.get("language_model", "small"))

    # Language model + tokenizer (a trained tokenizer is reused when resuming).
    tokenizer = None
    if is_preset(lm_spec) and prep is not None and (prep / "tokenizer").exists():
        tokenizer = AutoTokenizer.from_pretrained(prep / "tokenizer")
    lm, tokenizer = build_language_model(lm_spec, texts=message_texts(train_rows), tokenizer=tokenizer)
    if prep is not None and not (prep / "tokenizer").exists():
        tokenizer.save_pretrained(prep / "tokenizer")

    # Audio tower + its features.
    tower, spec, features = None, None, None
    if not is_text_only(model_cfg):
        tower_name = str(model_cfg.get("audio_tower", "builtin"))
        extractor = None
        if tower_name == "builtin":
            fc = FeatureConfig.from_dict({**feature_cfg, "kind": "logmel"})
            spec = {"type": "conv", "n_mels": fc.n_mels, **tower_preset(str(model_cfg.get("tower_size", "small")))}
        else:
            tower, extractor, spec = load_hf_audio_tower(tower_name)
            keep = {k: feature_cfg[k] for k in ("band_hz", "filter_order", "max_seconds") if k in feature_cfg}
            fc = FeatureConfig(kind="hf", sample_rate=int(extractor.sampling_rate), **keep)
        if prep is not None and (prep / FEATURES_FILE).exists():
            fc = FeatureConfig.load(prep)
            features = AudioFeatures(fc, extractor, cache_dir)
        else:
            features = AudioFeatures(fc, extractor, cache_dir)
            features.fit(p for row in train_rows for p in row.get("audios") or [])
            if prep is not None:
                prep.mkdir(parents=True, exist_ok=True)
                fc.save(prep)

    config = ClinConfig(
        lm_config=lm.config.to_dict(),
        audio_tower=spec,
        projector=str(model_cfg.get("projector", "mlp")),
        num_audio_tokens=int(model_cfg.get("num_audio_tokens", 8)),
        audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
        lora=lora_kwargs(model_cfg.get("lora")),
    )
    model = ClinModel(config, language_model=lm, audio_tower=tower)
    model.freeze(dict(model_cfg.get("freeze") or {}))
    model.tokenizer = tokenizer
    model.features = features
    return model
