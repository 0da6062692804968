"""The embedded physiological simulator: labelled heart, lung and cough sounds in native layouts.

`clinlm simulate OUT --patients 200 --seed 0` writes

    OUT/circor/     CirCor DigiScope layout (training_data/<pid>.txt, _<SITE>.wav/.hea/.tsv,
                    training_data.csv, RECORDS)            -> clinlm ingest circor OUT/circor
    OUT/icbhi/      ICBHI 2017 layout (audio_and_txt_files/, data_info/)  -> clinlm ingest icbhi OUT/icbhi
    OUT/coughvid/   COUGHVID layout (<uuid>.webm|.ogg + <uuid>.json)    -> clinlm ingest coughvid OUT/coughvid
    OUT/truth/      what the layouts cannot hold: heart lesion, S3/S4, crackle kind, true cough status
    OUT/simulation.json   the command's settings and summaries

so the real adapters read simulated data exactly as they read the published datasets.
`modality` picks "heart", "lung", "cough", several joined with "+" ("heart+lung"), or "all".

Reproducibility: patient i of modality m draws from `np.random.default_rng(SeedSequence(seed,
spawn_key=(m, i)))`, so it does not depend on how many patients are written, in which order, or by
how many worker processes; the same seed writes byte-identical files.

Each dataset folder is built in a hidden `.NAME.partial` folder beside it and swapped in when
complete, so a killed run leaves the previous output (or nothing) and can simply be re-run.
The simulator replaces only folders it wrote before (listed in simulation.json); it refuses to
overwrite anything else.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from clinlm.records import atomic_write_text

MODALITIES = {"heart": "circor", "lung": "icbhi", "cough": "coughvid"}  # modality -> dataset folder
_STREAM = {"heart": 1, "lung": 2, "cough": 3}  # independent random streams per modality
FIRST_ID = {"heart": 90001, "lung": 1001}  # above the real CirCor (<= 85345) and ICBHI (101-226) ids
MANIFEST = "simulation.json"
PARALLEL_MIN_JOBS = 24  # below this a worker pool costs more than it saves


def patient_rng(seed: int, modality: str, index: int) -> np.random.Generator:
    """The random generator of patient `index` (0-based) of `modality`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM[modality], index)))


def _simulate_one(job: tuple[str, int, int, str]) -> dict:
    """Draw and write one patient (runs in a worker process). job = (modality, seed, index, folder)."""
    modality, seed, index, folder = job
    rng = patient_rng(seed, modality, index)
    folder = Path(folder)
    if modality == "heart":
        from clinlm.simulate import heart
        from clinlm.simulate.patients import draw_heart_patient

        return heart.write_patient(folder, draw_heart_patient(str(FIRST_ID["heart"] + index), rng), rng)
    if modality == "lung":
        from clinlm.simulate import lung
        from clinlm.simulate.patients import draw_lung_patient

        return lung.write_patient(folder, draw_lung_patient(str(FIRST_ID["lung"] + index), rng), rng)
    from clinlm.simulate import cough
    from clinlm.simulate.patients import draw_cough_subject

    return cough.write_subject(folder, draw_cough_subject(rng), rng)


def _truth_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def _finish_circor(root: Path, results: list[dict]) -> None:
    from clinlm.simulate.heart import csv_text

    (root / "training_data.csv").write_text(csv_text([r["csv"] for r in results]), encoding="utf-8")
    names = sorted(p.stem for p in (root / "training_data").glob("*.wav"))
    (root / "RECORDS").write_text("".join(f"training_data/{n}\n" for n in names), encoding="utf-8")


def _finish_icbhi(root: Path, results: list[dict]) -> None:
    info = root / "data_info"
    info.mkdir()
    # Both files as ICBHI ships them: CRLF, no header, no newline after the last line; the
    # demographics start with an empty line and use NA for fields that do not apply.
    (info / "patient_diagnosis.csv").write_bytes("\r\n".join(r["diagnosis"] for r in results).encode())
    (info / "demographic_info.txt").write_bytes(("\r\n" + "\r\n".join(r["demographics"] for r in results)).encode())


_LAYOUT: dict[str, tuple[str | None, Callable[[Path, list[dict]], None] | None]] = {
    "heart": ("training_data", _finish_circor),  # subfolder the patients' files go in, finisher
    "lung": ("audio_and_txt_files", _finish_icbhi),
    "cough": (None, None),
}


