"""Seed spread of the quickstart's SFT stage: the same recipe trained with several seeds, scored on binary rows.

    python benchmarks/quickstart_speed.py --keep qs                       # a quickstart to reuse
    python benchmarks/sft_seeds.py --qs qs --out runs/seeds --seeds 0 1 2 3
    python benchmarks/sft_seeds.py --qs qs --out runs/seeds_td --seeds 0 1 2 3 --override model.time_token_dropout=0.5

Each seed trains `configs/stetholm_tiny.yaml` on the quickstart's bench with its warmed-up,
frozen tower and finding tokens (as `clinlm quickstart` does, minus the quickstart's own extra
settings unless given with --override), one thread per run, `--jobs` runs at a time, then
`clinlm eval` scores the held-out binary rows. Why: one run's binary accuracy moves by several
points with the seed and the thread count, so a recipe change is judged on the mean and spread.

Prints one JSON line per seed and a summary; writes OUT/seeds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clinlm.records import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def binary_rows(bench: Path) -> Path:
    """bench/test_binary.jsonl: the held-out binary rows (the quickstart's headline)."""
    out = bench / "test_binary.jsonl"
    if not out.exists():
        rows = [line for line in (bench / "test.jsonl").open() if json.loads(line)["task"] == "binary"]
        atomic_write_text("".join(rows), out)  # two seeds may ask at once: never a half-written file
    return out


def run_seed(qs: Path, out: Path, seed: int, overrides: list[str]) -> dict:
    run = out / f"seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = [sys.executable, "-m", "clinlm.cli", "train", str(ROOT / "configs" / "stetholm_tiny.yaml"),
             f"data.train={qs / 'bench' / 'train.jsonl'}", f"data.val={qs / 'bench' / 'val.jsonl'}",
             f"model.audio_tower={qs / 'encoder'}", "model.finding_tokens=true", "model.freeze.audio_tower=true",
             f"train.seed={seed}", *overrides, f"train.output_dir={run}"]
    with (out / f"seed{seed}.log").open("w") as log:
        subprocess.run(train, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        subprocess.run([sys.executable, "-m", "clinlm.cli", "eval", str(run / "model"), str(binary_rows(qs / "bench")),
                        "--out", str(run / "eval")], env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    row = next(m for m in metrics if m["system"] == "model" and m["task"] == "binary" and m["metric"] == "accuracy")
    result = {"seed": seed, "accuracy": row["value"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": row["n"]}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qs", type=Path, required=True, help="a quickstart output folder (bench/, encoder/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--override", action="append", default=[], help="key=value for every run (repeatable)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda s: run_seed(args.qs.resolve(), args.out.resolve(), s, args.override), args.seeds))
    acc = [r["accuracy"] for r in results]
    summary = {"overrides": args.override, "seeds": results, "mean": statistics.mean(acc),
               "sd": statistics.stdev(acc) if len(acc) > 1 else 0.0}
    atomic_write_text(json.dumps(summary, indent=2), args.out / "seeds.json")
    print(json.dumps({"mean": round(summary["mean"], 4), "sd": round(summary["sd"], 4), "overrides": args.override}))


if __name__ == "__main__":
    main()
