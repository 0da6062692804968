"""Hand-made Records for the bench tests: heart (CirCor-like), lung (ICBHI- and SPRSound-like), cough.

Imported by the tests in tests/bench (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import random
from pathlib import Path

from clinlm.records import Event, Record, atomic_write_table, records_to_table

HEART_SITES = ["AV", "PV", "TV", "MV"]


def heart_states(n_beats: int = 8, period_s: float = 0.8) -> list[Event]:
    """CirCor-style segmentation: S1, systole, S2, diastole per beat."""
    out, t = [], 0.0
    for _ in range(n_beats):
        out += [Event(t, t + 0.1, "heart_state", "S1"), Event(t + 0.1, t + 0.35, "heart_state", "systole"),
                Event(t + 0.35, t + 0.45, "heart_state", "S2"), Event(t + 0.45, t + period_s, "heart_state", "diastole")]
        t += period_s
    return out


def heart(pid: str, site: str, murmur: str | None = "present", locations=("MV", "AV"), most_audible="MV",
          split="train", media_dir: Path | None = None, n: int = 0, **fields) -> Record:
    if murmur == "present":
        defaults = dict(systolic_timing="holosystolic", systolic_shape="plateau", systolic_grade=2,
                        systolic_pitch="high", systolic_quality="blowing")
        defaults.update(fields)
        fields = defaults
    stem = f"{pid}_{site}" + (f"_{n}" if n else "")
    return Record(
        record_id=f"circor/{stem}", patient_id=f"circor/{pid}", dataset="circor", modality="heart",
        media=[str((media_dir or Path("/nonexistent")) / f"{stem}.wav")], site=site, murmur=murmur,
        murmur_locations=list(locations) if murmur == "present" else [],
        murmur_most_audible=most_audible if murmur == "present" else None,
        events=heart_states(), split=split, **fields)


def lung(pid: str, site: str, cycles: list[tuple[float, float, str]], diagnosis: str | None = "copd",
         split="test", media_dir: Path | None = None, n: int = 1) -> Record:
    stem = f"{pid}_{n}b1_{site}_sc_Meditron"
    return Record(
        record_id=f"icbhi/{stem}", patient_id=f"icbhi/{pid}", dataset="icbhi", modality="lung",
        media=[str((media_dir or Path("/nonexistent")) / f"{stem}.wav")], site=site,
        crackle=any("crackle" in c[2] for c in cycles) if cycles else None,
        wheeze=any("wheeze" in c[2] for c in cycles) if cycles else None,
        diagnosis=[diagnosis] if diagnosis else [], abnormal=(diagnosis != "healthy") if diagnosis else None,
        events=[Event(a, b, "resp_cycle", label) for a, b, label in cycles], split=split)


def sprsound(pid: str, site: str, events: list[tuple[float, float, str]], record_annotation="DAS",
             split="val", media_dir: Path | None = None, age=1.5) -> Record:
    stem = f"{pid}_{age}_1_{site}_100"
    media = [str(media_dir / f"{stem}.wav")] if media_dir else []
    return Record(
        record_id=f"sprsound/{stem}", patient_id=f"sprsound/{pid}", dataset="sprsound", modality="lung",
        media=media, site=site, age_years=age,
        crackle=any("Crackle" in e[2] for e in events), wheeze=any(e[2] in ("Wheeze", "Rhonchi", "Wheeze+Crackle") for e in events),
        abnormal={"Normal": False, "Poor Quality": None}.get(record_annotation, True),
        events=[Event(a, b, "sound_event", t) for a, b, t in events],
        metadata={} if media_dir else {"missing_media": [f"/data/sprsound/{stem}.wav"]}, split=split)


def cough(pid: str, status: str | None, split="train", media_dir: Path | None = None) -> Record:
    return Record(record_id=f"coughvid/{pid}", patient_id=f"coughvid/{pid}", dataset="coughvid", modality="cough",
                  media=[str((media_dir or Path("/nonexistent")) / f"{pid}.wav")], cough_status=status, split=split)


def variety(media_dir: Path | None = None) -> list[Record]:
    """One record of each kind the bench must handle, including unknown and missing labels."""
    m = media_dir
    return [
        heart("1", "MV", media_dir=m), heart("1", "AV", media_dir=m), heart("1", "TV", media_dir=m),
        heart("2", "PV", murmur="absent", media_dir=m), heart("2", "MV", murmur="absent", media_dir=m),
        heart("3", "MV", murmur="unknown", split="val", media_dir=m),
        heart("4", "AV", locations=("AV", "PV"), most_audible="AV", split="test", media_dir=m, systolic_timing=None,
              systolic_grade=None, diastolic_timing="early", diastolic_grade=1, diastolic_shape="decrescendo"),
        heart("5", "Phc", locations=("Phc",), most_audible=None, split="test", media_dir=m),
        lung("101", "Al", [(0.1, 1.5, "crackle"), (1.5, 3.0, "normal"), (3.0, 4.2, "crackle+wheeze")], media_dir=m),
        lung("101", "Pr", [(0.2, 1.1, "normal"), (1.1, 2.0, "normal")], media_dir=m, n=2),
        lung("102", "Tc", [(0.2, 1.1, "wheeze")], diagnosis="urti", split="train", media_dir=m),
        lung("103", "Ll", [(0.2, 1.1, "normal")], diagnosis="healthy", split="train", media_dir=m),
        lung("104", "Lr", [], diagnosis=None, split="train", media_dir=m),
        sprsound("41161556", "p1", [(1.446, 1.992, "Fine Crackle"), (3.0, 3.5, "Stridor")], media_dir=m),
        sprsound("40794666", "p2", [(2.9, 4.6, "Normal")], record_annotation="Normal", media_dir=m),
        cough("c1", "covid-19", media_dir=m), cough("c2", "healthy", media_dir=m), cough("c3", None, media_dir=m),
    ]


def random_records(n: int, seed: int = 0, media_dir: Path | None = None) -> list[Record]:
    """Many records with random label combinations (None, unknown, present, absent ...)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["heart", "lung", "spr", "cough"])
        split = rng.choice(["train", "val", "test"])
        pid = f"r{seed}_{i // 3}_{kind}"
        if kind == "heart":
            murmur = rng.choice(["present", "absent", "unknown", None])
            locs = rng.sample(HEART_SITES + ["Phc"], rng.randint(1, 3))
            fields = {}
            if murmur == "present":
                fields = {f"systolic_{k}": rng.choice(v + [None]) for k, v in
                          {"timing": ["early", "mid", "late", "holosystolic"], "shape": ["crescendo", "decrescendo", "diamond", "plateau"],
                           "grade": [1, 2, 3], "pitch": ["low", "medium", "high"], "quality": ["blowing", "harsh", "musical"]}.items()}
                if rng.random() < 0.3:
                    fields.update(diastolic_timing=rng.choice(["early", "mid"]), diastolic_grade=rng.choice([1, 2, None]),
                                  diastolic_shape="decrescendo", diastolic_pitch=None, diastolic_quality=rng.choice(["blowing", None]))
            r = heart(pid, rng.choice(HEART_SITES + ["Phc"]), murmur=murmur, locations=locs,
                      most_audible=rng.choice(locs + [None]), split=split, media_dir=media_dir, n=i, **fields)
            r.abnormal = rng.choice([True, False, None])
        elif kind == "lung":
            labels = ["normal", "crackle", "wheeze", "crackle+wheeze"]
            cycles, t = [], rng.uniform(0, 0.5)
            for _ in range(rng.randint(0, 6)):
                d = rng.uniform(0.8, 2.5)
                cycles.append((round(t, 3), round(t + d, 3), rng.choice(labels)))
                t += d
            r = lung(pid, rng.choice(["Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr"]), cycles,
                     diagnosis=rng.choice(["copd", "urti", "healthy", "asthma", "pneumonia", "bronchiectasis", None]),
                     split=split, media_dir=media_dir, n=i)
        elif kind == "spr":
            types = ["Normal", "Fine Crackle", "Coarse Crackle", "Wheeze", "Rhonchi", "Stridor", "Wheeze+Crackle"]
            evs = [(round(a, 3), round(a + 0.6, 3), rng.choice(types)) for a in sorted(rng.uniform(0, 8) for _ in range(rng.randint(1, 5)))]
            r = sprsound(f"{pid}{i}", rng.choice(["p1", "p2", "p3", "p4"]), evs, rng.choice(["Normal", "CAS", "DAS", "Poor Quality"]),
                         split=split, media_dir=media_dir, age=rng.choice([0.5, 3.0, 12.0]))
            r.record_id += f"_{i}"
        else:
            r = cough(f"{pid}{i}", rng.choice(["healthy", "symptomatic", "covid-19", None]), split=split, media_dir=media_dir)
        r.split = split
        out.append(r)
    # A patient keeps one split: the split of their first record.
    first: dict[str, str] = {}
    for r in out:
        r.split = first.setdefault(r.patient_id, r.split)
    return out


def write_records(records: list[Record], folder: Path, wav=None) -> Path:
    """records.parquet in `folder` (an ingest folder); `wav(path)` writes each media file when given."""
    if wav is not None:
        for r in records:
            for p in r.media:
                if not Path(p).exists():
                    wav(Path(p))
    atomic_write_table(records_to_table(records), Path(folder) / "records.parquet")
    return Path(folder)
