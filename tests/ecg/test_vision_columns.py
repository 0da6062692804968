"""The page-along-time vision tower (`columns`) and trace-keeping image preprocessing (`min_filter`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clinlm.evaluate.stats import auroc
from clinlm.models.presets import VISION_TOWER_PRESETS
from clinlm.models.vision_tower import ConvColumnEncoder, build_vision_tower
from clinlm.signals.image_features import ImageFeatureConfig, ImageFeatures
from clinlm.train.media_warmup import _pooled, fit_tower_on_labels


def test_columns_tower_reads_the_page_left_to_right():
    tower = ConvColumnEncoder([4, 8, 8], layers=3, column_layers=2)
    out = tower(torch.zeros(2, 3, 40, 96))
    assert out.shape == (2, 96 // 8, 8)  # one vector per column of the page, the height collapsed
    assert tower(torch.zeros(1, 3, 80, 96)).shape == (1, 12, 8)  # a taller page: the same columns
    spec = {"type": "columns", **{k: v for k, v in VISION_TOWER_PRESETS["columns"].items() if k != "type"}}
    a, b = build_vision_tower(spec), build_vision_tower(spec)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 256)
    assert torch.equal(a.eval()(x), b.eval()(x)) and a(x).shape == (1, 8, 64)


def _beats(regular: bool, rng: np.random.Generator, height: int = 24, width: int = 192) -> torch.Tensor:
    """A strip of short vertical bars (beats) at a random height: evenly spaced or at random gaps."""
    img = torch.zeros(3, height, width)
    gap = rng.uniform(14, 22)
    x = rng.uniform(0, gap)
    while x < width - 2:
        y = int(rng.integers(2, height - 8))
        img[:, y : y + 6, int(x) : int(x) + 2] = 1.0
        x += gap if regular else rng.uniform(0.4, 1.6) * gap
    return img


def test_columns_tower_learns_irregular_spacing_from_labels_alone():
    # The AF cue on a printout: the same beats, irregularly spaced. Nothing but the spacing differs.
    rng = np.random.default_rng(0)
    items = {f"{split}{i}": (_beats(i % 2 == 0, rng), float(i % 2 == 1)) for split, n in (("train", 160), ("test", 60)) for i in range(n)}
    torch.manual_seed(0)
    tower = ConvColumnEncoder([8, 16, 16], layers=3, column_layers=3)
    train = {k: {"irregular": y} for k, (_, y) in items.items() if k.startswith("train")}
    head, findings, _ = fit_tower_on_labels(tower, lambda k: items[k][0], train, epochs=25, lr=3e-3, batch_size=16)
    test = [k for k in items if k.startswith("test")]
    with torch.no_grad():
        tower.eval()
        scores = torch.sigmoid(head(_pooled(tower(torch.stack([items[k][0] for k in test]))))).squeeze(1).numpy()
    y = np.array(["yes" if items[k][1] else "no" for k in test], dtype=object)
    assert findings == ["irregular"] and auroc(y, y, scores) > 0.9


def test_min_filter_keeps_a_thin_trace_dark_through_the_resize(tmp_path):
    page = np.full((96, 96, 3), 255, np.uint8)
    page[47, :, :] = 0  # a 1-px black horizontal trace
    Image.fromarray(page).save(tmp_path / "page.png")

    def darkest(k: int) -> int:
        return int(ImageFeatures(ImageFeatureConfig(size=[32, 32], min_filter=k)).raw(tmp_path / "page.png").min())

    plain, kept, wide = darkest(0), darkest(3), darkest(5)
    assert plain > 180  # antialiased 3x downsampling fades the black line to a light grey
    assert kept < 100 and wide < 40  # 3 (5) pixels wide before the resize: most (all) of its darkness kept
    for bad in (1, 2, -3):
        with pytest.raises(ValueError, match="min_filter"):
            ImageFeatureConfig(min_filter=bad)


def test_flat_field_evens_out_light_and_keeps_the_trace(tmp_path):
    # A white page with a black trace, lit from the left (bright) to the right (dark).
    page = np.full((64, 128, 3), 255.0)
    page[32, :, :] = 0
    page *= np.linspace(1.0, 0.4, 128)[None, :, None]
    Image.fromarray(page.astype(np.uint8)).save(tmp_path / "lit.png")

    def read(radius: float) -> np.ndarray:
        return ImageFeatures(ImageFeatureConfig(size=[64, 128], flat_field=radius)).raw(tmp_path / "lit.png").astype(float)

    plain, even = read(0), read(8)
    background = lambda x: x[5:25].mean(axis=(0, 2))  # (width,) brightness of the paper above the trace
    assert background(plain)[-10:].mean() < 0.5 * background(plain)[:10].mean()  # the shadow is there ...
    assert abs(background(even)[-10:].mean() - background(even)[:10].mean()) < 10  # ... and gone
    assert even[32, 10:-10].max() < 0.3 * background(even).mean()  # the trace is still dark
