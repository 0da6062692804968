"""Screen built-in vision towers on ECG pictures: how well does a warmed-up tower see each finding?

    python benchmarks/ecg_media.py --out runs/ecg_media --patients 900 --benches-only   # the pictures
    python benchmarks/ecg_image_tower.py --media runs/ecg_media --out runs/ecg_image_tower \
        --variant grid:tower=small,size=288x384 \
        --variant columns:tower=columns,size=256x1024,min_filter=3

Each variant is a vision-tower preset (`model.vision_tower_size`) plus image settings
(`features.image`). It is trained exactly as `clinlm train` warms a tower up
(`train/media_warmup.fit_tower_on_labels`: the tower plus a linear head on the labels the
training rows state, half clean printouts and half photos), then the head scores every held-out
clean page and photo: per-finding AUROC and AF accuracy at 0.5, with patient-bootstrap CIs,
beside the majority answer. This is the cheap first look (minutes per variant) before the full
`benchmarks/ecg_media.py` run that trains the language model on top (tens of minutes): a tower
whose head cannot tell AF here will not let the LM tell it either.

Writes OUT/tower_screen.json and OUT/tower_screen.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from clinlm.train.data import read_rows
from clinlm.evaluate.bootstrap import bootstrap_ci
from clinlm.evaluate.stats import accuracy, auroc
from clinlm.models.presets import VISION_TOWER_PRESETS, named_preset
from clinlm.models.vision_tower import build_vision_tower
from clinlm.signals.image_features import ImageFeatureConfig, ImageFeatures
from clinlm.train.media_warmup import _pooled, fit_tower_on_labels, item_targets

AF = "af"  # the ECG label vocabulary's key for atrial fibrillation (bench/ecg_facts.py)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition(":")
    settings = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return name, settings


def patient_of(rows: list[dict]) -> dict[str, str]:
    return {p: str(r.get("patient_id") or p) for r in rows for p in r.get("images") or []}


@torch.no_grad()
def head_scores(tower, head, featurise, paths: list[str], batch_size: int = 32) -> np.ndarray:
    tower.eval()
    out = []
    for start in range(0, len(paths), batch_size):
        x = torch.stack([featurise(p) for p in paths[start : start + batch_size]])
        out.append(torch.sigmoid(head(_pooled(tower(x)))).numpy())
    return np.concatenate(out)  # (items, findings)


def run_variant(name: str, settings: dict[str, str], train_rows, test_sets, epochs: int, lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    spec = {"type": "conv2d", **named_preset(VISION_TOWER_PRESETS, settings.get("tower", "small"), "vision tower")}
    tower = build_vision_tower(spec)
    h, w = (int(v) for v in settings.get("size", "288x384").split("x"))
    features = ImageFeatures(ImageFeatureConfig(size=[h, w], min_filter=int(settings.get("min_filter", 0)),
                                                    flat_field=float(settings.get("flat_field", 0))))
    targets = item_targets(train_rows, "images")
    t0 = time.perf_counter()
    features.fit(sorted(targets))
    head, findings, loss = fit_tower_on_labels(tower, features, targets, epochs, lr, batch_size=32, seed=seed)
    result = {"variant": name, "settings": settings, "train_items": len(targets), "epochs": epochs,
              "train_wall_s": round(time.perf_counter() - t0, 1), "last_loss": round(loss, 4),
              "parameters": sum(p.numel() for p in tower.parameters()), "sets": {}}
    for set_name, rows in test_sets.items():
        labels, patients = item_targets(rows, "images"), patient_of(rows)
        paths = sorted(labels)
        scores = head_scores(tower, head, features, paths)
        per = {}
        for j, finding in enumerate(findings):
            have = [i for i, p in enumerate(paths) if finding in labels[p]]
            y = np.array(["yes" if labels[paths[i]][finding] else "no" for i in have], dtype=object)
            s, pats = scores[have, j], [patients[paths[i]] for i in have]
            ci = bootstrap_ci(auroc, y, y, s, patients=pats)
            per[finding] = {"auroc": ci.value, "ci": [ci.low, ci.high], "positives": int((y == "yes").sum()), "n": len(y)}
            if finding == AF:
                pred = np.where(s >= 0.5, "yes", "no").astype(object)
                majority = np.full(len(y), "yes" if (y == "yes").mean() > 0.5 else "no", dtype=object)
                acc, base = bootstrap_ci(accuracy, y, pred, patients=pats), bootstrap_ci(accuracy, y, majority, patients=pats)
                per[finding].update(accuracy=acc.value, accuracy_ci=[acc.low, acc.high], majority_accuracy=base.value)
        result["sets"][set_name] = per
    return result


def write_markdown(results: list[dict], path: Path) -> None:
    lines = ["| variant | set | AF accuracy [95% CI] | majority | AF AUROC [95% CI] | mean AUROC (all findings) | train s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for set_name, per in r["sets"].items():
            af = per.get(AF, {})
            mean = np.nanmean([v["auroc"] for v in per.values()])
            lines.append(f"| {r['variant']} | {set_name} | {af.get('accuracy', float('nan')):.3f} "
                         f"[{af.get('accuracy_ci', [np.nan] * 2)[0]:.3f}, {af.get('accuracy_ci', [np.nan] * 2)[1]:.3f}] | "
                         f"{af.get('majority_accuracy', float('nan')):.3f} | {af.get('auroc', float('nan')):.3f} "
                         f"[{af.get('ci', [np.nan] * 2)[0]:.3f}, {af.get('ci', [np.nan] * 2)[1]:.3f}] | {mean:.3f} | {r['train_wall_s']} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, required=True, help="an ecg_media.py output folder (bench/image_train, bench/clean, bench/photo)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", action="append", required=True, help="name:tower=PRESET,size=HxW,min_filter=K,flat_field=R")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-on", choices=("mixed", "both"), default="mixed",
                    help="mixed: half the training ECGs as clean pages, half as photos (ecg_media.py's image_train); "
                         "both: every training ECG twice, as its clean page and as its photo")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.train_on == "both":
        train_rows = [r for s in ("clean", "photo") for r in read_rows(args.media / "bench" / s / "train.jsonl")]
    else:
        train_rows = read_rows(args.media / "bench" / "image_train" / "train.jsonl")
    test_sets = {s: read_rows(args.media / "bench" / s / "test.jsonl") for s in ("clean", "photo")}
    done = args.out / "tower_screen.json"
    results = json.loads(done.read_text()) if done.exists() else []
    for text in args.variant:
        name, settings = parse_variant(text)
        if any(r["variant"] == name for r in results):
            continue  # resumable: a finished variant is kept
        print(f"variant {name}: {settings}", flush=True)
        results.append(run_variant(name, settings, train_rows, test_sets, args.epochs, args.lr, args.seed))
        done.write_text(json.dumps(results, indent=1))
        write_markdown(results, args.out / "tower_screen.md")
        print((args.out / "tower_screen.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
