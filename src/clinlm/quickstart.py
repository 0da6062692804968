"""`clinlm quickstart`: the whole path on the embedded simulator, on CPU, in minutes.

    simulate -> ingest (circor, icbhi) -> bench -> train (audio) -> train (text-only) -> eval

Every stage writes into one folder (`--out`) and is skipped when its output is already complete,
so a killed quickstart resumes where it stopped. The text-only model is the same language model
and recipe with the audio removed: the gap between it and the audio model is how much the model
really hears.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clinlm.models.checkpoint import PROVENANCE_FILE

RECIPE = Path(__file__).resolve().parent / "configs" / "stetholm_tiny.yaml"


def _recipe() -> Path:
    """The quickstart recipe: packaged with clinlm, or the repository's configs/ in a checkout."""
    if RECIPE.exists():
        return RECIPE
    repo = Path(__file__).resolve().parents[2] / "configs" / "stetholm_tiny.yaml"
    if repo.exists():
        return repo
    raise FileNotFoundError("configs/stetholm_tiny.yaml is missing from this installation")


def _done(path: Path) -> bool:
    return path.exists()


def _resumable(run_dir: Path) -> bool:
    """A training run killed part-way left Trainer checkpoints: continue from them."""
    return any((run_dir / "checkpoints").glob("checkpoint-*"))


def run_quickstart(out: Path, seed: int = 0, patients: int = 200, console: Console | None = None) -> list[dict]:
    from clinlm.bench.build import build_bench
    from clinlm.evaluate.run import evaluate
    from clinlm.ingest import run_ingest
    from clinlm.simulate import run_simulation
    from clinlm.train.run import train_from_config

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, marker: Path, fn) -> None:
        if _done(marker):
            console.print(f"[dim]{name}: already done ({marker}), skipped[/]")
            return
        console.rule(f"[bold]{name}")
        t0 = time.perf_counter()
        fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        console.print(f"[green]{name}[/] done in {timings[name]} s")

    sim = out / "sim"
    stage("simulate", sim / ".done", lambda: (run_simulation(sim, patients=patients, seed=seed, modality="heart+lung"), (sim / ".done").touch()))
    stage("ingest heart", out / "rec" / "heart" / "records.parquet", lambda: run_ingest("circor", sim / "circor", out / "rec" / "heart", seed=seed))
    stage("ingest lung", out / "rec" / "lung" / "records.parquet", lambda: run_ingest("icbhi", sim / "icbhi", out / "rec" / "lung", seed=seed))
    bench = out / "bench"
    stage("bench", bench / "test.jsonl", lambda: build_bench([out / "rec" / "heart", out / "rec" / "lung"], bench, seed=seed, console=console))

    common = [f"data.train={bench / 'train.jsonl'}", f"data.val={bench / 'val.jsonl'}", f"train.seed={seed}"]
    # train_from_config writes <output_dir>/model: the audio model lands at OUT/model (what
    # `clinlm ask OUT/model` expects), the text-only baseline at OUT/text_only/model.
    audio_run, text_run = out, out / "text_only"
    model, text_only = audio_run / "model", text_run / "model"
    stage("train (audio model)", model / PROVENANCE_FILE,
          lambda: train_from_config(_recipe(), overrides=common + [f"train.output_dir={audio_run}"], resume=_resumable(audio_run), console=console))
    stage("train (text-only baseline)", text_only / PROVENANCE_FILE,
          lambda: train_from_config(_recipe(), overrides=common + [f"train.output_dir={text_run}", "model.audio_tower=none"], resume=_resumable(text_run), console=console))
    rows: list[dict] = []

    def _eval() -> None:
        rows.extend(evaluate(model, bench / "test.jsonl", out / "eval", text_only=text_only, console=console))

    stage("eval", out / "eval" / "metrics.json", _eval)
    if not rows:
        rows = json.loads((out / "eval" / "metrics.json").read_text())
    timings_file = out / "timings.json"
    old = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    timings_file.write_text(json.dumps({**old, **timings}, indent=2))
    print_results(rows, console)
    console.print(f"report: {out / 'eval' / 'report.md'}")
    return rows


def print_results(rows: list[dict], console: Console) -> None:
    """One line per task and headline metric: model, majority, text-only, each with its CI."""
    headline = {
        "binary": "accuracy", "detection": "event_f1", "reporting": "field_accuracy", "reasoning": "fact_consistency",
        "differential": "top1", "comparison": "accuracy", "location": "accuracy",
    }
    table = Table("task", "metric", "model", "majority", "text-only", "n", title="held-out simulated patients")
    index = {(r["system"], r["task"], r["metric"]): r for r in rows if not r.get("dataset")}

    def fmt(r: dict | None) -> str:
        if not r or r.get("value") is None:
            return "-"
        return f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"

    for task, metric in headline.items():
        model = index.get(("model", task, metric))
        if model is None:  # the evaluator may name the headline metric differently: show its first
            cands = [r for (s, t, m), r in index.items() if s == "model" and t == task]
            if not cands:
                continue
            model, metric = cands[0], cands[0]["metric"]
        table.add_row(task, metric, fmt(model), fmt(index.get(("majority", task, metric))), fmt(index.get(("text_only", task, metric))), str(model.get("n", "")))
    console.print(table)