def _read_manifest(out: Path) -> dict:
    path = out / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _publish(partial: Path, final: Path) -> None:
    """Swap a completed folder into place (old output removed only after the new one is there)."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    if old.exists():
        shutil.rmtree(old)


def _run_jobs(jobs: list[tuple], workers: int, progress: bool, label: str) -> list[dict]:
    """Run the jobs in order (in this process, or a pool of `workers`), with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    pool = None
    if workers > 1 and len(jobs) >= PARALLEL_MIN_JOBS:
        # fork: workers inherit the imported modules. The pool is made before the progress bar
        # starts its refresh thread, so no thread is running when the process forks.
        methods = multiprocessing.get_all_start_methods()
        pool = multiprocessing.get_context("fork" if "fork" in methods else None).Pool(workers)
    columns = (TextColumn(f"[bold]simulate {label}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        console = Console(stderr=True)  # bars only on a terminal: piped output stays clean
        with Progress(*columns, console=console, disable=not progress or not console.is_terminal, transient=True) as bar:
            task = bar.add_task(label, total=len(jobs))
            results = []
            # imap keeps the job order, so the files listing all patients are deterministic.
            for result in pool.imap(_simulate_one, jobs, chunksize=4) if pool else map(_simulate_one, jobs):
                results.append(result)
                bar.advance(task)
        return results
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def run_simulation(
    out: Path,
    patients: int = 200,
    seed: int = 0,
    modality: str = "all",
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Write simulated datasets into `out`; returns {dataset: one-line summary}.

    modality: "heart", "lung", "cough", several joined with "+" ("heart+lung"), or "all".
    workers: processes (default: up to 2, the CPU count).
    Raises ValueError for a bad modality, patient count or seed, or when `out/<dataset>` exists and
    was not written by the simulator.
    """
    out = Path(out)
    chosen = list(MODALITIES) if modality == "all" else [m.strip() for m in modality.split("+")]
    # ECG has its own simulator (a dipole model in the PTB-XL layout); "all" means the sounds.
    want_ecg = "ecg" in chosen
    chosen = [m for m in chosen if m != "ecg"]
    unknown = [m for m in chosen if m not in MODALITIES]
    if unknown or not (chosen or want_ecg):
        raise ValueError(
            f"unknown modality {modality!r}; choose all, {', '.join(MODALITIES)}, ecg, or several joined with + (heart+lung)"
        )
    chosen = [m for m in MODALITIES if m in chosen]  # canonical order, no repeats
    if patients < 1:
        raise ValueError(f"--patients must be at least 1, got {patients}")
    if seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed}")
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)

    manifest = _read_manifest(out)
    for m in chosen:
        final = out / MODALITIES[m]
        if final.exists() and MODALITIES[m] not in manifest.get("datasets", {}):
            raise ValueError(
                f"{final} exists and was not written by `clinlm simulate`; "
                f"choose another output folder or remove it first"
            )
    out.mkdir(parents=True, exist_ok=True)
    # Claim the folders before writing them, so a run killed at any point can be re-run.
    for m in chosen:
        manifest.setdefault("datasets", {}).setdefault(MODALITIES[m], {"status": "writing"})
    atomic_write_text(json.dumps(manifest, indent=2, sort_keys=True), out / MANIFEST)

    summary: dict[str, str] = {}
    for m in chosen:
        name = MODALITIES[m]
        final, partial = out / name, out / f".{name}.partial"
        if partial.exists():  # left by a killed run
            shutil.rmtree(partial)
        subdir, finish = _LAYOUT[m]
        folder = partial / subdir if subdir else partial
        folder.mkdir(parents=True)
        jobs = [(m, seed, i, str(folder)) for i in range(patients)]
        results = _run_jobs(jobs, workers, progress, name)
        if finish is not None:
            finish(partial, results)
        n_rec = sum(r["recordings"] for r in results)
        truth = [t for r in results for t in (r["truth"] if isinstance(r["truth"], list) else [r["truth"]])]
        _publish(partial, final)
        atomic_write_text(_truth_csv(truth), out / "truth" / f"{name}.csv")
        unit = "participants" if m == "cough" else "patients"
        summary[name] = f"{patients} {unit}, {n_rec} recordings in {final}"
        manifest["datasets"][name] = {
            "modality": m, "patients": patients, "recordings": n_rec, "seed": seed, "status": "complete",
        }
        atomic_write_text(json.dumps(manifest, indent=2, sort_keys=True), out / MANIFEST)
    if want_ecg:
        from clinlm.simulate.ecg import simulate_ecg

        info = simulate_ecg(out / "ptbxl", patients=patients, seed=seed)
        summary["ptbxl"] = f"{info['patients']} patients, {info['records']} recordings in {info['folder']}"
    return summary
