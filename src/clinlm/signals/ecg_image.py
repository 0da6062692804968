"""ECG signals drawn as a clinical printout, and augmentations that imitate scans and phone photos.

Why: many clinics only have paper or photographed ECGs (PULSE / ECGInstruct), so a model should
be trained and evaluated on pictures too, and the same ECG as signal vs clean image vs photo
shows what reading a picture costs.

The printout follows the conventions of a standard 12-lead ECG (matplotlib draws everything;
ecg-plot has no rhythm strip or calibration pulse and its PNG export needs cairo):
- paper speed 25 mm/s, gain 10 mm/mV, on a US-letter landscape page (279.4 x 215.9 mm);
- the grid: 1 mm minor and 5 mm major lines (red on "paper", grey on "bw");
- layout "3x4+II" for a record with the 12 standard leads: three rows of four 2.5 s columns
  (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6, each column the next 2.5 s, as an electrocardiograph
  prints them) and a 10 s lead II rhythm strip below; any other record uses layout "rows", one
  10 s row per lead (up to 12);
- a 1 mV x 0.2 s calibration pulse at the start of every row, lead labels, the speed and gain
  printed at the bottom. No patient data and no diagnosis are printed (the image must not leak
  the labels).

`render_ecg` writes one image and returns its settings: page and pixel geometry (`px_per_mm`),
the time window, and for every drawn lead where it is (x range in mm, baseline in mm, start
time), so a digitiser could be scored against it. `augment_image` applies "scan" (small
rotation, paper tint, blur, noise, dust, JPEG) or "photo" (perspective, rotation, uneven light
and shadow, creases, defocus, colour cast, sensor noise, JPEG) with every drawn parameter
returned. `render_records` does this for a record table and writes the images, a JSON sidecar
per image, and a records.parquet of image Records (see its docstring).
"""

from __future__ import annotations

import json
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

PAPER_SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
PAGE_MM = (279.4, 215.9)  # US letter, landscape
LAYOUT_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
STYLES = {
    # background, minor grid, major grid, trace, text
    "paper": {"background": "#fffafa", "minor": "#f6c3c3", "major": "#e57373", "trace": "#000000", "text": "#000000"},
    "bw": {"background": "#ffffff", "minor": "#dddddd", "major": "#aaaaaa", "trace": "#000000", "text": "#000000"},
}
AUGMENTS = ("none", "scan", "photo")
_COLUMN_S = 2.5
_LEFT_MM, _PULSE_MM = 8.0, 7.0  # page margin, then the calibration pulse (1 mm foot + 5 mm + 1 mm foot)


def _layout(leads: list[str], seconds: float) -> tuple[str, list[dict[str, Any]]]:
    """Where each trace goes: [{lead, row, t0_s, t1_s, x0_mm}], rows counted from the top."""
    x0 = _LEFT_MM + _PULSE_MM
    if all(lead in leads for row in LAYOUT_3X4 for lead in row) and seconds >= 4 * _COLUMN_S - 1e-6:
        cells = [
            {"lead": lead, "row": r, "t0_s": c * _COLUMN_S, "t1_s": (c + 1) * _COLUMN_S, "x0_mm": x0 + c * _COLUMN_S * PAPER_SPEED_MM_S}
            for r, row in enumerate(LAYOUT_3X4)
            for c, lead in enumerate(row)
        ]
        cells.append({"lead": RHYTHM_LEAD, "row": 3, "t0_s": 0.0, "t1_s": 4 * _COLUMN_S, "x0_mm": x0})
        return "3x4+II", cells
    span = min(seconds, 10.0)
    return "rows", [{"lead": lead, "row": r, "t0_s": 0.0, "t1_s": span, "x0_mm": x0} for r, lead in enumerate(leads[:12])]


