"""How fast `clinlm ingest circor` indexes a folder: records per second.

Writes N short recordings in the CirCor layout (4 kHz 16-bit wav + WFDB .hea + .tsv
segmentation, four sites per patient, a `<pid>.txt` per patient with the publisher's fields) into a
temporary folder, then times `run_ingest("circor", ...)`: parsing the patient files, reading wav
and .hea headers (never the samples), the .tsv segmentations, the split, and writing Parquet.
pandas/pyarrow are imported before the clock starts (a one-off ~2 s on this machine), so the
figure is indexing throughput, not start-up.

    python benchmarks/ingest_speed.py                  # N=2000 recordings, 2 s each
    python benchmarks/ingest_speed.py --n 500 --seconds 20
    python benchmarks/ingest_speed.py --root sim/circor   # time an existing folder instead
                                                          # (e.g. `clinlm simulate` output)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 4000
SITES = ("AV", "PV", "TV", "MV")
LABELS = (
    "#Age: Child\n#Sex: Female\n#Height: 98.0\n#Weight: 15.9\n#Pregnancy status: False\n"
    "#Murmur: Present\n#Murmur locations: AV+MV\n#Most audible location: MV\n"
    "#Systolic murmur timing: Holosystolic\n#Systolic murmur shape: Plateau\n"
    "#Systolic murmur grading: II/VI\n#Systolic murmur pitch: Low\n#Systolic murmur quality: Blowing\n"
    "#Diastolic murmur timing: nan\n#Diastolic murmur shape: nan\n#Diastolic murmur grading: nan\n"
    "#Diastolic murmur pitch: nan\n#Diastolic murmur quality: nan\n#Campaign: CC2015\n#Additional ID: nan\n"
)


def write_circor(folder: Path, n_recordings: int, seconds: float, seed: int = 0) -> int:
    """Write n_recordings (rounded up to whole patients of 4 sites); returns how many were written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_frames = int(seconds * SR)
    period = 0.8  # s per heart cycle (75 bpm): S1 0.1, systole 0.2, S2 0.1, diastole 0.4
    onsets = np.arange(0.1, seconds - period, period)
    tsv = "".join(
        f"{t:.5f}\t{t + a:.5f}\t{s}\n"
        for t0 in onsets
        for t, a, s in ((t0, 0.1, 1), (t0 + 0.1, 0.2, 2), (t0 + 0.3, 0.1, 3), (t0 + 0.4, 0.4, 4))
    )
    written = 0
    for pid in range(10000, 10000 + (n_recordings + len(SITES) - 1) // len(SITES)):
        lines = [f"{pid} {len(SITES)} {SR}"]
        for site in SITES:
            stem = f"{pid}_{site}"
            sf.write(folder / f"{stem}.wav", (0.1 * rng.standard_normal(n_frames)).astype(np.float32), SR, subtype="PCM_16")
            (folder / f"{stem}.hea").write_text(f"{stem} 1 {SR} {n_frames}\r\n{stem}.wav 16+44 1 16 0 0 0 0 {site}\r\n")
            (folder / f"{stem}.tsv").write_text(tsv)
            lines.append(f"{site} {stem}.hea {stem}.wav {stem}.tsv")
            written += 1
        (folder / f"{pid}.txt").write_bytes(("\r\n".join(lines) + "\r\n" + LABELS.replace("\n", "\r\n")).encode())
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="recordings to write (default 2000)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each recording in seconds")
    parser.add_argument("--root", type=Path, default=None, help="ingest this CirCor-layout folder instead of writing one")
    args = parser.parse_args()

    import pandas  # noqa: F401  (pyarrow's from_pylist pulls it in: start-up, not indexing cost)
    import pyarrow  # noqa: F401

    from clinlm.ingest import run_ingest

    tmp = Path(tempfile.mkdtemp(prefix="clinlm-ingest-bench-"))
    try:
        root = args.root
        if root is None:
            root = tmp / "training_data"
            t0 = time.perf_counter()
            n = write_circor(root, args.n, args.seconds)
            print(f"wrote {n} recordings ({args.seconds:g} s, {SR} Hz) in {time.perf_counter() - t0:.1f} s")
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_ingest("circor", root, tmp / "out", progress=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        n_rec = len(result.records)
        # CPU time too: on a shared machine the wall clock also counts other people's work.
        print(f"ingest circor: {n_rec} records, {len(result.rejects)} rejects in {seconds:.2f} s wall "
              f"({cpu:.2f} s CPU) = {n_rec / seconds:.0f} records/s wall, {n_rec / cpu:.0f} records per CPU-second")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
