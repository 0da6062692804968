"""Vision towers: an image (batch, 3, H, W) -> a sequence of hidden states (batch, cells, d).

Two choices, picked by `model.vision_tower`:
- `builtin`: a small 2-D convolutional encoder over the resized, standardised page
  (`signals/image_features.py`). Each block is conv 3x3 stride 2 -> GELU -> GroupNorm, so a
  288 x 384 page becomes 9 x 12 cells after five blocks; the cells are read row by row (top to
  bottom, the order a 3x4 printout and its rhythm strip are laid out in). Trains from scratch on
  a CPU.
- `columns` (`model.vision_tower_size: columns`): the same 2-D blocks, then the page is read along
  its time axis. On a printout x is time for every row at once (the 3x4 columns and the rhythm
  strip below start together at 25 mm/s), so the height is collapsed (max and mean over rows:
  a beat in any lead counts, and a photo's few degrees of tilt do not move it to another
  column) and dilated 1-D convolutions run along x. Atrial fibrillation is an irregular spacing
  of beats: the plain grid of cells sees ~60 px around each cell, less than two beats on a
  384 px wide page; the 1-D stack sees the whole 10 s. Measured by
  benchmarks/ecg_image_tower.py (90 held-out simulated ECGs, RESULTS.md): held-out AF AUROC of
  the tower's findings head 0.73 (grid) vs 0.95 (columns) on clean pages, 0.64 vs 0.65 on
  photo-like pictures, with `min_filter 3` and `flat_field 20`.
- a local folder with any transformers vision encoder that takes `pixel_values` and returns
  `last_hidden_state` (ViT, DINOv2, Swin, ConvNeXt-style models via AutoModel; CLIP and SigLIP
  keep their `vision_model`). Its AutoImageProcessor does the resizing and normalisation and is
  saved with the checkpoint. PULSE uses a frozen CLIP ViT-L/14-336 this way.

`build_vision_tower(spec)` rebuilds the architecture from the checkpoint's config.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class ConvImageEncoder(nn.Module):
    """(batch, 3, H, W) -> (batch, ceil(H / 2**layers) * ceil(W / 2**layers), channels[-1])."""

    def __init__(self, channels: list[int], layers: int | None = None, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        channels = list(channels)[: layers or len(channels)]
        blocks = []
        for i, c in enumerate(channels):
            blocks += [nn.Conv2d(in_channels if i == 0 else channels[i - 1], c, 3, stride=2, padding=1), nn.GELU(),
                       nn.GroupNorm(min(8, c), c)]
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = channels[-1]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        h = self.blocks(pixels)  # (batch, channels, H', W')
        return self.dropout(h.flatten(2).transpose(1, 2))  # (batch, H' * W', channels), row by row


class ConvColumnEncoder(nn.Module):
    """(batch, 3, H, W) -> (batch, ceil(W / 2**layers), d): columns of the page, left to right."""

    def __init__(self, channels: list[int], layers: int | None = None, column_layers: int = 3, kernel: int = 5,
                 dropout: float = 0.0):
        super().__init__()
        self.grid = ConvImageEncoder(channels, layers)
        c = self.grid.hidden_size
        self.merge = nn.Conv1d(2 * c, c, 1)  # [max, mean] over rows -> one vector per column
        # Residual dilated blocks along x: with kernel 5 and dilations 1, 2, 4 each output column
        # sees 29 columns (a whole 10 s page at 32 columns).
        self.columns = nn.ModuleList(
            nn.Sequential(nn.Conv1d(c, c, kernel, padding=(kernel - 1) // 2 * 2**i, dilation=2**i), nn.GELU(), nn.GroupNorm(min(8, c), c))
            for i in range(column_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = c

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        h = self.grid.blocks(pixels)  # (batch, c, H', W')
        h = self.merge(torch.cat([h.amax(dim=2), h.mean(dim=2)], dim=1))  # (batch, c, W')
        for block in self.columns:
            h = h + block(h)
        return self.dropout(h.transpose(1, 2))  # (batch, W', c)


class HFVisionEncoder(nn.Module):
    """A transformers vision encoder: pixel_values -> last_hidden_state (batch, patches, d)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        cfg = encoder.config
        self.hidden_size = int(getattr(cfg, "hidden_size", None) or cfg.hidden_sizes[-1])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        h = self.encoder(pixel_values=pixels).last_hidden_state
        if h.dim() == 4:  # convolutional backbones: (batch, d, H', W') -> (batch, H' * W', d)
            h = h.flatten(2).transpose(1, 2)
        return h


def _vision_only(model: nn.Module) -> nn.Module:
    # CLIP / SigLIP style models (dual encoders and their *VisionModel wrappers): keep the image
    # transformer itself, so loading from a folder and rebuilding from the spec give the same names.
    return model.vision_model if isinstance(getattr(model, "vision_model", None), nn.Module) else model


def load_hf_vision_tower(folder: str | Path) -> tuple[HFVisionEncoder, Any, dict[str, Any]]:
    """A local transformers vision model: (tower, image processor, tower_spec)."""
    from transformers import AutoImageProcessor, AutoModel

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"model.vision_tower={folder} is neither 'builtin', 'none' nor a folder with a transformers config.json "
            "(save a vision model there with save_pretrained, and its image processor beside it)"
        )
    try:
        processor = AutoImageProcessor.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"no image processor (preprocessor_config.json) in {folder}: {exc}") from exc
    encoder = _vision_only(AutoModel.from_pretrained(folder))
    return HFVisionEncoder(encoder), processor, {"type": "hf", "hf_config": encoder.config.to_dict()}


def build_vision_tower(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a tower (random weights) from its spec; the checkpoint's weights are loaded after."""
    if spec["type"] == "conv2d":
        return ConvImageEncoder(spec["channels"], spec.get("layers"), dropout=spec.get("dropout", 0.0))
    if spec["type"] == "columns":
        return ConvColumnEncoder(spec["channels"], spec.get("layers"), spec.get("column_layers", 3), spec.get("kernel", 5),
                                 dropout=spec.get("dropout", 0.0))
    if spec["type"] == "hf":
        from transformers import AutoConfig, AutoModel

        hf = dict(spec["hf_config"])
        return HFVisionEncoder(_vision_only(AutoModel.from_config(AutoConfig.for_model(hf.pop("model_type"), **hf))))
    raise ValueError(f"unknown vision tower type {spec['type']!r} (expected 'conv2d', 'columns' or 'hf')")
