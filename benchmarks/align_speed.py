"""Alignment time of the built-in encoder on simulated patients (the AcuLa goal: <= 10 min on this CPU).

    python benchmarks/align_speed.py                                  # simulate 200 patients (heart+lung+cough) first
    python benchmarks/align_speed.py --records rec/circor rec/icbhi rec/coughvid --reports reports/
    python benchmarks/align_speed.py --patients 50 train.alignment=infonce

Runs `clinlm align configs/align_default.yaml` (extra `key=value` arguments are recipe overrides)
into a temporary folder and prints one JSON line: records and unique reports aligned on, the seconds
of each stage (audio features, teacher embeddings, training), steps and steps/s, wall-clock and CPU
seconds of the whole alignment (simulation, ingest and reports are timed apart, not counted), torch
threads, and the load average before and after (the machine is shared: CPU seconds are the steadier
figure). The teacher embedding cache is not reused between runs of this script (fresh folders).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prepare(root: Path, patients: int, modality: str) -> tuple[list[Path], dict[str, float]]:
    from clinlm.ingest import run_ingest
    from clinlm.simulate import MODALITIES, run_simulation

    t = time.perf_counter()
    run_simulation(root / "sim", patients=patients, seed=0, modality=modality, progress=False)
    sim_s = time.perf_counter() - t
    t = time.perf_counter()
    folders = []
    for m in ("heart", "lung", "cough") if modality == "all" else modality.split("+"):
        name = MODALITIES[m]
        run_ingest(name, root / "sim" / name, root / "rec" / name, seed=0, progress=False)
        folders.append(root / "rec" / name)
    return folders, {"simulate_s": round(sim_s, 1), "ingest_s": round(time.perf_counter() - t, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=Path, nargs="*", help="ingest folders (default: simulate)")
    ap.add_argument("--reports", type=Path, help="a `clinlm reports` folder for --records (default: written here)")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--modality", default="all", help="simulated modalities: heart+lung, all, ...")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "align_default.yaml")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from clinlm.align.reports import build_reports
    from clinlm.align.run import align, load_align_config

    tmp = Path(tempfile.mkdtemp(prefix="align_speed_"))
    try:
        prep: dict[str, float] = {}
        folders = args.records or []
        if not folders:
            folders, prep = prepare(tmp, args.patients, args.modality)
        reports = args.reports
        if reports is None:
            t = time.perf_counter()
            build_reports(folders, tmp / "reports")
            prep["reports_s"] = round(time.perf_counter() - t, 1)
            reports = tmp / "reports"
        else:  # a copy, so this run's teacher cache starts empty like a first run's
            shutil.copytree(reports, tmp / "reports", ignore=shutil.ignore_patterns("teacher_*.npz"))
            reports = tmp / "reports"
        cfg = load_align_config(args.config, [f"data.records=[{','.join(map(str, folders))}]", f"data.reports={reports}",
                                              *args.overrides, f"train.output_dir={tmp / 'run'}"])
        load_before = os.getloadavg()
        s = align(cfg, progress=False)["summary"]
        out = {
            "records": s["records"], "unique_reports": s["unique_reports"], "encoder": s["encoder"], "teacher": s["teacher"],
            "alignment": s["alignment"], "ssl": s["ssl"], "steps": s["steps"],
            "features_s": s["features_s"], "teacher_s": s["teacher_s"], "train_s": s["train_s"],
            "steps_per_s": round(s["steps"] / s["train_s"], 2) if s["train_s"] else None,
            "align_wall_s": s["wall_s"], "align_cpu_s": s["cpu_s"], "align_wall_min": round(s["wall_s"] / 60, 2),
            "torch_threads": s["torch_threads"], "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()], **prep,
        }
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
