"""`clinlm <verb>`: one command line for the whole path.

Each verb is a thin wrapper: it parses options and calls one function of the module that does the
work (imported lazily, so `clinlm --help` stays fast). Errors a user can fix are printed as one
red line with what to do, and exit 2; nothing prints a traceback for a user mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="clinlm: from labelled clinical recordings to an instruction-following clinical model.",
)
records_app = typer.Typer(no_args_is_help=True, help="Inspect ingested record tables.")
bench_app = typer.Typer(no_args_is_help=True, help="Build, inspect and validate instruction data.")
app.add_typer(records_app, name="records")
app.add_typer(bench_app, name="bench")
console = Console()


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@app.command()
def simulate(
    out: Path = typer.Argument(..., help="Folder to write the simulated datasets into."),
    patients: int = typer.Option(200, help="Number of simulated patients per modality."),
    seed: int = typer.Option(0, help="Random seed: the same seed writes the same files."),
    modality: str = typer.Option("all", help="heart, lung, cough, ecg, several joined with + (heart+lung), or all (heart+lung+cough)."),
) -> None:
    """Write simulated heart (CirCor layout), lung (ICBHI layout) and cough (COUGHVID layout) data."""
    from clinlm.simulate import run_simulation

    try:
        summary = run_simulation(out, patients=patients, seed=seed, modality=modality)
    except ValueError as exc:
        fail(str(exc))
    for name, info in summary.items():
        console.print(f"[green]{name}[/]: {info}")


@app.command()
def ingest(
    adapter: str = typer.Argument(..., help="Dataset layout: circor, physionet2016, icbhi, sprsound, bmdhs, coughvid, coswara, openi-csv, openi-xml, mimic-cxr."),
    root: Path = typer.Argument(..., help="The dataset folder, as its publisher lays it out."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for records.parquet and rejects.parquet."),
    seed: int = typer.Option(0, help="Seed for the patient-level split."),
    option: Optional[List[str]] = typer.Option(None, "--option", help="Adapter option key=value, repeatable (e.g. ptbxl: --option sampling_rate=100)."),
) -> None:
    """Read a dataset in its native layout into a record table (records.parquet + rejects.parquet)."""
    from clinlm.ingest import parse_options, run_ingest
    from clinlm.show import print_ingest_summary

    try:
        result = run_ingest(adapter, root, out, seed=seed, **parse_options(adapter, option))
    except (FileNotFoundError, KeyError, ValueError) as exc:
        fail(str(exc).strip("'\""))
    print_ingest_summary(result.summary, console)
    if not result.records:
        fail(f"nothing could be read from {root}; see {out / 'rejects.parquet'}", code=1)


@app.command("render-ecg")
def render_ecg(
    records: Path = typer.Argument(..., help="An ingest output folder with ECG signal records (e.g. rec/ptbxl)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for images/, records.parquet, summary.json."),
    style: str = typer.Option("paper", help="paper (red grid) or bw (grey grid)."),
    augment: str = typer.Option("none", help="none, scan or photo: imitate a scanned page or a phone photo."),
    dpi: int = typer.Option(100, help="Resolution: pixels per inch of the US-letter page (100 -> 1100x850)."),
    seed: int = typer.Option(0, help="Seed for the augmentations (per record, independent of order)."),
    limit: Optional[int] = typer.Option(None, help="Render only the first N ECGs."),
) -> None:
    """Draw ECG signals as 12-lead printouts (3x4 + lead II strip, 25 mm/s, 10 mm/mV) for image tasks."""
    from clinlm.signals.ecg_image import render_records

    try:
        summary = render_records(records, out, style=style, augment=augment, dpi=dpi, seed=seed, limit=limit)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(
        f"[green]{summary['images']} images[/] in {out} ({summary['images_per_second']} images/s), "
        f"{summary['rejects']} rejects, {summary['skipped_not_ecg_signal']} records skipped (not ECG signals)"
    )
    if not summary["images"]:
        fail(f"no image could be drawn from {records}; see {out / 'rejects.parquet'}", code=1)


@records_app.command("show")
def records_show(
    path: Path = typer.Argument(..., help="An ingest output folder."),
    rejects: int = typer.Option(10, help="How many rejects to list."),
) -> None:
    """Counts, label tables and rejects of an ingested record table."""
    from clinlm.show import show_records

    try:
        show_records(path, console, max_rejects=rejects)
    except FileNotFoundError as exc:
        fail(str(exc))


@bench_app.command("build")
def bench_build(
    inputs: List[Path] = typer.Argument(..., help="Ingest output folders (records.parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for {train,val,test}.jsonl."),
    seed: int = typer.Option(0, help="Seed for phrasings and sampling."),
    task: Optional[List[str]] = typer.Option(None, "--task", "--tasks", help="Task categories to build (default: all that fit the data)."),
    split_all: Optional[str] = typer.Option(None, help="Put every record into this split (e.g. test, for an out-of-distribution set)."),
    llm_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint for optional paraphrasing."),
    llm_model: Optional[str] = typer.Option(None, help="Model name at --llm-url."),
    workers: int = typer.Option(0, help="Worker processes (0: one per core)."),
    allow_missing_media: bool = typer.Option(False, "--allow-missing-media", help="Keep records whose audio is not on disk (annotation-only releases), pointing at the expected path."),
    media: str = typer.Option("signal", help="ECG rows show the signal (<ecg>) or a picture of it (image: <image>; signals are drawn as printouts into OUT/images)."),
) -> None:
    """Build StethoBench-style (and, for ECGs, ECGBench-style: --tasks ecg) instruction JSONL from record tables."""
    from clinlm.bench.build import build_bench

    try:
        build_bench(inputs, out, seed=seed, tasks=task, split_all=split_all, llm_url=llm_url, llm_model=llm_model, workers=workers, console=console, allow_missing_media=allow_missing_media, media=media)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


@bench_app.command("show")
def bench_show(path: Path = typer.Argument(..., help="A bench folder.")) -> None:
    """Counts per task, split and dataset, with examples."""
    from clinlm.bench.show import show_bench

    try:
        show_bench(path, console)
    except FileNotFoundError as exc:
        fail(str(exc))


@bench_app.command("validate")
def bench_validate(paths: List[Path] = typer.Argument(..., help="JSONL files in the messages/audios convention.")) -> None:
    """Check placeholders vs media, media decode, roles, empty content, patient leakage across splits."""
    from clinlm.bench.validate import print_validation, validate_files

    report = validate_files(paths)
    print_validation(report, console)
    if report.errors:
        raise typer.Exit(1)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="A recipe YAML in configs/."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in the output folder."),
) -> None:
    """Train from a recipe config; `key.sub=value` arguments override the config."""
    from clinlm.train.run import train_from_config

    try:
        train_from_config(config, overrides=list(ctx.args), resume=resume, console=console)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        fail(str(exc))


@app.command("eval", context_settings={"allow_extra_args": True})
def eval_(
    ctx: typer.Context,
    checkpoint: Path = typer.Argument(..., help="A model folder written by `clinlm train`."),
    data: Path = typer.Argument(..., help="An instruction JSONL (e.g. bench/test.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder for metrics.json, predictions.jsonl, report.md (with --degrade/--compare: default <checkpoint>/../robustness)."),
    by: Optional[str] = typer.Option(None, help="Split every figure by this field (e.g. dataset)."),
    text_only: Optional[Path] = typer.Option(None, help="A text-only model folder for the text-only baseline."),
    judge_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint for an LLM judge."),
    judge_model: Optional[str] = typer.Option(None, help="Model name at --judge-url."),
    batch_size: int = typer.Option(16, help="Generation batch size."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N rows."),
    degrade: Optional[List[str]] = typer.Option(None, "--degrade", help="Degrade the audio and evaluate per condition: --degrade noise:snr=0,10,20 clipping band-limit dropout (clinlm/signals/degrade.py)."),
    compare: Optional[List[str]] = typer.Option(None, "--compare", help="Another checkpoint evaluated the same way, NAME=PATH or PATH (repeatable), e.g. --compare sft=qs/model."),
    seed: int = typer.Option(0, help="Seed of the degradations' noise (with --degrade)."),
) -> None:
    """Generate answers and score every task with CIs beside majority and text-only baselines."""
    extra = list(ctx.args)  # `--degrade a b c`: the specs after the first arrive as extra arguments
    try:
        if extra and not degrade:
            raise ValueError(f"unexpected arguments {' '.join(extra)}: degradation specs go after --degrade")
        if degrade or compare:
            from clinlm.evaluate.robustness import evaluate_robustness

            evaluate_robustness(checkpoint, data, out, [*(degrade or []), *extra], compare or [], text_only=text_only, by=by, judge_url=judge_url,
                                judge_model=judge_model, batch_size=batch_size, limit=limit, seed=seed, console=console)
            return
        if out is None:
            raise ValueError("--out is required: the folder for metrics.json, predictions.jsonl and report.md")
        from clinlm.evaluate.run import evaluate

        evaluate(checkpoint, data, out, by=by, text_only=text_only, judge_url=judge_url, judge_model=judge_model, batch_size=batch_size, limit=limit, console=console)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


@app.command()
def ask(
    checkpoint: Path = typer.Argument(..., help="A model folder."),
    question: str = typer.Argument(..., help="The question (placeholders are added for each --audio, --ecg, --image)."),
    audio: Optional[List[Path]] = typer.Option(None, "--audio", help="Audio file(s) to ask about."),
    max_new_tokens: int = typer.Option(160, help="Longest answer in tokens."),
    ecg: Optional[List[Path]] = typer.Option(None, "--ecg", help="ECG record(s) to ask about: a WFDB record path, with or without .hea."),
    image: Optional[List[Path]] = typer.Option(None, "--image", help="Image(s) to ask about: an ECG printout, scan or photo."),
) -> None:
    """Ask a trained model a question about a recording, an ECG or an ECG picture."""
    from clinlm.infer import ask as ask_model

    try:
        answer = ask_model(checkpoint, question, audios=[str(a) for a in audio or []], max_new_tokens=max_new_tokens,
                           ecgs=[str(e) for e in ecg or []], images=[str(i) for i in image or []])
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(answer)


@app.command()
def serve(
    checkpoint: Path = typer.Argument(..., help="A model folder."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (anything but loopback needs --api-key-file)."),
    port: int = typer.Option(8000, help="Port."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File holding the API key clients must send."),
    media_dir: Optional[Path] = typer.Option(None, "--save-media", help="Keep uploaded media in this folder (off by default)."),
) -> None:
    """OpenAI-compatible API and a web page for a trained model."""
    from clinlm.serve.run import run_server

    try:
        run_server(checkpoint, host=host, port=port, api_key_file=api_key_file, media_dir=media_dir)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="A model folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the merged language model."),
) -> None:
    """Merge the LoRA adapter into a plain transformers folder for the language model."""
    from clinlm.models.checkpoint import export_merged

    try:
        export_merged(checkpoint, out)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(f"[green]wrote[/] {out}")


@app.command()
def reports(
    inputs: List[Path] = typer.Argument(..., help="Ingest output folders (records.parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for reports.jsonl and summary.json."),
    llm_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint that rewrites each report (checked against the labels, cached)."),
    llm_model: Optional[str] = typer.Option(None, help="Model name at --llm-url."),
) -> None:
    """One clinical report per recording from its metadata and labels (the text side of alignment)."""
    from clinlm.align.reports import build_reports

    try:
        summary = build_reports(inputs, out, llm_url=llm_url, llm_model=llm_model, console=console)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(f"[green]{summary['reports']} reports[/] in {out / 'reports.jsonl'}: {summary['by_modality_and_source']}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def align(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="An align recipe, e.g. configs/align_default.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (train.output_dir); the encoder goes to OUT/encoder."),
) -> None:
    """Align an audio encoder to a frozen text teacher on report pairs; `key=value` arguments override the recipe."""
    from clinlm.align.run import run_align

    try:
        run_align(config, overrides=list(ctx.args), out=out, console=console)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        fail(str(exc).strip("'\""))


@app.command()
def probe(
    inputs: Optional[List[str]] = typer.Argument(None, help="Encoders (encoder folders, transformers audio folders, builtin:random) and ingest folders, in any order."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for probe.json, probe.md, probe.png, summary.json."),
    config: Optional[Path] = typer.Option(None, help="Align recipe giving builtin:random's features, size and seed (default: configs/align_default.yaml)."),
    merge: Optional[List[Path]] = typer.Option(None, "--merge", help="Earlier probe output folders to put in the same table."),
    cv: Optional[int] = typer.Option(None, help="K-fold CV over patients instead of the split column (for encoders that never saw these records)."),
    min_train: int = typer.Option(5, help="Fewest positives and negatives among training units for a task to run."),
    min_test: int = typer.Option(3, help="Fewest positives and negatives among test units for a task to run."),
    baseline: Optional[str] = typer.Option(None, help="Encoder the others are compared with (default: builtin:random if probed, else the first)."),
    seed: int = typer.Option(0, help="Seed for CV folds and bootstrap draws."),
) -> None:
    """Linear probes on frozen embeddings: AUROC with patient-bootstrap CIs for every task the records support."""
    from clinlm.probe.run import run_probe

    try:
        summary = run_probe(list(inputs or []), out, config=config, merge=list(merge or []), cv=cv, min_train=min_train,
                            min_test=min_test, baseline=baseline, seed=seed, console=console)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        fail(str(exc).strip("'\""))
    for name, m in summary["mean_auroc"].items():
        console.print(f"[bold]{name}[/]: mean AUROC {m['mean']} [{m.get('ci_low')}, {m.get('ci_high')}] over {m['tasks']} common tasks")
    for name, d in summary["difference_to_baseline"].items():
        console.print(f"  {name} - {summary['baseline']}: {d['difference']} [{d['ci_low']}, {d['ci_high']}]")
    console.print(f"[green]wrote[/] {out / 'probe.md'} ({len(summary['skipped'])} tasks skipped, listed there)")


@app.command()
def quickstart(
    out: Path = typer.Option(Path("qs"), "--out", "-o", help="Output folder."),
    seed: int = typer.Option(0, help="Seed for everything."),
    patients: Optional[int] = typer.Option(None, help="Simulated patients per modality (default 200; ecg: 900)."),
    modality: str = typer.Option("heart+lung", help="heart+lung (auscultation) or ecg (12-lead ECG signals)."),
) -> None:
    """simulate -> ingest -> bench -> train -> eval -> report, on CPU, in minutes."""
    from clinlm.quickstart import run_quickstart

    try:
        run_quickstart(out, seed=seed, patients=patients or (900 if modality == "ecg" else 200), console=console, modality=modality)
    except ValueError as exc:
        fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    app()
