"""COUGHVID adapter on files written in the publisher's layout: webm/opus (PyAV), ogg, wav, JSON, CSV."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject
from clinlm.sources.coughvid import read

from conftest import write_wav


def write_webm(path: Path, seconds: float = 0.5, sr: int = 48000, freq: float = 300.0) -> Path:
    """A real browser-style webm/opus file: a sine encoded with libopus through PyAV."""
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    frame = 960  # 20 ms at 48 kHz, an opus frame
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=sr)
        stream.layout = "mono"
        for i in range(0, len(x), frame):
            chunk = np.pad(x[i : i + frame], (0, max(0, i + frame - len(x))))
            f = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            f.sample_rate, f.pts = sr, i
            for packet in stream.encode(f):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_ogg(path: Path, seconds: float = 0.5, sr: int = 48000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * 200 * t), sr, format="OGG", subtype="VORBIS")
    return path


U = {n: f"{n}0000000-1111-2222-3333-444455556666"[:36] for n in "abcdefgh"}
EXPERT = {"quality": "good", "cough_type": "dry", "dyspnea": "False", "wheezing": "True", "stridor": "False",
          "choking": "False", "congestion": "False", "nothing": "False", "diagnosis": "lower_infection", "severity": "mild"}
CSV_HEADER = (",uuid,datetime,cough_detected,SNR,latitude,longitude,age,gender,respiratory_condition,fever_muscle_pain,status,status_SSL,"
              + ",".join(f"{f}_{n}" for n in (1, 2, 3, 4) for f in EXPERT))


def _csv_row(i: int, uuid: str, **values: str) -> str:
    cells = [str(i), uuid] + [values.get(c, "") for c in CSV_HEADER.split(",")[2:]]
    return ",".join(cells)


@pytest.fixture()
def coughvid(tmp_path) -> Path:
    root = tmp_path / "public_dataset"
    root.mkdir()
    # a: webm + JSON with string values (as the release writes them) and one expert's labels
    write_webm(root / f"{U['a']}.webm")
    (root / f"{U['a']}.json").write_text(json.dumps({
        "datetime": "2020-04-13T21:30:59.801831+00:00", "cough_detected": "0.9609", "latitude": "46.5", "longitude": "6.6",
        "age": "34", "gender": "female", "respiratory_condition": "False", "fever_muscle_pain": "True", "status": "COVID-19",
        "expert_labels_1": EXPERT}))
    # b: ogg + JSON with native types and no status (the user gave none)
    write_ogg(root / f"{U['b']}.ogg")
    (root / f"{U['b']}.json").write_text(json.dumps({"datetime": "2020-05-01T10:00:00+00:00", "cough_detected": 0.12, "age": 60, "gender": "other"}))
    # c: corrupt webm -> reject
    (root / f"{U['c']}.webm").write_bytes(b"\x1aE\xdf\xa3 not really matroska" * 4)
    (root / f"{U['c']}.json").write_text(json.dumps({"cough_detected": "0.5", "status": "healthy"}))
    # d: JSON but no audio -> reject
    (root / f"{U['d']}.json").write_text(json.dumps({"cough_detected": "0.99", "status": "healthy"}))
    # e: wav described only in metadata_compiled.csv, with NA/nan
    write_wav(root / f"{U['e']}.wav", seconds=0.3, sr=16000)
    # f: audio only, no metadata anywhere -> unlabelled record
    write_webm(root / f"{U['f']}.webm", seconds=0.3)
    # g: unknown status and unparseable age -> None + unrecognised_labels
    write_ogg(root / f"{U['g']}.ogg")
    (root / f"{U['g']}.json").write_text(json.dumps({"cough_detected": "nan", "age": "thirty", "gender": "male", "status": "maybe"}))
    # h: an empty JSON file -> reject
    write_ogg(root / f"{U['h']}.ogg")
    (root / f"{U['h']}.json").write_text("")
    rows = [CSV_HEADER,
            _csv_row(0, U["a"], status="COVID-19", cough_detected="0.9609"),
            _csv_row(1, U["e"], cough_detected="0.8", SNR="12.5", age="NA", gender="male", status="healthy",
                     respiratory_condition="nan", fever_muscle_pain="False", status_SSL="healthy", quality_2="ok", diagnosis_2="healthy_cough", wheezing_2="False")]
    (root / "metadata_compiled.csv").write_text("\r\n".join(rows) + "\r\n", newline="")
    return root


def test_each_recording_is_a_record_or_a_reject(coughvid, tmp_path):
    items = list(read(coughvid))
    records = {i.record_id.split("/")[1]: i for i in items if isinstance(i, Record)}
    rejects = {i.record_id.split("/")[1]: i for i in items if isinstance(i, Reject)}
    assert len(records) + len(rejects) == len(items) == len(U)  # every uuid accounted for once

    a = records[U["a"]]
    assert (a.modality, a.media_format, a.sample_rate, a.patient_id) == ("cough", "webm", 48000, f"coughvid/{U['a']}")
    assert abs(a.duration_s - 0.5) < 0.05  # opus adds a little padding
    assert (a.cough_status, a.age_years, a.sex) == ("covid-19", 34.0, "female")
    assert a.metadata["cough_detected"] == pytest.approx(0.9609)
    assert a.metadata["fever_muscle_pain"] is True and a.metadata["respiratory_condition"] is False
    assert a.metadata["expert_labels"] == [{"expert": 1, **{k: (v == "True" if k in ("dyspnea", "wheezing", "stridor", "choking", "congestion", "nothing") else v) for k, v in EXPERT.items()}}]
    assert a.source_labels["status"] == "COVID-19" and a.source_labels["expert_labels_1.diagnosis"] == "lower_infection"
    assert a.source_path.endswith(".json")

    b = records[U["b"]]
    assert (b.media_format, b.sample_rate, b.cough_status, b.sex, b.age_years) == ("ogg", 48000, None, None, 60.0)
    assert b.metadata["gender"] == "other" and "unrecognised_labels" not in b.metadata

    e = records[U["e"]]  # from the CSV only
    assert (e.media_format, e.sample_rate, e.cough_status, e.age_years, e.sex) == ("wav", 16000, "healthy", None, "male")
    assert e.metadata["snr"] == 12.5 and e.metadata["status_ssl"] == "healthy" and "respiratory_condition" not in e.metadata
    assert e.metadata["expert_labels"] == [{"expert": 2, "quality": "ok", "diagnosis": "healthy_cough", "wheezing": False}]

    assert records[U["f"]].metadata == {"missing_metadata": True} and records[U["f"]].cough_status is None
    g = records[U["g"]]
    assert g.cough_status is None and g.age_years is None and "cough_detected" not in g.metadata
    assert g.metadata["unrecognised_labels"] == {"age": ["thirty"], "status": ["maybe"]}

    assert "audio unreadable" in rejects[U["c"]].reason and "webm" in rejects[U["c"]].reason
    assert rejects[U["d"]].reason.startswith("metadata but no audio file")
    assert rejects[U["h"]].reason.startswith("metadata JSON unreadable")

    result = run_ingest("coughvid", coughvid, tmp_path / "out", progress=False)
    splits = defaultdict(set)
    for r in result.records:
        splits[r.patient_id].add(r.split)
    assert len(result.records) == 5 and all(len(s) == 1 and None not in s for s in splits.values())


def test_bad_csv_rows_and_duplicate_audio(tmp_path):
    root = tmp_path / "cv"
    root.mkdir()
    write_ogg(root / f"{U['a']}.ogg")
    write_webm(root / f"{U['a']}.webm")  # two files for one uuid: the webm is used, the ogg rejected
    (root / "metadata_compiled.csv").write_text(CSV_HEADER + "\n" + _csv_row(0, "") + "\n" + _csv_row(1, U["a"], status="healthy") + "\n")
    items = list(read(root))
    records = [i for i in items if isinstance(i, Record)]
    reasons = sorted(i.reason.split(":")[0] for i in items if isinstance(i, Reject))
    assert [r.media_format for r in records] == ["webm"] and records[0].cough_status == "healthy"
    assert reasons == ["metadata row without uuid", "second audio file for one recording"]


def _truncated_wav(path: Path) -> None:
    write_wav(path, seconds=0.3, sr=16000)
    path.write_bytes(path.read_bytes()[:2000])


SINGLE = [
    ("empty webm", "webm", lambda p: p.write_bytes(b""), {"status": "healthy"}, ("reject", "empty file")),
    ("truncated wav", "wav", _truncated_wav, {"status": "healthy"}, ("reject", "truncated wav")),
    ("non-audio bytes as ogg", "ogg", lambda p: p.write_bytes(b"hello, not audio" * 50), {"status": "healthy"}, ("reject", "not a readable ogg")),
    ("NA and nan values", "ogg", write_ogg, {"age": "NA", "gender": "nan", "status": "", "cough_detected": "NA", "fever_muscle_pain": "NA"},
     ("record", lambda r: (r.age_years, r.sex, r.cough_status) == (None, None, None) and "unrecognised_labels" not in r.metadata and "fever_muscle_pain" not in r.metadata)),
    ("unknown gender and flag", "webm", write_webm, {"gender": "robot", "respiratory_condition": "maybe", "status": "Healthy"},
     ("record", lambda r: r.cough_status == "healthy" and r.metadata["unrecognised_labels"] == {"gender": ["robot"], "respiratory_condition": ["maybe"]})),
]


@pytest.mark.parametrize("case,ext,make,meta,expected", SINGLE, ids=[c[0] for c in SINGLE])
def test_single_recording_cases(tmp_path, case, ext, make, meta, expected):
    uuid = U["a"]
    make(tmp_path / f"{uuid}.{ext}")
    (tmp_path / f"{uuid}.json").write_text(json.dumps(meta, indent=1).replace("\n", "\r\n"), newline="")  # CRLF JSON
    items = list(read(tmp_path))
    assert len(items) == 1, items
    kind, check = expected
    if kind == "reject":
        assert isinstance(items[0], Reject) and check in items[0].reason, items[0]
    else:
        assert isinstance(items[0], Record) and check(items[0]), items[0]
