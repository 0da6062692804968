"""SPRSound adapter: the 7 real JSON annotations, the BioCAS 2022 layout with wavs, ill-formed inputs."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject
from clinlm.sources.sprsound import read

from conftest import write_wav


def _split(items):
    records = [i for i in items if isinstance(i, Record)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(records) + len(rejects) == len(items)
    return records, rejects


def _one_split_per_patient(records) -> None:
    splits = defaultdict(set)
    for r in records:
        splits[r.patient_id].add(r.split)
    assert all(len(s) == 1 and None not in s for s in splits.values()), dict(splits)


@pytest.mark.shared_data
def test_real_annotations_give_sorted_events_and_the_official_split(shared_data, tmp_path):
    root = shared_data / "sprsound_annotations_only"
    files = {p.stem: p for p in root.rglob("*.json")}
    records, rejects = _split(list(read(root)))
    assert rejects == [] and len(records) == len(files) == 7
    for r in records:
        path = files[r.record_id.split("/", 1)[1]]
        raw = json.loads(path.read_text())
        want = sorted((float(e["start"]) / 1000, float(e["end"]) / 1000, e["type"]) for e in raw["event_annotation"])
        assert [(e.start_s, e.end_s, e.label) for e in r.events] == want
        assert all(a.start_s <= b.start_s for a, b in zip(r.events, r.events[1:]))
        assert r.abnormal == (raw["record_annotation"] != "Normal")
        assert r.crackle == any("Crackle" in e["type"] for e in raw["event_annotation"])
        pid, age, sex, loc, _ = path.stem.split("_")
        assert (r.patient_id, r.age_years, r.sex, r.site) == (f"sprsound/{pid}", float(age), {"0": "male", "1": "female"}[sex], loc)
        assert r.split == ("train" if "train2022" in str(path) else "test")
        assert r.media == [] and "_wav" in r.metadata["missing_media"][0]
    # Events really arrive unsorted in these files: the adapter had something to do.
    assert any(
        [float(e["start"]) for e in json.loads(p.read_text())["event_annotation"]]
        != sorted(float(e["start"]) for e in json.loads(p.read_text())["event_annotation"])
        for p in files.values()
    )
    result = run_ingest("sprsound", root, tmp_path / "out", progress=False)
    assert len(result.records) == 7
    _one_split_per_patient(result.records)


def _json(events, record="Normal") -> str:
    return json.dumps({"record_annotation": record, "event_annotation": events})


EV = [{"start": "2000", "end": "2900", "type": "Wheeze"}, {"start": "100", "end": "900", "type": "Fine Crackle"}]


def test_biocas_layout_with_wavs_reads_8khz_headers_and_keeps_patients_whole(tmp_path):
    root = tmp_path / "SPRSound" / "BioCAS2022"
    files = {
        # patient 1 is a training patient whose other visit is in the intra-subject test set
        ("train2022_json", "1_3.4_1_p2_10"): _json(EV, "CAS & DAS"),
        ("test2022_json/intra_test_json", "1_3.5_1_p1_11"): _json(EV[:1], "CAS"),
        # patient 2 is only in the inter-subject test set
        ("test2022_json/inter_test_json", "2_0.4_0_p4_12"): _json([{"start": "10", "end": "500", "type": "Normal"}]),
    }
    for (folder, stem), content in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{stem}.json").write_text(content)
        wav_folder = root / (folder.split("/")[0].replace("_json", "_wav"))
        write_wav(wav_folder / f"{stem}.wav", seconds=0.5, sr=8000)
    records, rejects = _split(list(read(root.parent)))
    assert rejects == []
    by = {r.record_id: r for r in records}
    train = by["sprsound/1_3.4_1_p2_10"]
    assert (train.sample_rate, train.num_frames) == (8000, 4000)
    assert train.media[0].endswith("train2022_wav/1_3.4_1_p2_10.wav")
    assert [e.label for e in train.events] == ["Fine Crackle", "Wheeze"] and train.crackle and train.wheeze
    intra = by["sprsound/1_3.5_1_p1_11"]
    assert intra.split == "train" and intra.metadata["official_subset"] == "intra_test"
    assert intra.media[0].endswith("test2022_wav/1_3.5_1_p1_11.wav")
    assert by["sprsound/2_0.4_0_p4_12"].split == "test" and by["sprsound/2_0.4_0_p4_12"].abnormal is False
    result = run_ingest("sprsound", root.parent, tmp_path / "out", progress=False)
    _one_split_per_patient(result.records)


STEM = "41161556_1.7_0_p1_3115"
CASES = [
    ("invalid JSON", {f"{STEM}.json": '{"record_annotation": "Normal", '}, ("reject", "not valid JSON")),
    ("missing keys", {f"{STEM}.json": json.dumps({"record_annotation": "Normal"})}, ("reject", "event_annotation")),
    ("non-numeric start", {f"{STEM}.json": _json([{"start": "abc", "end": "900", "type": "Normal"}])}, ("reject", "non-numeric")),
    ("end before start", {f"{STEM}.json": _json([{"start": "900", "end": "100", "type": "Normal"}])}, ("reject", "end after it starts")),
    ("event without type", {f"{STEM}.json": _json([{"start": "1", "end": "100"}])}, ("reject", "lacks start/end/type")),
    ("not an object", {f"{STEM}.json": "[1, 2]"}, ("reject", "not an object")),
    ("bad file name", {"recording_7.json": _json(EV)}, ("reject", "file name does not follow")),
    ("orphan wav", {f"{STEM}.wav": None}, ("reject", "no annotation .json")),
    ("truncated wav", {f"{STEM}.json": _json(EV), f"{STEM}.wav": "truncate"}, ("reject", "truncated wav")),
    ("non-audio bytes", {f"{STEM}.json": _json(EV), f"{STEM}.wav": b"RIFF but not really" * 5}, ("reject", "not a readable wav")),
    ("CRLF JSON", {f"{STEM}.json": json.dumps({"record_annotation": "DAS", "event_annotation": EV}, indent=2).replace("\n", "\r\n")},
     ("record", lambda r: r.abnormal is True and [e.label for e in r.events] == ["Fine Crackle", "Wheeze"])),
    ("poor quality", {f"{STEM}.json": _json([], "Poor Quality")}, ("record", lambda r: r.abnormal is None and r.metadata["quality"] == "poor" and r.events == [])),
    ("unknown record label", {f"{STEM}.json": _json(EV, "Squeaky")},
     ("record", lambda r: r.abnormal is None and r.source_labels["record_annotation"] == "Squeaky" and r.metadata["unrecognised_labels"] == {"record_annotation": ["Squeaky"]})),
    ("unknown event type", {f"{STEM}.json": _json([{"start": "1", "end": "200", "type": "Squawk"}, EV[0]], "CAS")},
     ("record", lambda r: r.wheeze is True and r.crackle is None and r.metadata["unrecognised_labels"] == {"event_type": ["Squawk"]} and r.events[0].label == "Squawk")),
    ("both spellings of wheeze+crackle", {f"{STEM}.json": _json([{"start": "1", "end": "200", "type": "Wheeze+Crackle"}, {"start": "300", "end": "400", "type": "Wheeze & Crackle"}], "CAS & DAS")},
     ("record", lambda r: r.crackle and r.wheeze and "unrecognised_labels" not in r.metadata)),
    ("unknown gender code", {"41161556_1.7_2_p1_3115.json": _json(EV)}, ("record", lambda r: r.sex is None and r.metadata["unrecognised_labels"] == {"gender": ["2"]})),
    ("no wav", {f"{STEM}.json": _json(EV)}, ("record", lambda r: r.media == [] and r.metadata["missing_media"][0].endswith(f"{STEM}.wav"))),
]


@pytest.mark.parametrize("case,files,expected", CASES, ids=[c[0] for c in CASES])
def test_ill_formed_inputs_give_a_reject_or_a_correct_record(tmp_path, case, files, expected):
    root = tmp_path / "sprsound"
    root.mkdir()
    for name, content in files.items():
        path = root / name
        if name.endswith(".wav") and not isinstance(content, bytes):
            write_wav(path, seconds=0.2, sr=8000)
            if content == "truncate":
                path.write_bytes(path.read_bytes()[:1000])
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, newline="")
    records, rejects = _split(list(read(root)))
    assert len(records) + len(rejects) == 1, (records, rejects)
    kind, check = expected
    if kind == "reject":
        assert not records and check in rejects[0].reason, rejects[0].reason
    else:
        assert not rejects, rejects
        assert check(records[0]), records[0]
