"""How fast `clinlm bench build` turns records into instruction + preference rows: rows per second.

Default: N synthetic Records (half heart, CirCor-like: four sites per patient, murmur labels and
S1/S2 segmentation; half lung, ICBHI-like: respiratory cycles with crackle/wheeze, a diagnosis),
written as one records.parquet with `clinlm.records` (in chunks), all pointing at one short wav, then
`build_bench` is timed (pass 1 index, streaming pass 2 over a process pool, card and plots).
Labels are random, so every task and branch (unknowns included) is exercised.

    python benchmarks/bench_speed.py                       # 100,000 records, workers = cores
    python benchmarks/bench_speed.py --n 20000 --workers 1
    python benchmarks/bench_speed.py --simulate 200        # clinlm simulate + ingest, then build

`--simulate P` runs the embedded simulator for P patients per modality, ingests the CirCor and
ICBHI layouts it writes, and builds the bench from them (the quickstart's data path), printing
the rows per category too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from clinlm.records import RECORD_SCHEMA, Event, Record, records_to_table

SITES = ("AV", "PV", "TV", "MV")


def synthetic_records(n: int, wav: str, seed: int = 0) -> Iterator[Record]:
    """n records, generated lazily (so writing 100,000 of them needs little memory)."""
    rng = random.Random(seed)
    out: list[Record] = []  # the current patient's records
    i = made = 0
    while made < n:
        yield from out[: n - made]
        made += len(out[: n - made])
        out = []
        pid, split = f"p{i}", rng.choices(["train", "val", "test"], [0.7, 0.1, 0.2])[0]
        i += 1
        if i % 2:  # a heart patient: four sites
            murmur = rng.choice(["present", "absent", "absent", "unknown"])
            locs = rng.sample(SITES, rng.randint(1, 3))
            fields = {}
            if murmur == "present":
                fields = dict(systolic_timing=rng.choice(["early", "mid", "late", "holosystolic"]),
                              systolic_shape=rng.choice(["crescendo", "decrescendo", "diamond", "plateau"]),
                              systolic_grade=rng.choice([1, 2, 3]), systolic_pitch=rng.choice(["low", "medium", "high"]),
                              systolic_quality=rng.choice(["blowing", "harsh", "musical"]))
            beat = rng.uniform(0.5, 1.0)
            events = [Event(k * beat + dt, k * beat + dt + 0.1, "heart_state", lab)
                      for k in range(10) for dt, lab in ((0.0, "S1"), (0.1, "systole"), (0.35, "S2"), (0.45, "diastole"))]
            for site in SITES:
                out.append(Record(record_id=f"h/{pid}_{site}", patient_id=f"h/{pid}", dataset="circor", modality="heart",
                                  media=[wav], site=site, murmur=murmur, murmur_locations=locs if murmur == "present" else [],
                                  murmur_most_audible=locs[0] if murmur == "present" else None, events=events,
                                  split=split, **fields))
        else:  # a lung patient: one to three chest locations
            dx = rng.choice(["copd", "copd", "healthy", "urti", "asthma", "pneumonia", "bronchiectasis"])
            for site in rng.sample(["Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr"], rng.randint(1, 3)):
                t, cycles = 0.0, []
                for _ in range(rng.randint(3, 9)):
                    d = rng.uniform(1.0, 3.0)
                    cycles.append(Event(round(t, 3), round(t + d, 3), "resp_cycle",
                                        rng.choice(["normal", "normal", "crackle", "wheeze", "crackle+wheeze"])))
                    t += d
                out.append(Record(record_id=f"l/{pid}_{site}", patient_id=f"l/{pid}", dataset="icbhi", modality="lung",
                                  media=[wav], site=site, diagnosis=[dx], abnormal=dx != "healthy",
                                  crackle=any("crackle" in c.label for c in cycles), wheeze=any("wheeze" in c.label for c in cycles),
                                  events=cycles, split=split))


def write_records(records: Iterator[Record], path: Path, chunk: int = 5000) -> None:
    """records.parquet written in chunks (clinlm.records schema), never the whole list in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, RECORD_SCHEMA) as writer:
        while batch := list(itertools.islice(records, chunk)):
            writer.write_table(records_to_table(batch))


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="synthetic records")
    ap.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    ap.add_argument("--simulate", type=int, default=0, help="use the simulator with this many patients instead")
    ap.add_argument("--keep", type=Path, default=None, help="build into this folder and keep it")
    args = ap.parse_args()

    from clinlm.bench.build import build_bench

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.simulate:
            from clinlm.ingest import run_ingest
            from clinlm.simulate import run_simulation

            t0 = time.perf_counter()
            run_simulation(tmp / "sim", patients=args.simulate, seed=0, modality="all", progress=False)
            inputs = []
            for adapter in ("circor", "icbhi"):
                run_ingest(adapter, tmp / "sim" / adapter, tmp / "rec" / adapter, progress=False)
                inputs.append(tmp / "rec" / adapter)
            print(f"simulate + ingest {args.simulate} patients per modality: {time.perf_counter() - t0:.1f} s")
        else:
            wav = tmp / "one.wav"
            sf.write(wav, np.zeros(4000, dtype=np.float32), 4000)
            t0 = time.perf_counter()
            write_records(synthetic_records(args.n, str(wav)), tmp / "rec" / "records.parquet")
            print(f"wrote {args.n} synthetic records in {time.perf_counter() - t0:.1f} s")
            inputs = [tmp / "rec"]
        out = args.keep or tmp / "bench"
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        stats = build_bench(inputs, out, seed=0, workers=args.workers)
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
    pref = sum(stats["preference_rows_per_split"].values())
    print(f"build_bench: {stats['records_used']} records -> {stats['rows']} instruction rows + {pref} preference rows "
          f"in {seconds:.1f} s with {stats['workers']} workers: {stats['rows'] / seconds:.0f} instruction rows/s, "
          f"{stats['records_used'] / seconds:.0f} records/s")
    print(f"CPU time (this process + workers): {cpu:.0f} s = {stats['rows'] / cpu:.0f} instruction rows per CPU-second "
          f"(wall-clock figures depend on what else the machine runs; load average now {os.getloadavg()[0]:.1f})")
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"peak memory: main process {own.ru_maxrss / 1024:.0f} MiB, largest worker {children.ru_maxrss / 1024:.0f} MiB")
    print("rows per task:", json.dumps({t: sum(v.values()) for t, v in stats["rows_per_task"].items()}))


if __name__ == "__main__":
    main()
