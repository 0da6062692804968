"""Config -> model: the `model:` and `features:` sections of a recipe become a ClinModel.

    model:
      audio_tower: builtin        # builtin | none | /local/transformers/audio/model
                                  # | an encoder folder from `clinlm align` (its weights and features)
      tower_size: small           # built-in audio tower preset (presets.py)
      ecg_tower: none             # builtin | none | /local/PatchTST-or-PatchTSMixer/model (ecg_tower.py)
      ecg_tower_size: small       # built-in ECG tower preset
      vision_tower: none          # builtin | none | /local/transformers/vision/model (ViT, DINOv2, CLIP, ...)
      vision_tower_size: small    # built-in vision tower preset
      projector: mlp              # linear | mlp (one projector per media kind)
      num_audio_tokens: 8         # prefix tokens per recording / ECG / image
      finding_tokens: false       # true: + one prefix token per finding of the audio tower's findings head
                                  # (an encoder folder from the tower warm-up; models/projector.py)
      finding_bins: 0             # 0: each finding statistic along a learned direction; B: over B learned levels
      num_ecg_tokens: 8
      num_image_tokens: 8
      language_model: small       # LM preset (tiny | small) | /local/causal/lm
      lora: null                  # or {r: 8, alpha: 32, dropout: 0.1, target_modules: [q_proj, v_proj]}
      freeze: {audio_tower: false, multi_modal_projector: false, ecg_tower: false, ..., language_model: false}

    features:                     # audio settings at the top level (signals/features.py), and
      ecg: {sample_rate: 100, seconds: 10, leads: [...], band_hz: [0.5, 40]}   # signals/ecg_features.py
      image: {size: [288, 384]}                                                 # signals/image_features.py

A model takes the media whose tower is not `none`; with every tower `none` it is text-only.
Things fitted on the training data (the embedded LM's tokenizer, the feature normalisation
statistics of each kind) are written to `prep_dir` the first time and read back from there
afterwards, so a resumed run uses exactly what the interrupted one used.

An encoder folder (models/encoder_folder.py) brings its own feature settings and fitted statistics,
which replace the recipe's `features:` (the weights only make sense with them); only
`features.max_seconds`, the crop length, follows the recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from clinlm.models.audio_tower import load_hf_audio_tower
from clinlm.models.composite import ClinConfig, ClinModel
from clinlm.models.encoder_folder import is_encoder_folder, load_encoder_folder
from clinlm.models.ecg_tower import load_hf_ecg_tower
from clinlm.models.language_model import AUDIO_TOKEN, build_language_model, is_preset
from clinlm.models.media import ECG, IMAGE
from clinlm.models.presets import ECG_TOWER_PRESETS, VISION_TOWER_PRESETS, named_preset, tower_preset
from clinlm.models.vision_tower import load_hf_vision_tower
from clinlm.signals.ecg_features import ECG_FEATURES_FILE, EcgFeatureConfig, EcgFeatures
from clinlm.signals.features import FEATURES_FILE, AudioFeatures, FeatureConfig
from clinlm.signals.image_features import IMAGE_FEATURES_FILE, ImageFeatureConfig, ImageFeatures

MODEL_KEYS = {
    "audio_tower", "tower_size", "projector", "num_audio_tokens", "finding_tokens", "finding_words", "finding_bins", "time_token_dropout", "language_model", "lora", "freeze",
    "ecg_tower", "ecg_tower_size", "num_ecg_tokens", "vision_tower", "vision_tower_size", "num_image_tokens",
}
LORA_KEYS = {"r", "alpha", "dropout", "target_modules"}
OFF = ("none", "null", "")
TOWER_DEFAULTS = {"audio_tower": "builtin", "ecg_tower": "none", "vision_tower": "none"}  # audio: the first recipes' default


def tower_choice(model_cfg: dict[str, Any], key: str) -> str | None:
    """"builtin", a folder, or None (off) for model.audio_tower / ecg_tower / vision_tower."""
    value = model_cfg.get(key, TOWER_DEFAULTS[key])
    return None if value is None or str(value).lower() in OFF else str(value)


def is_text_only(model_cfg: dict[str, Any]) -> bool:
    return all(tower_choice(model_cfg, key) is None for key in TOWER_DEFAULTS)


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
    """A ClinModel with `.tokenizer`, `.features` (AudioFeatures or None) and `.media_features`
    ({kind: features} for every kind it takes) attached."""
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

    feature_cfg = dict(feature_cfg or {})
    ecg_cfg, image_cfg = feature_cfg.pop("ecg", None) or {}, feature_cfg.pop("image", None) or {}

    # Audio tower + its features.
    tower, spec, features = None, None, None
    if tower_choice(model_cfg, "audio_tower") is not None:
        tower_name = str(model_cfg.get("audio_tower", "builtin"))
        extractor = None
        if tower_name == "builtin":
            fc = FeatureConfig.from_dict({**feature_cfg, "kind": "logmel"})
            spec = {"type": "conv", "n_mels": fc.num_channels, **tower_preset(str(model_cfg.get("tower_size", "small")))}  # input channels: mel bands + extras
        elif is_encoder_folder(tower_name):
            tower, extractor, spec, fc = load_encoder_folder(tower_name)
            if "max_seconds" in feature_cfg:
                fc.max_seconds = float(feature_cfg["max_seconds"])
        else:
            tower, extractor, spec = load_hf_audio_tower(tower_name)
            keep = {k: feature_cfg[k] for k in ("band_hz", "filter_order", "max_seconds") if k in feature_cfg}
            fc = FeatureConfig(kind="hf", sample_rate=int(extractor.sampling_rate), **keep)
        if prep is not None and (prep / FEATURES_FILE).exists():
            fc = FeatureConfig.load(prep)
            features = AudioFeatures(fc, extractor, cache_dir)
        else:
            features = AudioFeatures(fc, extractor, cache_dir)
            if not fc.fitted:  # an encoder folder's statistics are kept
                features.fit(p for row in train_rows for p in row.get("audios") or [])
            if prep is not None:
                prep.mkdir(parents=True, exist_ok=True)
                fc.save(prep)

    ecg_tower, ecg_spec, ecg_features = _ecg_part(model_cfg, ecg_cfg, train_rows, prep)
    vision_tower, vision_spec, image_features = _vision_part(model_cfg, image_cfg, train_rows, prep)

    finding_tokens = _finding_tokens(model_cfg, spec)
    finding_words = model_cfg.get("finding_words", True)
    if finding_words not in (True, False, None, "presence"):
        raise ValueError(f"model.finding_words must be true, false or presence, not {finding_words!r}")
    config = ClinConfig(
        lm_config=lm.config.to_dict(),
        audio_tower=spec,
        projector=str(model_cfg.get("projector", "mlp")),
        num_audio_tokens=int(model_cfg.get("num_audio_tokens", 8)) + finding_tokens,
        audio_finding_tokens=finding_tokens,
        audio_finding_word_ids=finding_word_ids(tokenizer, spec["findings"]) if finding_tokens and finding_words else None,
        audio_finding_bins=int(model_cfg.get("finding_bins") or 0) if finding_tokens else 0,
        audio_finding_word_presence=bool(finding_tokens) and finding_words == "presence",
        audio_time_token_dropout=float(model_cfg.get("time_token_dropout") or 0.0) if finding_tokens else 0.0,
        audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
        lora=lora_kwargs(model_cfg.get("lora")),
        ecg_tower=ecg_spec,
        num_ecg_tokens=int(model_cfg.get("num_ecg_tokens", 8)),
        ecg_token_id=tokenizer.convert_tokens_to_ids(ECG.token),
        vision_tower=vision_spec,
        num_image_tokens=int(model_cfg.get("num_image_tokens", 8)),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE.token),
    )
    towers = {k: t for k, t in (("ecg", ecg_tower), ("image", vision_tower)) if t is not None}
    model = ClinModel(config, language_model=lm, audio_tower=tower, towers=towers)
    model.freeze(dict(model_cfg.get("freeze") or {}))
    model.tokenizer = tokenizer
    model.features = features
    model.media_features = {k: f for k, f in (("audio", features), ("ecg", ecg_features), ("image", image_features)) if f is not None}
    return model


def _finding_tokens(model_cfg: dict[str, Any], spec: dict[str, Any] | None) -> int:
    """How many finding tokens `model.finding_tokens: true` adds: one per finding of the tower's head."""
    if not model_cfg.get("finding_tokens") or spec is None:
        return 0
    findings = spec.get("findings") or []
    if not findings:
        raise ValueError("model.finding_tokens=true needs an audio tower with a findings head: an encoder folder written "
                         "by the tower warm-up (train/tower_warmup.py, as `clinlm quickstart` makes in OUT/encoder); "
                         f"this tower ({spec.get('type')}) has none. Set model.finding_tokens=false")
    return len(findings)


