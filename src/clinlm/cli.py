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
) -> None:
    """Read a dataset in its native layout into a record table (records.parquet + rejects.parquet)."""
    from clinlm.ingest import run_ingest
    from clinlm.show import print_ingest_summary

    try:
        result = run_ingest(adapter, root, out, seed=seed)
    except (FileNotFoundError, KeyError) as exc:
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
) -> None:
    """Build StethoBench-style instruction and preference JSONL from record tables."""
    from clinlm.bench.build import build_bench

    try:
        build_bench(inputs, out, seed=seed, tasks=task, split_all=split_all, llm_url=llm_url, llm_model=llm_model, workers=workers, console=console, allow_missing_media=allow_missing_media)
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


@app.command("eval")
def eval_(
    checkpoint: Path = typer.Argument(..., help="A model folder written by `clinlm train`."),
    data: Path = typer.Argument(..., help="An instruction JSONL (e.g. bench/test.jsonl)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for metrics.json, predictions.jsonl, report.md."),
    by: Optional[str] = typer.Option(None, help="Split every figure by this field (e.g. dataset)."),
    text_only: Optional[Path] = typer.Option(None, help="A text-only model folder for the text-only baseline."),
    judge_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint for an LLM judge."),
    judge_model: Optional[str] = typer.Option(None, help="Model name at --judge-url."),
    batch_size: int = typer.Option(16, help="Generation batch size."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N rows."),
) -> None:
    """Generate answers and score every task with CIs beside majority and text-only baselines."""
    from clinlm.evaluate.run import evaluate

    try:
        evaluate(checkpoint, data, out, by=by, text_only=text_only, judge_url=judge_url, judge_model=judge_model, batch_size=batch_size, limit=limit, console=console)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


@app.command()
def ask(
    checkpoint: Path = typer.Argument(..., help="A model folder."),
    question: str = typer.Argument(..., help="The question (placeholders are added for each --audio)."),
    audio: Optional[List[Path]] = typer.Option(None, "--audio", help="Audio file(s) to ask about."),
    max_new_tokens: int = typer.Option(160, help="Longest answer in tokens."),
) -> None:
    """Ask a trained model a question about a recording."""
    from clinlm.infer import ask as ask_model

    try:
        answer = ask_model(checkpoint, question, audios=[str(a) for a in audio or []], max_new_tokens=max_new_tokens)
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
def quickstart(
    out: Path = typer.Option(Path("qs"), "--out", "-o", help="Output folder."),
    seed: int = typer.Option(0, help="Seed for everything."),
    patients: int = typer.Option(200, help="Simulated patients per modality."),
) -> None:
    """simulate -> ingest -> bench -> train -> eval -> report, on CPU, in minutes."""
    from clinlm.quickstart import run_quickstart

    run_quickstart(out, seed=seed, patients=patients, console=console)


if __name__ == "__main__":  # pragma: no cover
    app()