def _figure(dpi: int, facecolor: str):
    """A page-sized figure whose single axes is in page millimetres (x right, y up)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = PAGE_MM
    fig = Figure(figsize=(width / 25.4, height / 25.4), dpi=dpi, facecolor=facecolor)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    ax.patch.set_alpha(0.0)
    return fig, ax


def _rgba(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()  # (h, w, 4) uint8


@lru_cache(maxsize=8)
def grid_background(style: str, dpi: int) -> np.ndarray:
    """The empty ECG paper (h, w, 3) uint8 for a style and resolution; drawn once, then reused."""
    from matplotlib.collections import LineCollection

    colours = STYLES[style]
    width, height = PAGE_MM
    fig, ax = _figure(dpi, colours["background"])
    # 1 mm minor lines, every fifth a major line (widths in points; 1 pt = 0.353 mm).
    xs, ys = np.arange(0, width + 1e-6, 1.0), np.arange(0, height + 1e-6, 1.0)
    for major, lw, colour in ((False, 0.35, colours["minor"]), (True, 0.8, colours["major"])):
        segs = [((x, 0), (x, height)) for i, x in enumerate(xs) if (i % 5 == 0) == major]
        segs += [((0, y), (width, y)) for i, y in enumerate(ys) if (i % 5 == 0) == major]
        ax.add_collection(LineCollection(segs, colors=colour, linewidths=lw))
    out = _rgba(fig)[..., :3]
    out.setflags(write=False)
    return out


def draw_ecg(
    signal: np.ndarray,
    fs: float,
    leads: list[str],
    dpi: int = 100,
    style: str = "paper",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw `signal` (leads, samples) in mV at `fs` Hz as a printout: (RGB image (h, w, 3) uint8,
    settings). Only the first 10 s are drawn; each trace is centred on its row by its median."""
    from matplotlib.collections import LineCollection

    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 2 or signal.shape[0] != len(leads):
        raise ValueError(f"signal must be (leads, samples) with {len(leads)} leads, got {signal.shape}")
    colours = STYLES[style]
    _, height = PAGE_MM
    layout, cells = _layout(list(leads), signal.shape[1] / fs)
    n_rows = max(c["row"] for c in cells) + 1
    top, bottom = 20.0, 18.0  # mm kept free for the page edge and the printed speed/gain
    pitch = min(40.0, (height - top - bottom) / n_rows)
    for c in cells:
        c["baseline_mm"] = round(height - top - pitch * (c["row"] + 0.5), 3)
        c["x1_mm"] = round(c["x0_mm"] + (c["t1_s"] - c["t0_s"]) * PAPER_SPEED_MM_S, 3)

    fig, ax = _figure(dpi, "none")  # transparent: composited onto the cached grid below
    traces, marks = [], []
    for row in range(n_rows):  # calibration pulse: 1 mV high, 0.2 s wide
        base = next(c["baseline_mm"] for c in cells if c["row"] == row)
        p = _LEFT_MM
        traces.append(np.array([(p, base), (p + 1, base), (p + 1, base + GAIN_MM_MV), (p + 6, base + GAIN_MM_MV), (p + 6, base), (p + 7, base)]))
    for c in cells:
        i0, i1 = round(c["t0_s"] * fs), min(signal.shape[1], round(c["t1_s"] * fs))
        y = signal[list(leads).index(c["lead"]), i0:i1]
        y = np.nan_to_num(y - (np.nanmedian(y) if np.isfinite(y).any() else 0.0))
        x = c["x0_mm"] + np.arange(y.size) / fs * PAPER_SPEED_MM_S
        traces.append(np.column_stack([x, c["baseline_mm"] + y * GAIN_MM_MV]))
        ax.text(c["x0_mm"] + 1.5, c["baseline_mm"] + 0.55 * pitch - 4.5, c["lead"], fontsize=9, color=colours["text"])
        if c["t0_s"] > 0:  # the short bar an electrocardiograph prints where the lead changes
            marks.append(((c["x0_mm"], c["baseline_mm"] - 3), (c["x0_mm"], c["baseline_mm"] + 3)))
    ax.add_collection(LineCollection(traces, colors=colours["trace"], linewidths=0.8, capstyle="round", joinstyle="round"))
    if marks:
        ax.add_collection(LineCollection(marks, colors=colours["trace"], linewidths=1.2))
    ax.text(_LEFT_MM, 8, f"{PAPER_SPEED_MM_S:g} mm/s   {GAIN_MM_MV:g} mm/mV   {fs:g} Hz", fontsize=9, color=colours["text"])
    ink = _rgba(fig).astype(np.float32)
    alpha = ink[..., 3:4] / 255.0
    image = (grid_background(style, dpi) * (1 - alpha) + ink[..., :3] * alpha).round().astype(np.uint8)
    px_per_mm = dpi / 25.4
    settings = {
        "layout": layout,
        "style": style,
        "dpi": dpi,
        "paper_speed_mm_s": PAPER_SPEED_MM_S,
        "gain_mm_mv": GAIN_MM_MV,
        "page_mm": list(PAGE_MM),
        "px_per_mm": round(px_per_mm, 6),
        "size_px": [int(image.shape[1]), int(image.shape[0])],
        "fs": float(fs),
        "window_s": [0.0, round(max(c["t1_s"] for c in cells), 6)],
        "traces": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items()} for c in cells],
    }
    return image, settings


