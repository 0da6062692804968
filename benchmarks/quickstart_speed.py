"""The README's first command, timed: `clinlm quickstart` end to end on this machine.

    python benchmarks/quickstart_speed.py                 # default quickstart into a fresh temp folder
    python benchmarks/quickstart_speed.py --patients 60   # a smaller run
    python benchmarks/quickstart_speed.py --keep qs_bench # keep the output folder

Runs the quickstart in a subprocess (as a user would, after installation) and prints one JSON line:
wall seconds in all and per stage (from OUT/timings.json), CPU seconds of the run (user + system of
the child), the load average while it ran (other users make wall time pessimistic on a shared
machine), and the headline figures from OUT/eval/metrics.json: binary accuracy of the model, the
majority answer and the text-only baseline, each with its 95% CI. Record the line, with the
machine and date, in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def headline(metrics: list[dict], task: str = "binary", metric: str = "accuracy") -> dict:
    out = {}
    for r in metrics:
        if r["task"] == task and r["metric"] == metric and not r.get("dataset") and r.get("condition", "clean") == "clean":
            out[r["system"]] = [round(r["value"], 3), round(r["ci_low"], 3), round(r["ci_high"], 3), r["n"]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=None, help="simulated patients (default: the quickstart's)")
    ap.add_argument("--keep", type=Path, default=None, help="write here and keep it (default: a temp folder)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    out = args.keep or Path(tempfile.mkdtemp(prefix="clinlm_qs_"))
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty: the quickstart would resume instead of running from scratch")
    cmd = [sys.executable, "-m", "clinlm.cli", "quickstart", "--out", str(out), "--seed", str(args.seed)]
    if args.patients:
        cmd += ["--patients", str(args.patients)]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    result = {
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "stages_s": json.loads((out / "timings.json").read_text()),
        "binary_accuracy": headline(metrics),
        "load_avg_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))
    if args.keep is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
