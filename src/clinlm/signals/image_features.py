"""Image model inputs that live with the model: orientation, RGB, resize, standardise.

`ImageFeatureConfig` is saved as `image_features.json` in every checkpoint with a vision tower
(and a transformers tower's own image processor in `image_processor/`), so `clinlm ask --image`
sees a photo exactly as training saw its pages.

- `builtin` (the built-in conv tower): the EXIF orientation applied (phone photos are often
  stored sideways with a rotation tag), RGB, resized to `size` = [height, width] with Pillow's
  antialiased bilinear filter (a 1100 x 850 page to 384 x 288 keeps the 1-pixel trace as a
  darker line rather than dropping it), then per-channel standardisation with statistics fitted
  on the *training* images. RGB, not grey: on the red grid the trace is the only dark thing in
  the red channel. Shape (3, height, width). With `min_filter: k` (odd, e.g. 3) each pixel first
  takes the darkest value of its k x k neighbourhood (Pillow's MinFilter), so a 1-pixel trace is
  k pixels wide before a 3x downsampling instead of fading to a third of its contrast. With
  `flat_field: r` each channel is first divided by its own Gaussian blur of radius r pixels
  (flat-field correction): a photo's uneven light, shadow and colour cast, and the table around
  the page, become the same near-white background a scan has, while thin dark lines (the trace,
  the grid) keep their contrast.
- `hf` (a transformers vision encoder): orientation and RGB as above, then the encoder's own
  image processor (its size, crop and normalisation).

Images are cached per file as uint8 (a 288 x 384 page is 0.3 MB), normalised when asked for.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

IMAGE_FEATURES_FILE = "image_features.json"
IMAGE_PROCESSOR_DIR = "image_processor"


class ImageError(ValueError):
    """An image that cannot be used, with the reason."""


@dataclass
class ImageFeatureConfig:
    kind: str = "builtin"  # "builtin" | "hf" (the tower's own image processor)
    size: list[int] = field(default_factory=lambda: [288, 384])  # [height, width] px (builtin)
    mean: list[float] | None = None  # (3,) per channel, on the 0-1 scale, fitted on training images
    std: list[float] | None = None  # (3,)
    min_filter: int = 0  # 0 = off; k (odd): darkest of each k x k neighbourhood before the resize (builtin)
    flat_field: float = 0.0  # 0 = off; r: divide by a Gaussian blur of radius r px first (builtin)

    def __post_init__(self) -> None:
        if self.kind not in ("builtin", "hf"):
            raise ValueError(f"features.image.kind must be 'builtin' or 'hf', not {self.kind!r}")
        if len(self.size) != 2 or min(int(v) for v in self.size) < 8:
            raise ValueError(f"features.image.size must be [height, width] of at least 8 pixels, got {self.size}")
        self.size = [int(v) for v in self.size]
        self.min_filter = int(self.min_filter or 0)
        if self.min_filter and (self.min_filter < 3 or self.min_filter % 2 == 0):
            raise ValueError(f"features.image.min_filter must be 0 (off) or an odd size >= 3, not {self.min_filter}")

    @property
    def fitted(self) -> bool:
        return self.kind == "hf" or (self.mean is not None and self.std is not None)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / IMAGE_FEATURES_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "ImageFeatureConfig":
        path = Path(folder) / IMAGE_FEATURES_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: this folder is not a clinlm checkpoint with a vision tower")
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImageFeatureConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown features.image settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def open_rgb(path: str | Path):
    """A PIL RGB image, upright (EXIF orientation applied); ImageError when it cannot be read."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def flat_field(img, radius: float):
    """PIL RGB image divided channel-wise by its Gaussian blur (radius px), rescaled to 0-255."""
    from PIL import Image, ImageFilter

    x = np.asarray(img, dtype=np.float32)
    light = np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    return Image.fromarray(np.clip(x / np.maximum(light, 1.0) * 255.0, 0, 255).astype(np.uint8))


class ImageFeatures:
    """Image path -> model input (3, H, W) float32, cached per file."""

    def __init__(self, cfg: ImageFeatureConfig, processor: Any = None):
        if cfg.kind == "hf" and processor is None:
            raise ValueError("features.image.kind='hf' needs the vision encoder's image processor")
        self.cfg = cfg
        self.processor = processor
        self._raw: dict[str, np.ndarray] = {}

    def raw(self, path: str | Path) -> np.ndarray:
        """builtin: uint8 (H, W, 3) resized; hf: the processor's float32 (3, H, W)."""
        from PIL import Image, ImageFilter

        key = str(path)
        if key not in self._raw:
            img = open_rgb(path)
            if self.cfg.kind == "hf":
                out = self.processor(images=img, return_tensors="np")
                self._raw[key] = np.asarray(out["pixel_values"][0], dtype=np.float32)
            else:
                h, w = self.cfg.size
                if self.cfg.flat_field:
                    img = flat_field(img, self.cfg.flat_field)
                if self.cfg.min_filter:
                    img = img.filter(ImageFilter.MinFilter(self.cfg.min_filter))
                self._raw[key] = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
        return self._raw[key]

    def fit(self, paths: Iterable[str | Path]) -> ImageFeatureConfig:
        """Per-channel mean and std (0-1 scale) over the training images (builtin only)."""
        if self.cfg.kind != "builtin":
            return self.cfg
        total, total_sq, count = np.zeros(3), np.zeros(3), 0
        for p in sorted(set(map(str, paths))):
            x = self.raw(p).reshape(-1, 3).astype(np.float64) / 255.0
            total += x.sum(0)
            total_sq += (x**2).sum(0)
            count += len(x)
        if not count:
            raise ValueError("no training image to fit the image normalisation on")
        mean = total / count
        self.cfg.mean, self.cfg.std = mean.tolist(), np.sqrt(np.maximum(total_sq / count - mean**2, 1e-6)).tolist()
        return self.cfg

    def __call__(self, path: str | Path) -> torch.Tensor:
        x = self.raw(path)
        if self.cfg.kind == "hf":
            return torch.from_numpy(x)
        if not self.cfg.fitted:
            raise ValueError("image normalisation is not fitted: call ImageFeatures.fit(training paths) first")
        x = (x.astype(np.float32) / 255.0 - np.asarray(self.cfg.mean, np.float32)) / np.asarray(self.cfg.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # (3, H, W)
