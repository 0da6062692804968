"""Signal vs clean printout vs phone photo: the same held-out ECGs, the same questions, three media.

    python benchmarks/ecg_media.py --out runs/ecg_media --quickstart qs-ecg/    # reuse an ECG quickstart
    python benchmarks/ecg_media.py --out runs/ecg_media --patients 200          # or simulate anew

Stages (each skipped when its output exists, so a killed run resumes):
1. records: the quickstart's `rec/ecg` (or simulate + `ingest ptbxl --option sampling_rate=100`);
2. benches: signal rows (`bench build --tasks ecg`), clean-printout rows (`--media image`: each
   signal drawn as a 3x4 + rhythm-strip page), photo rows (`render-ecg --augment photo` then
   `bench build --media image` on those pictures): same answers and phrasings for each ECG;
3. models: the signal model and text-only baseline (the quickstart's, or trained here with
   configs/ecg_tiny.yaml), and one image model (the same recipe with `model.ecg_tower=none
   model.vision_tower=builtin`) trained on pictures: every training ECG as its clean printout and
   as its photo (`--image-train both`, the default), or half and half (`mixed`; ECGInstruct draws
   about half its images augmented);
4. `clinlm eval` of the signal model on signal test rows and of the image model on the clean and
   on the photo test rows (each beside the majority and text-only baselines);
5. `evaluate.ecg_compare.write_media_table` -> OUT/media_table.md, and the wall/CPU time of each stage.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import zlib
from pathlib import Path

from rich.console import Console

from clinlm.bench.build import build_bench
from clinlm.bench.ecg_facts import ECG_TASKS
from clinlm.evaluate.ecg_compare import write_media_table
from clinlm.evaluate.run import evaluate
from clinlm.ingest import run_ingest
from clinlm.quickstart import ECG_RECIPE, _recipe
from clinlm.signals.ecg_image import render_records
from clinlm.simulate import run_simulation
from clinlm.train.run import train_from_config


def _cpu() -> float:
    self, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self.ru_utime + self.ru_stime + kids.ru_utime + kids.ru_stime


def _mixed(clean: Path, photo: Path, out: Path, both: bool = False) -> None:
    """train/val JSONL with half the ECGs (by a hash of the source record id) as clean pages, half as
    photos; with `both`, every ECG twice: as its clean page and as its photo."""
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        keep = []
        for path, want in ((clean, 0), (photo, 1)):
            for line in (path / f"{split}.jsonl").read_text().splitlines():
                source = json.loads(line)["record_ids"][0].split("@")[0]
                if both or zlib.crc32(source.encode()) % 2 == want:
                    keep.append(line)
        (out / f"{split}.jsonl").write_text("\n".join(keep) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quickstart", type=Path, help="an ECG quickstart folder to reuse (rec/ecg, bench, model, text_only/model)")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--benches-only", action="store_true", help="stop after the pictures and benches (for benchmarks/ecg_image_tower.py)")
    ap.add_argument("--override", action="append", default=[], help="extra key=value for the image model's training")
    ap.add_argument("--image-train", choices=("both", "mixed"), default="both",
                    help="both: every training ECG as its clean page and as its photo (tower screen: photo AF AUROC "
                         "0.65 -> 0.90); mixed: half clean, half photos (the 2026-12-03 50-minute run)")
    args = ap.parse_args()
    console, out, qs = Console(), args.out, args.quickstart
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, dict[str, float]] = json.loads((out / "times.json").read_text()) if (out / "times.json").exists() else {}

    def stage(name: str, marker: Path, fn) -> None:
        if marker.exists():
            return
        console.rule(name)
        w, c = time.perf_counter(), _cpu()
        fn()
        times[name] = {"wall_s": round(time.perf_counter() - w, 1), "cpu_s": round(_cpu() - c, 1)}
        (out / "times.json").write_text(json.dumps(times, indent=1))

    rec = qs / "rec" / "ecg" if qs else out / "rec"
    if not qs:
        stage("simulate", out / "sim" / ".done",
              lambda: (run_simulation(out / "sim", patients=args.patients, seed=args.seed, modality="ecg"), (out / "sim" / ".done").touch()))
        stage("ingest", rec / "records.parquet", lambda: run_ingest("ptbxl", out / "sim" / "ptbxl", rec, seed=args.seed, sampling_rate=100))
    signal = qs / "bench" if qs else out / "bench" / "signal"
    clean, photo = out / "bench" / "clean", out / "bench" / "photo"
    mixed = out / "bench" / ("image_train_both" if args.image_train == "both" else "image_train")
    stage("bench signal", signal / "test.jsonl", lambda: build_bench([rec], signal, seed=args.seed, tasks=list(ECG_TASKS)))
    stage("bench clean image (draws the pages)", clean / "test.jsonl",
          lambda: build_bench([rec], clean, seed=args.seed, tasks=list(ECG_TASKS), media="image"))
    stage("render photos", out / "photos" / "records.parquet", lambda: render_records(rec, out / "photos", augment="photo", seed=args.seed))
    stage("bench photo", photo / "test.jsonl", lambda: build_bench([out / "photos"], photo, seed=args.seed, tasks=list(ECG_TASKS), media="image"))
    stage("mix clean/photo training rows", mixed / "train.jsonl", lambda: _mixed(clean, photo, mixed, both=args.image_train == "both"))
    if args.benches_only:
        console.print(json.dumps(times, indent=1))
        return

    recipe = _recipe(ECG_RECIPE)
    model, text_only = (qs / "model", qs / "text_only" / "model") if qs else (out / "signal" / "model", out / "text_only" / "model")
    common = [f"data.train={signal / 'train.jsonl'}", f"data.val={signal / 'val.jsonl'}", f"train.seed={args.seed}"]
    stage("train signal model", model / "provenance.json", lambda: train_from_config(recipe, common + [f"train.output_dir={model.parent}"], console=console))
    stage("train text-only", text_only / "provenance.json",
          lambda: train_from_config(recipe, common + [f"train.output_dir={text_only.parent}", "model.ecg_tower=none"], console=console))
    tag = "" if args.image_train == "mixed" else "_both"  # a resumed run never mixes models trained on other pictures
    image_model = out / f"image{tag}" / "model"
    stage("train image model", image_model / "provenance.json", lambda: train_from_config(recipe, [
        f"data.train={mixed / 'train.jsonl'}", f"data.val={mixed / 'val.jsonl'}", f"train.seed={args.seed}",
        f"train.output_dir={image_model.parent}", "model.ecg_tower=none", "model.vision_tower=builtin", *args.override], console=console))

    evals = {"signal": (model, signal), "clean image": (image_model, clean), "photo": (image_model, photo)}
    for name, (ckpt, bench) in evals.items():
        folder = out / f"eval{tag}" / name.replace(" ", "_")
        stage(f"eval {name}", folder / "metrics.json", lambda c=ckpt, b=bench, f=folder: evaluate(c, b / "test.jsonl", f, text_only=text_only, console=console))
    table = write_media_table({name: out / f"eval{tag}" / name.replace(" ", "_") for name in evals}, out)
    console.print(table.read_text())
    console.print(json.dumps(times, indent=1))


if __name__ == "__main__":
    main()
