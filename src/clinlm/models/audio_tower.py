"""Audio towers: a recording's features -> a sequence of hidden states (batch, frames', d).

Two choices, picked by `model.audio_tower` in the config:
- `builtin`: a small 1-D convolutional encoder over standardised log-mel frames. Each block is
  conv (kernel 5, stride 2) -> GELU -> LayerNorm over channels, so frames' = frames / 2**layers.
  Small enough to train from scratch on CPU in minutes, which is what the quickstart needs.
- a local folder with any transformers audio model (Whisper, AST, wav2vec2, HuBERT, ...): loaded
  with AutoModel (the encoder half of encoder-decoder models) and read through
  `last_hidden_state`; its AutoFeatureExtractor does the feature extraction.

`tower_spec` is the JSON-able description stored in the checkpoint's config, from which
`build_audio_tower` rebuilds the same architecture without the original folder. An encoder folder
written by `clinlm align` (a spec + trained weights + features, models/encoder_folder.py) is a
third choice: `models/build.py` loads it with `load_encoder_folder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class ConvAudioEncoder(nn.Module):
    """(batch, frames, n_mels) -> (batch, ceil(frames / 2**layers), channels [+ n_mels with skip]).

    `skip=True` appends the input frames, max-pooled to the output frame rate, to the conv output.
    Short events that matter clinically (a crackle is one frame of the `transient` channel) then
    reach the projector unchanged instead of being averaged away by the convolutions, and the
    projector's max-pooling carries them to the language model.

    `findings=K` adds a linear head over those hidden states with K per-frame logits (murmur,
    crackle, wheeze, abnormal: what `train/tower_warmup.py` trains it on) and appends their
    sigmoid to the output, so hidden_size grows by K. A finding that lasts one frame then reaches
    the language model as a 0-1 value in its own channel, instead of as a small direction in 64
    mixed channels that an LM learning from scratch picks up only slowly (on the simulator the
    tower's time-mean features separate crackles with a linear-probe AUROC of 0.99, yet an SFT
    model read through them answered crackle questions at 0.6-0.7 accuracy).
    """

    def __init__(self, n_mels: int, channels: int = 128, layers: int = 3, kernel: int = 5, dropout: float = 0.0, skip: bool = False,
                 findings: int = 0):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(layers):
            self.convs.append(nn.Conv1d(n_mels if i == 0 else channels, channels, kernel, stride=2, padding=kernel // 2))
            self.norms.append(nn.LayerNorm(channels))
        self.dropout = nn.Dropout(dropout)
        self.skip = skip
        base = channels + (n_mels if skip else 0)
        self.findings_head = nn.Linear(base, findings) if findings else None
        self.hidden_size = base + findings

    def forward_with_findings(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(hidden (batch, frames', hidden_size), finding logits (batch, frames', K) or None)."""
        x = features.transpose(1, 2)  # (batch, n_mels, frames): Conv1d wants channels first
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h)  # (batch, channels, frames / 2)
            h = norm(nn.functional.gelu(h).transpose(1, 2)).transpose(1, 2)
        if self.skip:
            peaks = nn.functional.adaptive_max_pool1d(x, h.shape[-1])  # (batch, n_mels, frames')
            h = torch.cat([h, peaks], dim=1)
        h = h.transpose(1, 2)  # (batch, frames', base)
        logits = None
        if self.findings_head is not None:
            logits = self.findings_head(h)  # (batch, frames', K)
            h = torch.cat([h, torch.sigmoid(logits)], dim=-1)
        return self.dropout(h), logits

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_with_findings(features)[0]  # (batch, frames', hidden_size)


class HFAudioEncoder(nn.Module):
    """A transformers audio encoder: (batch, *feature shape) -> last_hidden_state (batch, frames', d)."""

    def __init__(self, encoder: nn.Module, input_name: str):
        super().__init__()
        self.encoder = encoder
        self.input_name = input_name  # "input_features" (Whisper) or "input_values" (wav2vec2, AST)
        self.hidden_size = int(encoder.config.hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder(**{self.input_name: features}).last_hidden_state


def _encoder_only(model: nn.Module) -> nn.Module:
    # Whisper and other encoder-decoder speech models: keep the encoder, drop the text decoder.
    if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        return model.get_encoder()
    return model


def load_hf_audio_tower(folder: str | Path) -> tuple[HFAudioEncoder, Any, dict[str, Any]]:
    """Load a local transformers audio model: (tower, feature extractor, tower_spec)."""
    from transformers import AutoFeatureExtractor, AutoModel

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"model.audio_tower={folder} is neither 'builtin', 'none', an encoder folder from `clinlm align` "
            "(clinlm_encoder.json) nor a folder with a transformers config.json (save one with "
            "model.save_pretrained(folder) and its feature extractor beside it)"
        )
    try:
        extractor = AutoFeatureExtractor.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"no feature extractor (preprocessor_config.json) in {folder}: {exc}") from exc
    encoder = _encoder_only(AutoModel.from_pretrained(folder))
    input_name = extractor.model_input_names[0]
    spec = {"type": "hf", "input_name": input_name, "hf_config": encoder.config.to_dict()}
    return HFAudioEncoder(encoder, input_name), extractor, spec


def build_audio_tower(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a tower (random weights) from its spec; the checkpoint's weights are loaded after."""
    if spec["type"] == "conv":
        return ConvAudioEncoder(
            spec["n_mels"], spec["channels"], spec["layers"], spec.get("kernel", 5), spec.get("dropout", 0.0), spec.get("skip", False),
            len(spec.get("findings") or []),
        )
    if spec["type"] == "hf":
        from transformers import AutoConfig, AutoModel

        hf = dict(spec["hf_config"])
        config = AutoConfig.for_model(hf.pop("model_type"), **hf)
        return HFAudioEncoder(_encoder_only(AutoModel.from_config(config)), spec["input_name"])
    raise ValueError(f"unknown audio tower type {spec['type']!r} (expected 'conv' or 'hf')")
