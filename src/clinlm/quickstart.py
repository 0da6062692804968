"""`clinlm quickstart`: the whole path on the embedded simulator, on CPU, in minutes.

    simulate -> ingest (circor, icbhi) -> bench -> audio tower warm-up -> train (audio)
             -> train (text-only) -> eval
    --modality ecg: simulate ECGs -> ingest ptbxl (100 Hz) -> bench (ECGBench's four tasks, signals)
                    -> train (configs/ecg_tiny.yaml) -> train (text-only) -> eval (+ per-class AUROC)

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

from clinlm.evaluate.report import format_ci
from clinlm.models.checkpoint import PROVENANCE_FILE

RECIPE = Path(__file__).resolve().parent / "configs" / "stetholm_tiny.yaml"
ECG_RECIPE = "ecg_tiny.yaml"
MODALITIES = ("heart+lung", "ecg")


def _recipe(name: str = RECIPE.name) -> Path:
    """A quickstart recipe: packaged with clinlm, or the repository's configs/ in a checkout."""
    packaged = RECIPE.with_name(name)
    if packaged.exists():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "configs" / name
    if repo.exists():
        return repo
    raise FileNotFoundError(f"configs/{name} is missing from this installation")


def _done(path: Path) -> bool:
    return path.exists()


def _resumable(run_dir: Path) -> bool:
    """A training run killed part-way left Trainer checkpoints: continue from them."""
    return any((run_dir / "checkpoints").glob("checkpoint-*"))


def _stager(console: Console, timings: dict[str, float]):
    def stage(name: str, marker: Path, fn) -> None:
        if _done(marker):
            console.print(f"[dim]{name}: already done ({marker}), skipped[/]")
            return
        console.rule(f"[bold]{name}")
        t0 = time.perf_counter()
        fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        console.print(f"[green]{name}[/] done in {timings[name]} s")

    return stage


def _save_timings(out: Path, timings: dict[str, float]) -> None:
    timings_file = out / "timings.json"
    old = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    timings_file.write_text(json.dumps({**old, **timings}, indent=2))


def _evaluate_and_report(stage, evaluate, model: Path, text_only: Path, bench: Path, out: Path, timings: dict[str, float],
                         printer, console: Console) -> list[dict]:
    """The last stage of both quickstarts: eval (or its saved metrics on a resumed run), the table, the report path."""
    rows: list[dict] = []
    stage("eval", out / "eval" / "metrics.json",
          lambda: rows.extend(evaluate(model, bench / "test.jsonl", out / "eval", text_only=text_only, console=console)))
    if not rows:
        rows = json.loads((out / "eval" / "metrics.json").read_text())
    _save_timings(out, timings)
    printer(rows, console)
    console.print(f"report: {out / 'eval' / 'report.md'}")
    return rows


