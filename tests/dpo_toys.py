"""Tiny preference data and an SFT checkpoint for the DPO / mDPO and robustness tests.

A plain module (tests/ is on sys.path): `write_toy_preference` turns the toy bench of
clinlm_toys (binary murmur rows) into preference rows in the bench's format, with relative
paths as `clinlm bench build` would write them next to the bench.
"""

from __future__ import annotations

import json
from pathlib import Path

from clinlm_toys import tiny_overrides, write_toy_bench

YES, NO = "Yes, a murmur is present.", "No, there is no murmur."


def write_toy_preference(bench: dict[str, Path]) -> dict[str, Path]:
    """bench/preference/{split}.jsonl: chosen = the right answer, rejected = the other one;
    rejected audio alternates between a degradation spec and another patient's opposite recording."""
    out = {}
    for split in ("train", "val", "test"):
        rows = [json.loads(line) for line in bench[split].read_text().splitlines()]
        rows = [r for r in rows if r["task"] == "binary"]
        by_label = {True: [r for r in rows if r["answer"]["murmur"] == "present"], False: [r for r in rows if r["answer"]["murmur"] != "present"]}
        prefs = []
        for i, r in enumerate(rows):
            murmur = r["answer"]["murmur"] == "present"
            audio = "../" + r["audios"][0]  # the preference folder is one level below the bench
            others = by_label[not murmur]
            if i % 2 and others:
                bad = ["../" + others[i % len(others)]["audios"][0]]
                kind = "mismatched"
            else:
                bad = [{"path": audio, "degrade": "noise", "snr_db": -5.0}]
                kind = "degraded"
            prefs.append({
                "prompt": r["messages"][:-1],
                "chosen": [{"role": "assistant", "content": YES if murmur else NO}],
                "rejected": [{"role": "assistant", "content": NO if murmur else YES}],
                "audios": [audio], "rejected_audios": bad, "rejection": {"text": "contradiction", "audio": kind},
                **{k: r[k] for k in ("task", "record_ids", "patient_id", "dataset", "split", "answer")},
            })
        folder = bench[split].parent / "preference"
        folder.mkdir(exist_ok=True)
        out[split] = folder / f"{split}.jsonl"
        out[split].write_text("".join(json.dumps(p) + "\n" for p in prefs))
    return out


def toy_sft_checkpoint(root: Path, steps: int = 30) -> tuple[dict[str, Path], dict[str, Path], Path]:
    """(bench, preference files, SFT checkpoint) on 12 toy patients: a tiny audio model trained
    `steps` steps, so it already prefers well-formed answers (seconds on one core)."""
    from clinlm.train.run import train_from_config

    bench = write_toy_bench(root / "bench", n_patients=12, comparison=False)
    prefs = write_toy_preference(bench)
    over = tiny_overrides(bench, root / "sft") + [f"train.max_steps={steps}", "train.lr=0.01"]
    return bench, prefs, Path(train_from_config("configs/stetholm_tiny.yaml", over))


def dpo_overrides(init: Path, data: Path, out: Path, steps: int = 6) -> list[str]:
    """Overrides that make a shipped DPO / mDPO recipe run in seconds on the toy preference rows."""
    return [f"init={init}", f"data={data}", f"train.output_dir={out}", f"train.max_steps={steps}",
            "train.batch_size=4", "train.logging_steps=1", "train.lr=0.002", "train.warmup=0"]