def finding_word_ids(tokenizer, findings: list[str]) -> list[list[int]]:
    """Per finding, the token ids whose mean embedding its finding token carries (composite.py).

    The point is to start the finding token out like the word a question asks with, so the ids are
    those of the bench's own spellings ("crackle" -> " crackles" as in "Any crackles?", see
    bench/templates.py PLAIN), keeping only spellings that are one token when any is: a BPE tokenizer
    trained on the bench splits the rare singular " crackle" into c/rac/k/le, and the mean of those
    pieces resembles nothing a question contains. (The 2026-12-03 quickstart answered "crackles?"
    from the wheeze token and vice versa; murmur and abnormal, one token each, were read well.)
    A pretrained tokenizer that splits every spelling gets the mean over the pieces of all of them.
    """
    from clinlm.bench.templates import PLAIN
    from clinlm.train.tower_warmup import TARGET_WORDS

    out = []
    for name in findings:
        spellings = list(dict.fromkeys([PLAIN.get(name) or TARGET_WORDS.get(name, name), name]))
        pieces = [tokenizer(" " + word, add_special_tokens=False)["input_ids"] for word in spellings]
        whole = [ids for ids in pieces if len(ids) == 1]
        out.append([i for ids in (whole or pieces) for i in ids])
    return out


def _media_paths(rows: list[dict[str, Any]], key: str) -> list[str]:
    return [p for row in rows for p in row.get(key) or []]


