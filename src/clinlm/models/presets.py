"""Named sizes for the embedded language model and the built-in audio tower.

The embedded LM is a Llama-architecture decoder (RoPE, RMSNorm, SwiGLU, tied input/output
embeddings) trained from scratch on the bench text with its own byte-level BPE tokenizer.
- `tiny`: for tests; trains in seconds.
- `small`: the quickstart; about 3.6 M parameters, a few thousand tokens/s on 2 CPU cores, enough
  to learn the bench's answer language and to condition it on the audio prefix.
For a real medical LLM, point `model.language_model` at a local folder instead.
"""

from __future__ import annotations

from typing import Any

LM_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=512, vocab_size=1024,
    ),
    "small": dict(
        hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=1024, vocab_size=2048,
    ),
    "base": dict(
        hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=1024, vocab_size=4096,
    ),
}

# Built-in conv tower sizes (channels, stride-2 blocks): frames' = frames / 2**layers; `skip` also
# passes the max-pooled input frames to the projector (audio_tower.py).
TOWER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(channels=32, layers=2, skip=True),
    "small": dict(channels=64, layers=3, skip=True),
    "base": dict(channels=128, layers=3, skip=True),
}


# Built-in ECG tower sizes (conv1d blocks of stride 2 over (samples, leads)): at 100 Hz x 10 s the
# "small" tower gives 1000 / 2**6 = 16 frames, each seeing about 3.8 s (a few beats: rhythm).
ECG_TOWER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(channels=16, layers=3, kernel=7),
    "small": dict(channels=64, layers=6, kernel=7),
    "base": dict(channels=128, layers=6, kernel=7),
}

# Built-in vision tower sizes (conv2d blocks of stride 2): a 288 x 384 page gives 9 x 12 cells
# with "small" (5 blocks).
VISION_TOWER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(channels=[8, 16], layers=2),
    "small": dict(channels=[16, 32, 64, 64, 64], layers=5),
    "base": dict(channels=[32, 64, 128, 128, 128], layers=5),
    # The page read along its time axis (models/vision_tower.py ConvColumnEncoder): a 256 x 1024
    # page -> 32 columns of 64 channels.
    "columns": dict(type="columns", channels=[16, 32, 64, 64, 64], layers=5, column_layers=3),
}


def named_preset(table: dict[str, dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    if name not in table:
        raise KeyError(f"unknown {what} preset {name!r}; presets: {', '.join(table)}")
    return dict(table[name])


def lm_preset(name: str) -> dict[str, Any]:
    if name not in LM_PRESETS:
        raise KeyError(f"unknown language-model preset {name!r}; presets: {', '.join(LM_PRESETS)} (or give a local model folder)")
    return dict(LM_PRESETS[name])


def tower_preset(name: str) -> dict[str, Any]:
    if name not in TOWER_PRESETS:
        raise KeyError(f"unknown audio-tower preset {name!r}; presets: {', '.join(TOWER_PRESETS)}")
    return dict(TOWER_PRESETS[name])
