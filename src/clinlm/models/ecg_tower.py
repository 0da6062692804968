"""ECG towers: a multi-lead signal (batch, samples, leads) -> hidden states (batch, frames', d).

Two choices, picked by `model.ecg_tower`:
- `builtin`: a 1-D convolutional encoder over the standardised leads (`signals/ecg_features.py`).
  Each block is conv (kernel 7, stride 2) -> GELU -> LayerNorm over channels, so
  frames' = samples / 2**layers; six blocks at 100 Hz see about 3.8 s per frame, several beats,
  which is what a rhythm (RR irregularity, missing P waves) needs. Small enough to train from
  scratch on a CPU in minutes.
- a local folder with a transformers time-series encoder that takes several channels at once as
  `past_values` (batch, samples, channels): PatchTST (`PatchTSTModel`) and PatchTSMixer
  (`PatchTSMixerModel`) fit; its config must say `num_input_channels` = the number of leads and
  `context_length` = samples (sample_rate x seconds). Their `last_hidden_state` is
  (batch, channels, patches, d): the leads are laid side by side per patch, giving
  (batch, patches, channels * d), so lead identity and time order both survive. Audio encoders
  (wav2vec2, Whisper) take one channel and do not fit a 12-lead ECG; single-lead data can still
  use them through `model.audio_tower` on a waveform file.

`tower_spec` (JSON-able, in the checkpoint's config.json) rebuilds the same architecture without
the original folder (`build_ecg_tower`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

HF_INPUT = "past_values"


class ConvEcgEncoder(nn.Module):
    """(batch, samples, leads) -> (batch, ceil(samples / 2**layers), channels)."""

    def __init__(self, leads: int, channels: int = 64, layers: int = 6, kernel: int = 7, dropout: float = 0.0):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(leads if i == 0 else channels, channels, kernel, stride=2, padding=kernel // 2) for i in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = channels

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        h = signal.transpose(1, 2)  # (batch, leads, samples): Conv1d wants channels first
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h)  # (batch, channels, samples / 2)
            h = norm(nn.functional.gelu(h).transpose(1, 2)).transpose(1, 2)
        return self.dropout(h.transpose(1, 2))  # (batch, frames', channels)


class HFEcgEncoder(nn.Module):
    """A transformers time-series encoder read through `last_hidden_state`."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        cfg = encoder.config
        d = int(getattr(cfg, "d_model", None) or cfg.hidden_size)
        self.channels = int(getattr(cfg, "num_input_channels", 1))
        self.hidden_size = d * self.channels

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        h = self.encoder(**{HF_INPUT: signal}).last_hidden_state
        if h.dim() == 4:  # (batch, channels, patches, d) -> (batch, patches, channels * d)
            b, c, p, d = h.shape
            h = h.permute(0, 2, 1, 3).reshape(b, p, c * d)
        return h


def check_hf_ecg_config(config: Any, leads: int, samples: int, where: str) -> None:
    """The encoder's input geometry must be the features' (clear error otherwise)."""
    channels = getattr(config, "num_input_channels", None)
    context = getattr(config, "context_length", None)
    if channels is None or context is None:
        raise ValueError(
            f"{where}: a {config.model_type} model has no num_input_channels/context_length; the ECG tower needs a "
            "multi-channel time-series encoder such as PatchTST or PatchTSMixer"
        )
    if int(channels) != leads or int(context) != samples:
        raise ValueError(
            f"{where}: the encoder takes {channels} channels x {context} samples but the ECG features give {leads} leads "
            f"x {samples} samples (features.ecg sample_rate x seconds); make them match"
        )


def load_hf_ecg_tower(folder: str | Path, leads: int, samples: int) -> tuple[HFEcgEncoder, dict[str, Any]]:
    """A local transformers time-series encoder: (tower, tower_spec)."""
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"model.ecg_tower={folder} is neither 'builtin', 'none' nor a folder with a transformers config.json "
            "(save a PatchTST/PatchTSMixer model there with save_pretrained)"
        )
    check_hf_ecg_config(AutoConfig.from_pretrained(folder), leads, samples, f"model.ecg_tower={folder}")
    encoder = AutoModel.from_pretrained(folder)
    return HFEcgEncoder(encoder), {"type": "hf", "hf_config": encoder.config.to_dict()}


def build_ecg_tower(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a tower (random weights) from its spec; the checkpoint's weights are loaded after."""
    if spec["type"] == "conv1d":
        return ConvEcgEncoder(spec["leads"], spec["channels"], spec["layers"], spec.get("kernel", 7), spec.get("dropout", 0.0))
    if spec["type"] == "hf":
        from transformers import AutoConfig, AutoModel

        hf = dict(spec["hf_config"])
        return HFEcgEncoder(AutoModel.from_config(AutoConfig.for_model(hf.pop("model_type"), **hf)))
    raise ValueError(f"unknown ECG tower type {spec['type']!r} (expected 'conv1d' or 'hf')")
