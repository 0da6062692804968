"""How many ECG printout images per second `clinlm render-ecg` makes, per augmentation.

    python benchmarks/render_speed.py              # 20 simulated 12-lead ECGs, dpi 100
    python benchmarks/render_speed.py --n 50 --dpi 200

Signals come from the simulator in memory (no files read), so the figure is drawing +
augmentation + encoding + writing the image and its sidecar, the per-image work of
`render_records`. Wall time and CPU time are both reported: on a shared machine the wall-clock
rate depends on what else runs, the CPU rate much less. The first image (grid cache, imports)
is drawn before timing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from clinlm.signals.ecg import STANDARD_LEADS
from clinlm.signals.ecg_image import AUGMENTS, image_seed, render_record_image
from clinlm.simulate.ecg import CLASSES, simulate_one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="images per augmentation")
    ap.add_argument("--dpi", type=int, default=100)
    ap.add_argument("--style", default="paper")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    signals = [simulate_one(CLASSES[i % len(CLASSES)], rng)[0] for i in range(args.n)]
    leads = list(STANDARD_LEADS)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        render_record_image(signals[0], 500, leads, out / "warm", args.dpi, args.style, "photo", image_seed(0, "warm"))
        for augment in AUGMENTS:
            wall, cpu = time.perf_counter(), time.process_time()
            for i, x in enumerate(signals):
                path, settings = render_record_image(x, 500, leads, out / f"{augment}_{i}", args.dpi, args.style, augment, image_seed(0, str(i)))
                path.with_suffix(".json").write_text(json.dumps(settings))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            size = sum(p.stat().st_size for p in out.glob(f"{augment}_*") if p.suffix != ".json") / args.n
            results[augment] = {
                "images_per_s_wall": round(args.n / wall, 2),
                "images_per_s_cpu": round(args.n / cpu, 2),
                "kb_per_image": round(size / 1024, 1),
            }
            print(f"{augment:6s} {results[augment]['images_per_s_wall']:6.2f} images/s wall  "
                  f"{results[augment]['images_per_s_cpu']:6.2f} images/s CPU  {results[augment]['kb_per_image']:7.1f} kB/image")
    print(json.dumps({"n": args.n, "dpi": args.dpi, "style": args.style, "results": results}))


if __name__ == "__main__":
    main()
