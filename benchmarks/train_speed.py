"""Training speed of a recipe on this machine: feature preparation time and tokens/s.

    python benchmarks/train_speed.py --bench qs/bench                 # a built bench folder
    python benchmarks/train_speed.py                                  # simulates 40 patients first
    python benchmarks/train_speed.py --bench qs/bench --steps 100 --threads 2 model.language_model=tiny

Runs `clinlm train` (configs/stetholm_tiny.yaml by default) for --steps optimizer steps into a
temporary folder and prints one JSON line: rows, feature preparation seconds (loading, filtering
and log-mel of every training recording, fitted normalisation), model build seconds, training
seconds, steps/s, and tokens/s counting only real (non-padding) tokens, as the Trainer counts them.
Extra `key=value` arguments are recipe overrides.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def simulate_bench(root: Path, patients: int) -> Path:
    from clinlm.bench.build import build_bench
    from clinlm.ingest import run_ingest
    from clinlm.simulate import run_simulation

    for modality, adapter in (("heart", "circor"), ("lung", "icbhi")):
        run_simulation(root / "sim", patients=patients, seed=0, modality=modality, progress=False)
        run_ingest(adapter, root / "sim" / adapter, root / "rec" / adapter, seed=0)
    build_bench([root / "rec" / "circor", root / "rec" / "icbhi"], root / "bench", seed=0)
    return root / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, help="a bench folder with train.jsonl (default: simulate one)")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "stetholm_tiny.yaml")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--patients", type=int, default=40, help="patients to simulate when no --bench")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from clinlm.models.build import build_model
    from clinlm.train.data import read_rows
    from clinlm.train.run import load_config
    from clinlm.train.sft import run_sft

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bench = args.bench or simulate_bench(tmp / "sim", args.patients)
        cfg = load_config(args.config, [*args.overrides, f"train.max_steps={args.steps}", "data.val=null", f"train.output_dir={tmp / 'run'}"])
        rows = read_rows(bench / "train.jsonl", tasks=cfg["data"].get("tasks"))
        out = tmp / "run"
        out.mkdir()

        t0 = time.perf_counter()
        from transformers import set_seed

        set_seed(0)
        model = build_model(cfg["model"], cfg["features"], rows, prep_dir=out / "prep")  # fits features on every training recording
        t1 = time.perf_counter()
        trainer = run_sft(model, rows, None, cfg["train"], out)
        t2 = time.perf_counter()

    metrics = trainer.state.log_history[-1]
    tokens = trainer.state.num_input_tokens_seen
    n_audio = len({p for r in rows for p in r.get("audios") or []})
    print(json.dumps({
        "config": args.config.name,
        "overrides": args.overrides,
        "rows": len(rows),
        "recordings": n_audio,
        "threads": torch.get_num_threads(),
        "prepare_s": round(t1 - t0, 1),  # tokenizer training + features of every training recording + model build
        "train_s": round(t2 - t1, 1),
        "steps": trainer.state.global_step,
        "steps_per_s": round(trainer.state.global_step / metrics["train_runtime"], 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / metrics["train_runtime"], 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }))


if __name__ == "__main__":
    main()
