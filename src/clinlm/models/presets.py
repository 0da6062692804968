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

# Built-in conv tower sizes (channels, stride-2 blocks): frames' = frames / 2**layers.
TOWER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(channels=32, layers=2),
    "small": dict(channels=64, layers=3),
    "base": dict(channels=128, layers=3),
}


def lm_preset(name: str) -> dict[str, Any]:
    if name not in LM_PRESETS:
        raise KeyError(f"unknown language-model preset {name!r}; presets: {', '.join(LM_PRESETS)} (or give a local model folder)")
    return dict(LM_PRESETS[name])


def tower_preset(name: str) -> dict[str, Any]:
    if name not in TOWER_PRESETS:
        raise KeyError(f"unknown audio-tower preset {name!r}; presets: {', '.join(TOWER_PRESETS)}")
    return dict(TOWER_PRESETS[name])
