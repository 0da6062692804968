"""ECG printout rendering: paper geometry (25 mm/s, 10 mm/mV), layouts, augmentations, the
render_records table and the `clinlm render-ecg` verb."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clinlm.records import Record, atomic_write_table, read_records, read_rejects, records_to_table
from clinlm.signals.ecg import STANDARD_LEADS
from clinlm.signals.ecg_image import (
    GAIN_MM_MV,
    PAGE_MM,
    PAPER_SPEED_MM_S,
    augment_image,
    draw_ecg,
    image_seed,
    render_records,
)
from clinlm.sources._ecg import ecg_fields

FS = 500


def _pulse_signal(n_leads: int = 12, at_s: float = 1.0) -> np.ndarray:
    """Flat leads with one 1 mV, 40 ms pulse at `at_s` (so its height and place can be measured)."""
    x = np.zeros((n_leads, 10 * FS), dtype=np.float32)
    x[:, int(at_s * FS) : int((at_s + 0.04) * FS)] = 1.0
    return x


def _ink(image: np.ndarray) -> np.ndarray:
    return image.astype(int).sum(axis=2) < 150  # black trace pixels, not the red/grey grid


def test_paper_speed_gain_and_calibration_pulse():
    dpi = 100
    image, s = draw_ecg(_pulse_signal(), FS, list(STANDARD_LEADS), dpi=dpi)
    px = dpi / 25.4
    assert s["layout"] == "3x4+II" and image.shape == (round(PAGE_MM[1] * px), round(PAGE_MM[0] * px), 3)
    assert (s["paper_speed_mm_s"], s["gain_mm_mv"]) == (PAPER_SPEED_MM_S, GAIN_MM_MV) == (25.0, 10.0)
    strip = next(t for t in s["traces"] if t["row"] == 3)
    assert strip["lead"] == "II" and strip["t1_s"] - strip["t0_s"] == 10.0
    ink = _ink(image)
    base_y = (PAGE_MM[1] - strip["baseline_mm"]) * px  # image rows count from the top
    # The pulse at 1.0 s sits 25 mm right of the strip's start and rises 10 mm.
    x_pulse = (strip["x0_mm"] + PAPER_SPEED_MM_S * 1.02) * px
    cols = ink[:, int(x_pulse) - 1 : int(x_pulse) + 2]
    top = np.nonzero(cols[int(base_y - 15 * px) : int(base_y + 2)].any(axis=1))[0][0] + int(base_y - 15 * px)
    assert abs((base_y - top) - GAIN_MM_MV * px) < 3
    # Flat elsewhere on the strip: nothing drawn 3 mm above the baseline between 1.5 s and 9 s.
    band = ink[int(base_y - 8 * px) : int(base_y - 3 * px), int((strip["x0_mm"] + 40) * px) : int((strip["x0_mm"] + 220) * px)]
    assert not band.any()
    # The calibration pulse at the row start is 10 mm high too.
    cal = ink[int(base_y - 12 * px) : int(base_y + 2), int(11 * px)]
    assert abs((base_y - (np.nonzero(cal)[0][0] + int(base_y - 12 * px))) - 10 * px) < 3


def test_three_by_four_cells_and_rows_layout():
    _, s = draw_ecg(_pulse_signal(), FS, list(STANDARD_LEADS))
    cells = [(t["row"], t["lead"], t["t0_s"]) for t in s["traces"]]
    assert cells[:4] == [(0, "I", 0.0), (0, "aVR", 2.5), (0, "V1", 5.0), (0, "V4", 7.5)]
    assert {t["lead"] for t in s["traces"]} == set(STANDARD_LEADS) and len(cells) == 13
    _, s2 = draw_ecg(_pulse_signal(2), FS, ["I", "II"])
    assert s2["layout"] == "rows" and [t["lead"] for t in s2["traces"]] == ["I", "II"]
    with pytest.raises(ValueError, match="leads"):
        draw_ecg(_pulse_signal(3), FS, ["I", "II"])


def test_styles_red_grid_vs_grey_grid():
    paper, _ = draw_ecg(_pulse_signal(), FS, list(STANDARD_LEADS), dpi=60, style="paper")
    bw, _ = draw_ecg(_pulse_signal(), FS, list(STANDARD_LEADS), dpi=60, style="bw")
    red = lambda im: np.mean(im[..., 0].astype(int) - im[..., 1].astype(int) > 40)
    assert red(paper) > 0.05 and red(bw) == 0
    with pytest.raises(ValueError, match="style"):
        draw_ecg(_pulse_signal(), FS, list(STANDARD_LEADS), style="neon")


def test_augmentations_are_seeded_and_recorded():
    page, _ = draw_ecg(_pulse_signal(), FS, list(STANDARD_LEADS), dpi=60)
    clean = Image.fromarray(page)
    for kind, keys in (("scan", {"rotation_deg", "blur_px", "noise_std", "jpeg_quality", "tint"}),
                       ("photo", {"corner_shift_px", "rotation_deg", "shadow_depth", "creases", "blur_px", "jpeg_quality"})):
        a, pa = augment_image(clean, kind, image_seed(1, "r"))
        b, pb = augment_image(clean, kind, image_seed(1, "r"))
        c, _ = augment_image(clean, kind, image_seed(2, "r"))
        assert keys <= set(pa) and pa == pb and pa["kind"] == kind
        assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))
        assert a.size == clean.size and not np.array_equal(np.asarray(a), page)
        json.dumps(pa)  # stored in the sidecar
    photo, p = augment_image(clean, "photo", image_seed(3, "r"))
    arr = np.asarray(photo).astype(int)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    # The page no longer fills the frame: much of the border shows the table, not the paper.
    assert np.mean(np.abs(border - np.array(p["background_rgb"])).sum(axis=1) < 90) > 0.2
    none, pn = augment_image(clean, "none", image_seed(3, "r"))
    assert pn == {"kind": "none"} and np.array_equal(np.asarray(none), page)


@pytest.fixture
def signal_table(shared_data, tmp_path):
    """A record table with two real PTB-XL ECGs, one whose file is gone, and a heart sound."""
    recs = []
    for i, (name, split) in enumerate((("00001_hr", "train"), ("00002_hr", "test"))):
        fields, meta, _ = ecg_fields(shared_data / "ptbxl" / "records500" / "00000" / name)
        recs.append(Record(record_id=f"ptbxl/{name[:5]}", patient_id=f"ptbxl/p{i}", dataset="ptbxl", modality="ecg",
                           superclasses=["NORM"], split=split, metadata=meta, **fields))
    gone = Record(**{**recs[0].__dict__, "record_id": "ptbxl/gone", "media": [str(tmp_path / "gone")]})
    heart = Record(record_id="circor/1", patient_id="circor/1", dataset="circor", modality="heart", media=["x.wav"], media_format="wav")
    atomic_write_table(records_to_table(recs + [gone, heart]), tmp_path / "rec" / "records.parquet")
    return tmp_path / "rec", recs


def test_render_records_writes_images_sidecars_and_image_records(signal_table, tmp_path):
    src, recs = signal_table
    out = tmp_path / "img"
    summary = render_records(src, out, augment="photo", dpi=50, seed=0, progress=False)
    assert (summary["images"], summary["rejects"], summary["skipped_not_ecg_signal"]) == (2, 1, 1)
    images = {r.metadata["source_record_id"]: r for r in read_records(out)}
    assert set(images) == {r.record_id for r in recs}
    for r in recs:
        im = images[r.record_id]
        assert im.record_id == f"{r.record_id}@photo" and (im.patient_id, im.split, im.superclasses) == (r.patient_id, r.split, r.superclasses)
        assert im.modality == "ecg" and im.media_format == "jpeg" and im.sample_rate is None and im.leads == list(STANDARD_LEADS)
        path = Path(im.media[0])
        assert path.suffix == ".jpg" and Image.open(path).size == (round(PAGE_MM[0] * 50 / 25.4), round(PAGE_MM[1] * 50 / 25.4))
        side = json.loads(path.with_suffix(".json").read_text())
        assert side["augment"]["kind"] == "photo" and side["dpi"] == 50 and side["source_record_id"] == r.record_id
        assert side["layout"] == "3x4+II" and len(side["traces"]) == 13 and im.metadata["render"]["augment"] == side["augment"]
    rejects = read_rejects(out)
    assert len(rejects) == 1 and rejects[0].record_id == "ptbxl/gone" and "could not render" in rejects[0].reason
    with pytest.raises(ValueError, match="augmentation"):
        render_records(src, out, augment="fax")


def test_render_ecg_cli(signal_table, tmp_path):
    from clinlm.cli import app

    src, _ = signal_table
    result = CliRunner().invoke(app, ["render-ecg", str(src), "--out", str(tmp_path / "cli"), "--limit", "1", "--dpi", "40"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cli" / "images").rglob("*.png"))) == 1 and "1 images" in result.output
    bad = CliRunner().invoke(app, ["render-ecg", str(src), "--out", str(tmp_path / "cli2"), "--augment", "fax"])
    assert bad.exit_code == 2 and "augmentation" in bad.output