def render_ecg(signal: np.ndarray, fs: float, leads: list[str], path: str | Path, dpi: int = 100, style: str = "paper") -> dict[str, Any]:
    """Draw a printout (see `draw_ecg`) and write it to `path` as PNG; return the settings."""
    from PIL import Image

    image, settings = draw_ecg(signal, fs, leads, dpi=dpi, style=style)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG", compress_level=1)
    return settings


# --- augmentations -------------------------------------------------------------------------


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """The 8 coefficients PIL's PERSPECTIVE transform wants to map output corners `dst` to input `src`."""
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(a, dtype=float), src.reshape(8)).tolist()


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, scale: float) -> np.ndarray:
    """A smooth random field in [0, 1] of `shape` (h, w): low-res noise, blurred and upsampled."""
    from scipy.ndimage import gaussian_filter, zoom

    small = gaussian_filter(rng.random((12, 16)), sigma=scale)
    small = (small - small.min()) / max(np.ptp(small), 1e-9)
    return np.clip(zoom(small, (shape[0] / 12, shape[1] / 16), order=1)[: shape[0], : shape[1]], 0, 1)


def augment_image(image: Any, kind: str, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """Return (augmented PIL RGB image, parameters). `kind`: "none", "scan" or "photo".

    The JPEG step is not applied here: `params["jpeg_quality"]` is the quality to save with.
    """
    from PIL import Image, ImageDraw, ImageFilter

    if kind not in AUGMENTS:
        raise ValueError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTS)}")
    img = image.convert("RGB")
    params: dict[str, Any] = {"kind": kind}
    if kind == "none":
        return img, params
    w, h = img.size
    r = lambda lo, hi: float(rng.uniform(lo, hi))

    if kind == "scan":
        angle = r(-2.0, 2.0)
        img = img.rotate(angle, resample=Image.BILINEAR, fillcolor=(255, 255, 255))
        tint = np.array([1.0, r(0.95, 1.0), r(0.85, 0.97)], dtype=np.float32) * r(0.92, 1.0)  # yellowed, greyer paper
        arr = np.asarray(img, dtype=np.float32) * tint
        specks = int(rng.integers(5, 40))
        ys, xs = rng.integers(0, h, specks), rng.integers(0, w, specks)
        for y, x in zip(ys, xs):  # dust
            arr[max(0, y - 1) : y + 1, max(0, x - 1) : x + 1] *= r(0.2, 0.6)
        blur = r(0.3, 0.9)
        noise = r(2.0, 6.0)
        arr += rng.standard_normal(arr.shape, dtype=np.float32) * noise
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
        params.update(rotation_deg=angle, tint=[round(float(v), 4) for v in tint], dust_specks=specks, blur_px=blur, noise_std=noise, jpeg_quality=int(rng.integers(60, 91)))
    else:  # photo
        sw, sh = max(8, w // 4), max(8, h // 4)  # smooth fields are made at quarter resolution
        # Creases on the paper (before the camera's view of it): fold lines darker on one side
        # and lighter on the other.
        creases = int(rng.integers(0, 3))
        if creases:
            crease_img = Image.new("L", (sw, sh), 128)
            draw = ImageDraw.Draw(crease_img)
            for _ in range(creases):
                if rng.random() < 0.5:
                    x = r(0.2, 0.8) * sw
                    line = [(x + r(-0.03, 0.03) * sw, 0), (x + r(-0.03, 0.03) * sw, sh)]
                else:
                    y = r(0.2, 0.8) * sh
                    line = [(0, y + r(-0.03, 0.03) * sh), (sw, y + r(-0.03, 0.03) * sh)]
                draw.line(line, fill=75, width=1)
                draw.line([(p[0] + 1, p[1] + 1) for p in line], fill=180, width=1)
            crease = crease_img.filter(ImageFilter.GaussianBlur(0.7)).resize((w, h), Image.BILINEAR)
            page = np.asarray(img, dtype=np.float32) * (np.asarray(crease, dtype=np.float32)[..., None] / 128.0)
            img = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
        # Geometry in one resampling: each corner moves inwards by up to 7 % of the page, then the
        # whole quadrilateral turns by a small angle about the centre; the table shows around it.
        jitter = np.array([[r(0, 0.07) * w, r(0, 0.07) * h] for _ in range(4)])
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=float)
        dst = corners + jitter * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
        angle = r(-6.0, 6.0)
        a = np.deg2rad(-angle)  # image y points down: a positive angle turns counter-clockwise on screen
        centre = np.array([w / 2, h / 2])
        dst = (dst - centre) @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + centre
        tone = r(40, 170)  # a table: grey to brown
        table = (int(tone), int(tone * r(0.8, 1.0)), int(tone * r(0.6, 0.95)))
        img = img.transform((w, h), Image.PERSPECTIVE, _perspective_coeffs(corners, dst), resample=Image.BILINEAR, fillcolor=table)
        # Light over the whole photo: a gradient across it and a soft shadow blob (a hand or a phone).
        theta, light_lo, shadow_depth = r(0, 2 * np.pi), r(0.55, 0.85), r(0.0, 0.45)
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        grad = np.clip((xx / sw - 0.5) * np.cos(theta) + (yy / sh - 0.5) * np.sin(theta) + 0.5, 0, 1)
        field = (light_lo + (1 - light_lo) * grad) * (1 - shadow_depth * _smooth_field((sh, sw), rng, scale=2.5) ** 3)
        field = np.asarray(Image.fromarray(field.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
        cast = np.array([r(0.9, 1.1), r(0.93, 1.05), r(0.85, 1.1)], dtype=np.float32)
        noise = r(3.0, 10.0)
        arr = np.asarray(img, dtype=np.float32) * field[..., None] * cast
        arr += rng.standard_normal(arr.shape, dtype=np.float32) * noise
        blur = r(0.5, 1.8)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
        params.update(
            corner_shift_px=jitter.round(1).tolist(), background_rgb=list(table), rotation_deg=angle,
            light_direction_rad=theta, light_min=light_lo, shadow_depth=shadow_depth, creases=creases,
            colour_cast=[round(float(v), 4) for v in cast], noise_std=noise, blur_px=blur, jpeg_quality=int(rng.integers(40, 81)),
        )
    return img, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in params.items()}


def image_seed(seed: int, record_id: str) -> np.random.Generator:
    """One random stream per (seed, record): an image does not depend on which others are drawn."""
    return np.random.default_rng([seed, zlib.crc32(record_id.encode("utf-8"))])


def render_record_image(signal, fs, leads, path: Path, dpi: int, style: str, augment: str, rng) -> tuple[Path, dict[str, Any]]:
    """Render one ECG to `path` (suffix chosen here: .png clean, .jpg augmented); return (path, settings)."""
    from PIL import Image

    page, settings = draw_ecg(signal, fs, leads, dpi=dpi, style=style)
    img, params = augment_image(Image.fromarray(page), augment, rng)
    settings["augment"] = params
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if augment == "none":
        path = path.with_suffix(".png")
        img.save(path, format="PNG", compress_level=1)  # fast; the page compresses well anyway
    else:
        path = path.with_suffix(".jpg")
        img.save(path, format="JPEG", quality=params["jpeg_quality"])
    settings["size_px"] = list(img.size)
    return path, settings


def render_records(
    records: Path,
    out: Path,
    style: str = "paper",
    augment: str = "none",
    dpi: int = 100,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Render every ECG signal record of an ingest folder to an image, for image-based tasks.

    Writes to `out`:
    - `images/<dataset>/<record>.png|.jpg` and beside each a `.json` with the settings (layout,
      dpi, style, paper speed, gain, pixel geometry, trace positions, augmentation parameters,
      seed, source record and media);
    - `records.parquet`: one Record per image, a copy of the signal Record with `media` the image,
      `media_format` "png"/"jpeg", `record_id` "<source id>@<augment>", the same patient, labels
      and split, signal fields (rate, frames) cleared, `metadata["render"]` the settings and
      `metadata["source_record_id"]`/`["source_media"]`; `rejects.parquet` (records that could
      not be drawn, with the reason) and `summary.json` (counts, images/s).
    Records that are not ECG signals (other modalities, images) are skipped and counted.
    """
    import dataclasses
    import sys
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from clinlm import __version__
    from clinlm.records import (
        RECORDS_FILE,
        REJECTS_FILE,
        SUMMARY_FILE,
        Reject,
        atomic_write_table,
        atomic_write_text,
        iter_records,
        records_to_table,
        rejects_to_table,
    )
    from clinlm.signals.ecg import EcgError, load_ecg

    if augment not in AUGMENTS:
        raise ValueError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTS)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    out = Path(out)
    todo, skipped = [], 0
    for rec in iter_records(records):
        if rec.modality == "ecg" and rec.media and rec.media_format in ("wfdb", "mat"):
            todo.append(rec)
        else:
            skipped += 1
    if limit is not None:
        todo = todo[:limit]
    made, rejects = [], []
    t0 = time.perf_counter()
    with Progress(
        TextColumn(f"[bold]render-ecg {augment}[/]"), BarColumn(bar_width=None), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not progress, transient=True,
    ) as bar:
        task = bar.add_task("render", total=len(todo))
        for rec in todo:
            try:
                x, fs, leads = load_ecg(rec, duration_s=10.0)
                name = rec.record_id.split("/", 1)[-1] if "/" in rec.record_id else rec.record_id
                target = out / "images" / rec.dataset / name
                path, settings = render_record_image(x, fs, leads, target, dpi, style, augment, image_seed(seed, rec.record_id))
            except (EcgError, ValueError, OSError) as exc:
                rejects.append(Reject(rec.dataset, rec.media[0] if rec.media else "", f"could not render: {exc}", rec.record_id))
                bar.advance(task)
                continue
            settings.update(seed=seed, source_record_id=rec.record_id, source_media=rec.media, clinlm_version=__version__)
            atomic_write_text(json.dumps(settings, indent=1), path.with_suffix(".json"))
            image = dataclasses.replace(
                rec,
                record_id=f"{rec.record_id}@{augment}",
                media=[str(path.resolve())],
                media_format="png" if path.suffix == ".png" else "jpeg",
                sample_rate=None,
                num_frames=None,
                num_channels=None,
                duration_s=None,
                leads=[lead for lead in leads if lead in {c["lead"] for c in settings["traces"]}],
                metadata={**rec.metadata, "render": {k: v for k, v in settings.items() if k not in ("traces", "source_media")}, "source_record_id": rec.record_id, "source_media": rec.media, "sidecar": str(path.with_suffix(".json").resolve())},
            )
            made.append(image)
            bar.advance(task)
    seconds = time.perf_counter() - t0
    summary = {
        "source": str(records),
        "images": len(made),
        "rejects": len(rejects),
        "skipped_not_ecg_signal": skipped,
        "augment": augment,
        "style": style,
        "dpi": dpi,
        "seed": seed,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(made) / seconds, 2) if seconds > 0 and made else None,
        "command": " ".join(sys.argv),
    }
    atomic_write_table(records_to_table(made), out / RECORDS_FILE)
    atomic_write_table(rejects_to_table(rejects), out / REJECTS_FILE)
    atomic_write_text(json.dumps(summary, indent=2), out / SUMMARY_FILE)
    return summary