def _ecg_part(model_cfg: dict[str, Any], ecg_cfg: dict[str, Any], train_rows: list[dict[str, Any]], prep: Path | None):
    """(pretrained tower or None, tower spec, EcgFeatures), or (None, None, None) without an ECG tower."""
    choice = tower_choice(model_cfg, "ecg_tower")
    if choice is None:
        return None, None, None
    cfg = EcgFeatureConfig.load(prep) if prep is not None and (prep / ECG_FEATURES_FILE).exists() else EcgFeatureConfig.from_dict(ecg_cfg)
    tower = None
    if choice == "builtin":
        spec = {"type": "conv1d", "leads": len(cfg.leads), **named_preset(ECG_TOWER_PRESETS, str(model_cfg.get("ecg_tower_size", "small")), "ECG tower")}
    else:
        tower, spec = load_hf_ecg_tower(choice, len(cfg.leads), cfg.num_samples)
    features = EcgFeatures(cfg)
    if not cfg.fitted:
        paths = _media_paths(train_rows, ECG.rows_key)
        if not paths:
            raise ValueError("model.ecg_tower is set but the training rows have no ECGs ('ecgs'); build an ECG bench "
                             "(`clinlm bench build ... --tasks ecg`) or set model.ecg_tower=none")
        features.fit(paths)
        if prep is not None:
            prep.mkdir(parents=True, exist_ok=True)
            cfg.save(prep)
    return tower, spec, features


def _vision_part(model_cfg: dict[str, Any], image_cfg: dict[str, Any], train_rows: list[dict[str, Any]], prep: Path | None):
    """(pretrained tower or None, tower spec, ImageFeatures), or (None, None, None) without a vision tower."""
    choice = tower_choice(model_cfg, "vision_tower")
    if choice is None:
        return None, None, None
    tower, processor = None, None
    if choice == "builtin":
        spec = {"type": "conv2d", **named_preset(VISION_TOWER_PRESETS, str(model_cfg.get("vision_tower_size", "small")), "vision tower")}
        cfg = ImageFeatureConfig.from_dict({**image_cfg, "kind": "builtin"})
    else:
        tower, processor, spec = load_hf_vision_tower(choice)
        cfg = ImageFeatureConfig(kind="hf")
    if prep is not None and (prep / IMAGE_FEATURES_FILE).exists():
        cfg = ImageFeatureConfig.load(prep)
    features = ImageFeatures(cfg, processor)
    if not cfg.fitted:
        paths = _media_paths(train_rows, IMAGE.rows_key)
        if not paths:
            raise ValueError("model.vision_tower is set but the training rows have no images ('images'); build an image bench "
                             "(`clinlm bench build ... --media image`) or set model.vision_tower=none")
        features.fit(paths)
    if prep is not None and not (prep / IMAGE_FEATURES_FILE).exists():
        prep.mkdir(parents=True, exist_ok=True)
        cfg.save(prep)
    return tower, spec, features
