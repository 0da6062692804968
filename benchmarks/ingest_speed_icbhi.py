"""How fast `clinlm ingest icbhi` indexes a folder: records per second.

Writes N recordings in the ICBHI layout (44.1 kHz 24-bit wav + cycle `.txt`, one `.txt` row per
2.5 s cycle, `patient_diagnosis.csv`, `demographic_info.txt` with CRLF and NA) into a temporary
folder, then times `run_ingest("icbhi", ...)`: finding the files, parsing the cycles, reading the
wav headers (never the samples), the split, and writing Parquet.

    python benchmarks/ingest_speed_icbhi.py                 # N=2000 recordings, 20 s each
    python benchmarks/ingest_speed_icbhi.py --n 500
    python benchmarks/ingest_speed_icbhi.py --root ../shared/data/icbhi2017_annotations_only
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100
SITES = ("Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr")
DIAGNOSES = ("COPD", "URTI", "Healthy", "Pneumonia")


def write_icbhi(folder: Path, n_recordings: int, seconds: float, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    audio = folder / "audio_and_txt_files"
    audio.mkdir(parents=True, exist_ok=True)
    x = (0.05 * rng.standard_normal(int(seconds * SR))).astype(np.float32)  # one signal, many files
    starts = np.arange(0.1, seconds - 2.5, 2.5)
    n_patients = (n_recordings + len(SITES) - 1) // len(SITES)
    written = 0
    for i in range(n_patients):
        pid = 1000 + i
        for site in SITES:
            if written == n_recordings:
                break
            stem = f"{pid}_1b1_{site}_mc_AKGC417L"
            sf.write(audio / f"{stem}.wav", x, SR, subtype="PCM_24")
            rows = [f"{s:.3f}\t{s + 2.5:.3f}\t{int(rng.random() < 0.3)}\t{int(rng.random() < 0.1)}" for s in starts]
            (audio / f"{stem}.txt").write_text("\n".join(rows) + "\n")
            written += 1
    info = folder / "data_info"
    info.mkdir(exist_ok=True)
    (info / "patient_diagnosis.csv").write_text("".join(f"{1000 + i},{DIAGNOSES[i % 4]}\r\n" for i in range(n_patients)))
    (info / "demographic_info.txt").write_text("\r\n" + "".join(f"{1000 + i} 70 F 27.5 NA NA\r\n" for i in range(n_patients)))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="recordings to write (default 2000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each recording in seconds")
    parser.add_argument("--root", type=Path, default=None, help="ingest this ICBHI-layout folder instead of writing one")
    args = parser.parse_args()

    from clinlm.ingest import run_ingest

    tmp = Path(tempfile.mkdtemp(prefix="clinlm-icbhi-bench-"))
    try:
        root = args.root
        if root is None:
            root = tmp / "icbhi"
            t0 = time.perf_counter()
            n = write_icbhi(root, args.n, args.seconds)
            print(f"wrote {n} recordings ({args.seconds:g} s, 44.1 kHz 24-bit) in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        result = run_ingest("icbhi", root, tmp / "out", progress=False)
        dt = time.perf_counter() - t0
        print(
            f"ingest icbhi: {len(result.records)} records ({result.summary.get('records_without_media', 0)} without media), "
            f"{len(result.rejects)} rejects in {dt:.2f} s = {len(result.records) / dt:.0f} records/s"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
