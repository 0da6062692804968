"""How fast `clinlm simulate` writes data: patients per second, per modality and in total.

Runs `run_simulation` into a temporary folder (removed afterwards) and prints, per dataset,
patients, recordings, megabytes, wall-clock seconds and patients/s, plus the CPU seconds of
this process and its workers (wall time on a shared machine depends on what else runs; CPU time
does not). numpy/scipy/PyAV are imported before the clock starts.

    python benchmarks/simulate_speed.py                   # 200 patients, all modalities, 2 workers
    python benchmarks/simulate_speed.py --patients 50 --workers 1 --modality heart
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    parser.add_argument("--modality", default="all", choices=["all", "heart", "lung", "cough"])
    args = parser.parse_args()

    import av  # noqa: F401  (import cost is not simulation cost)
    import scipy.signal  # noqa: F401

    from clinlm.simulate import MODALITIES, run_simulation

    chosen = list(MODALITIES) if args.modality == "all" else [args.modality]
    tmp = Path(tempfile.mkdtemp(prefix="clinlm-simulate-bench-"))
    try:
        total_wall, cpu0 = 0.0, cpu_seconds()
        print(f"{'dataset':<10}{'patients':>9}{'recordings':>12}{'MB':>8}{'seconds':>9}{'patients/s':>12}")
        for m in chosen:
            t0 = time.perf_counter()
            summary = run_simulation(tmp, patients=args.patients, seed=args.seed, modality=m,
                                     workers=args.workers, progress=False)
            wall = time.perf_counter() - t0
            total_wall += wall
            name = MODALITIES[m]
            recordings = int(summary[name].split(", ")[1].split()[0])
            print(f"{name:<10}{args.patients:>9}{recordings:>12}{folder_mb(tmp / name):>8.1f}"
                  f"{wall:>9.1f}{args.patients / wall:>12.1f}")
        cpu = cpu_seconds() - cpu0
        print(f"total: {args.patients} patients x {len(chosen)} modalities in {total_wall:.1f} s wall "
              f"({args.patients / total_wall:.1f} patients/s with all their modalities), {cpu:.1f} s CPU")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