def run_quickstart(
    out: Path,
    seed: int = 0,
    patients: int = 200,
    console: Console | None = None,
    modality: str = "heart+lung",
    overrides: list[str] | None = None,
    warmup_steps: int = 1000,
) -> list[dict]:
    """The whole path into `out`; returns the metric rows. `overrides`: extra `key=value` for both
    training runs, `warmup_steps`: audio tower warm-up steps (the tests use both for tiny settings)."""
    if modality not in MODALITIES:
        raise ValueError(f"quickstart --modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    if modality == "ecg":
        return run_ecg_quickstart(out, seed=seed, patients=patients, console=console, overrides=overrides)
    from clinlm.bench.build import build_bench
    from clinlm.evaluate.run import evaluate
    from clinlm.ingest import run_ingest
    from clinlm.simulate import run_simulation
    from clinlm.models.encoder_folder import ENCODER_FILE
    from clinlm.train.run import load_config, train_from_config
    from clinlm.train.tower_warmup import warm_up_tower

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    stage = _stager(console, timings)

    sim = out / "sim"
    stage("simulate", sim / ".done", lambda: (run_simulation(sim, patients=patients, seed=seed, modality="heart+lung"), (sim / ".done").touch()))
    stage("ingest heart", out / "rec" / "heart" / "records.parquet", lambda: run_ingest("circor", sim / "circor", out / "rec" / "heart", seed=seed))
    stage("ingest lung", out / "rec" / "lung" / "records.parquet", lambda: run_ingest("icbhi", sim / "icbhi", out / "rec" / "lung", seed=seed))
    bench = out / "bench"
    stage("bench", bench / "test.jsonl", lambda: build_bench([out / "rec" / "heart", out / "rec" / "lung"], bench, seed=seed, console=console))

    common = [f"data.train={bench / 'train.jsonl'}", f"data.val={bench / 'val.jsonl'}", f"train.seed={seed}"]
    # The built-in audio tower starts from a short supervised warm-up on the training patients'
    # labels (train/tower_warmup.py): the encoder folder it writes is the model's audio_tower.
    # 1,000 steps (~1 min): at 300 its findings head read held-out crackles at AUROC 0.96 and
    # wheezes at 0.90, at 1,000 at 0.99 and 1.00.
    encoder = out / "encoder"
    recipe = load_config(_recipe(), overrides or [])
    stage("audio tower warm-up", encoder / ENCODER_FILE, lambda: warm_up_tower(
        [out / "rec" / "heart", out / "rec" / "lung"], recipe["features"], encoder,
        tower_size=str(recipe["model"].get("tower_size", "small")), steps=warmup_steps, seed=seed, cache_dir=out / "feature_cache", console=console))
    # train_from_config writes <output_dir>/model: the audio model lands at OUT/model (what
    # `clinlm ask OUT/model` expects), the text-only baseline at OUT/text_only/model.
    audio_run, text_run = out, out / "text_only"
    model, text_only = audio_run / "model", text_run / "model"
    # The warmed-up tower is kept fixed (its findings head already reads the labels; SFT only has to
    # learn to read it) and its head gets one prefix token per finding (models/projector.py), whose
    # name embedding is scaled by the finding's peak probability ("presence", models/composite.py).
    # Half the training recordings lose their time tokens, so the LM learns to answer from the
    # finding tokens (it ignored them otherwise; RESULTS.md "time-token dropout"). The user's
    # overrides come last, so they can change any of this.
    warmed = [f"model.audio_tower={encoder}", "model.finding_tokens=true", "model.freeze.audio_tower=true",
              "model.finding_words=presence", "model.time_token_dropout=0.5"]
    user = list(overrides or [])
    stage("train (audio model)", model / PROVENANCE_FILE,
          lambda: train_from_config(_recipe(), overrides=common + [*warmed, *user, f"train.output_dir={audio_run}"],
                                    resume=_resumable(audio_run), console=console))
    stage("train (text-only baseline)", text_only / PROVENANCE_FILE,
          lambda: train_from_config(_recipe(), overrides=common + [*user, f"train.output_dir={text_run}", "model.audio_tower=none"],
                                    resume=_resumable(text_run), console=console))
    return _evaluate_and_report(stage, evaluate, model, text_only, bench, out, timings, print_results, console)


def run_ecg_quickstart(out: Path, seed: int = 0, patients: int = 900, console: Console | None = None,
                       overrides: list[str] | None = None) -> list[dict]:
    """simulate ECGs -> ingest ptbxl at 100 Hz -> ECG bench (signals) -> train -> train text-only -> eval.

    900 patients by default (100 per simulated class): with 300, the ~27 training AF ECGs were too
    few and the model missed all 3 held-out AF patients (AF accuracy = the majority's 0.89); with
    900, held-out AF accuracy was 1.00 on 90 patients (benchmarks/RESULTS.md)."""
    from clinlm.bench.build import build_bench
    from clinlm.bench.ecg_facts import ECG_TASKS
    from clinlm.evaluate.run import evaluate
    from clinlm.ingest import run_ingest
    from clinlm.simulate import run_simulation
    from clinlm.train.run import train_from_config

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    stage = _stager(console, timings)
    sim, rec, bench = out / "sim", out / "rec" / "ecg", out / "bench"
    stage("simulate", sim / ".done", lambda: (run_simulation(sim, patients=patients, seed=seed, modality="ecg"), (sim / ".done").touch()))
    # 100 Hz: what the ECG features use, so no record is resampled on the way in.
    stage("ingest ecg", rec / "records.parquet", lambda: run_ingest("ptbxl", sim / "ptbxl", rec, seed=seed, sampling_rate=100))
    stage("bench", bench / "test.jsonl", lambda: build_bench([rec], bench, seed=seed, tasks=list(ECG_TASKS), console=console))
    common = [f"data.train={bench / 'train.jsonl'}", f"data.val={bench / 'val.jsonl'}", f"train.seed={seed}", *(overrides or [])]
    model, text_only = out / "model", out / "text_only" / "model"
    stage("train (ECG model)", model / PROVENANCE_FILE,
          lambda: train_from_config(_recipe(ECG_RECIPE), overrides=common + [f"train.output_dir={out}"], resume=_resumable(out), console=console))
    stage("train (text-only baseline)", text_only / PROVENANCE_FILE,
          lambda: train_from_config(_recipe(ECG_RECIPE), overrides=common + [f"train.output_dir={out / 'text_only'}", "model.ecg_tower=none"],
                                    resume=_resumable(out / "text_only"), console=console))
    return _evaluate_and_report(stage, evaluate, model, text_only, bench, out, timings, print_ecg_results, console)


def print_ecg_results(rows: list[dict], console: Console) -> None:
    """The ECG headline figures: AF, per-class AUROC, MCQ, report, conversation; model, majority, text-only."""
    index = {(r["system"], r["task"], r["metric"]): r for r in rows if not r.get("dataset")}

    fmt = format_ci

    lines = [("ecg_closed", "af_accuracy", "AF? (closed, generated)"), ("ecg_closed", "accuracy", "closed questions"),
             ("ecg_closed", "auroc", "closed questions AUROC"), ("ecg_mcq", "accuracy", "multiple choice (letter)"),
             ("ecg_report", "finding_f1", "report: finding F1"), ("ecg_report", "rhythm_accuracy", "report: rhythm"),
             ("ecg_conversation", "accuracy", "conversation: last turn")]
    lines += [(t, "auroc", f"class {t.split(':', 1)[1]} AUROC") for t in dict.fromkeys(r["task"] for r in rows)
              if t.startswith("ecg_class:") and ("model", t, "auroc") in index]
    table = Table("figure", "model", "majority", "text-only", "n", title="held-out simulated patients (95% CI over patients)")
    for task, metric, label in lines:
        model = index.get(("model", task, metric))
        if model is None:
            continue
        table.add_row(label, fmt(model), fmt(index.get(("majority", task, metric))), fmt(index.get(("text_only", task, metric))), str(model.get("n", "")))
    console.print(table)


def print_results(rows: list[dict], console: Console) -> None:
    """One line per task and headline metric: model, majority, text-only, each with its CI."""
    headline = {
        "binary": "accuracy", "detection": "event_f1", "reporting": "field_accuracy", "reasoning": "fact_consistency",
        "differential": "top1", "comparison": "accuracy", "location": "accuracy",
    }
    table = Table("task", "metric", "model", "majority", "text-only", "n", title="held-out simulated patients")
    index = {(r["system"], r["task"], r["metric"]): r for r in rows if not r.get("dataset")}

    fmt = format_ci

    for task, metric in headline.items():
        model = index.get(("model", task, metric))
        if model is None:  # the evaluator may name the headline metric differently: show its first
            cands = [r for (s, t, m), r in index.items() if s == "model" and t == task]
            if not cands:
                continue
            model, metric = cands[0], cands[0]["metric"]
        table.add_row(task, metric, fmt(model), fmt(index.get(("majority", task, metric))), fmt(index.get(("text_only", task, metric))), str(model.get("n", "")))
    console.print(table)
