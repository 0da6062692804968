"""The cough simulator: COUGHVID layout (Opus in webm/ogg + JSON), countable coughs, status acoustics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from scipy import ndimage

from clinlm.signals.audio import load_audio
from clinlm.simulate import run_simulation
from clinlm.simulate.cough import FS_HZ, cough_wave

COUGHVID_FIELDS = [  # in COUGHVID's order; every value a string
    "datetime", "cough_detected", "latitude", "longitude", "age", "gender",
    "respiratory_condition", "fever_muscle_pain", "status",
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    run_simulation(out, patients=24, seed=0, modality="cough", workers=1, progress=False)
    return out


def truth(sim: Path) -> dict[str, dict]:
    with open(sim / "truth" / "coughvid.csv", newline="") as fh:
        return {r["uuid"]: r for r in csv.DictReader(fh)}


def count_coughs(x: np.ndarray, sr: int) -> int:
    """Bursts above 20% of the loudest 10 ms frame, joined across gaps < 150 ms, at least 60 ms long."""
    frame = int(0.01 * sr)
    e = np.sqrt(np.mean(x[: x.size // frame * frame].reshape(-1, frame) ** 2, axis=1))
    active = ndimage.binary_closing(e > 0.2 * e.max(), structure=np.ones(15))
    labels, n = ndimage.label(active)
    return int(np.sum(ndimage.sum(active, labels, range(1, n + 1)) >= 6))


def test_layout_parses_like_coughvid(sim):
    folder = sim / "coughvid"
    uuids = {p.stem for p in folder.iterdir()}
    assert len(uuids) == 24 and {p.suffix for p in folder.iterdir()} <= {".json", ".webm", ".ogg"}
    for uid in uuids:
        audio = [p for p in folder.glob(f"{uid}.*") if p.suffix != ".json"]
        assert len(audio) == 1, uid  # exactly one recording per uuid
        meta = json.loads((folder / f"{uid}.json").read_text())
        assert list(meta) == [k for k in COUGHVID_FIELDS if k in meta]
        assert {"datetime", "cough_detected"} <= set(meta) and all(isinstance(v, str) for v in meta.values())
        assert 0.0 <= float(meta["cough_detected"]) <= 1.0
        assert meta.get("status", "healthy") in ("healthy", "symptomatic", "COVID-19")
        assert meta.get("gender", "male") in ("male", "female", "other")
        assert meta.get("respiratory_condition", "False") in ("True", "False")
        # A real decoder reads each container: PyAV for webm, libsndfile for ogg/opus.
        if audio[0].suffix == ".ogg":
            info = sf.info(audio[0])
            assert (info.samplerate, info.channels, info.subtype) == (48000, 1, "OPUS")
        else:
            with av.open(str(audio[0])) as c:
                assert c.format.name.startswith("matroska") and c.streams.audio[0].codec_context.name == "opus"
        x, sr = load_audio(audio[0])
        assert sr == 48000 and x.size >= 1.5 * sr and np.abs(x).max() <= 1.0
    assert {p.suffix for p in folder.iterdir() if p.suffix != ".json"} == {".webm", ".ogg"}
    assert any(set(json.loads(p.read_text())) == {"datetime", "cough_detected"} for p in folder.glob("*.json"))


def test_coughs_are_countable(sim):
    """Each file holds as many distinct bursts as the truth says; files without a cough score low."""
    rows = truth(sim)
    assert sum(int(r["coughs"]) > 0 for r in rows.values()) >= 15
    for uid, r in rows.items():
        x, sr = load_audio(sim / "coughvid" / f"{uid}.{r['container']}")
        meta = json.loads((sim / "coughvid" / f"{uid}.json").read_text())
        if int(r["coughs"]):
            assert count_coughs(x, sr) == int(r["coughs"]), uid
            assert float(meta["cough_detected"]) > 0.3
        else:
            assert float(meta["cough_detected"]) < 0.3


def test_status_changes_the_sound():
    """Subtle but real: wet (symptomatic) coughs are darker, dry COVID-19 coughs brighter and shorter."""
    rng = np.random.default_rng(0)

    def centroid_hz(x: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(x)) ** 2
        return float((power * np.fft.rfftfreq(x.size, 1 / FS_HZ)).sum() / power.sum())

    stats = {}
    for status in ("symptomatic", "healthy", "COVID-19"):
        coughs = [cough_wave(status, bool(i % 2), FS_HZ, rng) for i in range(20)]
        stats[status] = (np.mean([centroid_hz(c) for c in coughs]), np.mean([c.size for c in coughs]) / FS_HZ)
    assert stats["symptomatic"][0] < stats["healthy"][0] < stats["COVID-19"][0]
    assert stats["COVID-19"][1] < stats["healthy"][1] < stats["symptomatic"][1]
    # ... but not trivially: the spread within a status overlaps the neighbouring mean.
    assert stats["COVID-19"][0] / stats["healthy"][0] < 1.5


def test_reported_status_matches_truth_when_given(sim):
    for uid, r in truth(sim).items():
        meta = json.loads((sim / "coughvid" / f"{uid}.json").read_text())
        assert meta.get("status", "") == r["reported_status"]
        if r["reported_status"]:
            assert r["reported_status"] == r["true_status"]


def test_same_seed_same_bytes(tmp_path):
    """Opus in webm/ogg is muxed bit-exactly: no random stream serials or segment ids."""
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        run_simulation(tmp_path / name, patients=3, seed=seed, modality="cough", workers=1, progress=False)
    files = lambda n: {p.name: p.read_bytes() for p in sorted((tmp_path / n / "coughvid").iterdir())}
    a = files("a")
    assert a == files("b") and {p for p in a if not p.endswith(".json")}
    assert set(a).isdisjoint(files("c"))  # another seed: other participants (uuids)
