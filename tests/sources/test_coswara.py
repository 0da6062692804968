"""Coswara adapter: the real combined_data.csv (no audio) and a tiny tree with wavs in its layout."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject
from clinlm.sources.coswara import NOT_LISTED, read

from conftest import write_wav

ALL_KINDS = ("cough-heavy", "cough-shallow", "breathing-deep", "breathing-shallow", "counting-normal",
             "counting-fast", "vowel-a", "vowel-e", "vowel-o")


def _split(items):
    records = [i for i in items if isinstance(i, Record)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(records) + len(rejects) == len(items)
    return records, rejects


@pytest.mark.shared_data
def test_real_metadata_without_audio_rejects_every_listed_participant(shared_data):
    root = shared_data / "coswara_metadata_only"
    with (root / "combined_data.csv").open(newline="") as fh:
        participants = {row["id"] for row in csv.DictReader(fh)}
    records, rejects = _split(list(read(root)))
    assert records == []
    assert len(rejects) == len(participants) == 2746
    assert {r.record_id for r in rejects} == {f"coswara/{p}" for p in participants}
    assert all(r.reason.startswith(NOT_LISTED) for r in rejects)


CSV = (
    "id,a,covid_status,record_date,ep,g,l_c,l_l,l_s,rU,smoker,cold,ht,diabetes,cough,fever,test_status,asthma,cld\r\n"
    "P1,28,positive_mild,2020-04-23,y,male,India,Bengaluru,Karnataka,n,y,True,,,True,True,p,,\r\n"
    "P2,NA,healthy,2020-04-20,y,female,India,,Kerala,n,False,,True,,,,n,True,\r\n"
    "P3,41,under_validation,2020-04-21,y,other,India,,Goa,n,,,,,,,ut,,True\r\n"
    "P4,33,no_resp_illness_exposed,2020-04-21,y,male,India,,Goa,n,,,,,,,na,,\r\n"
    "P5,nan,mystery_status,2020-04-21,y,X,India,,Goa,n,,,,,,,,,\r\n"
)


@pytest.fixture()
def coswara(tmp_path) -> Path:
    root = tmp_path / "Coswara-Data"
    date = root / "Extracted_data" / "20200424"
    for pid in ("P1", "P2", "P5", "P9"):  # P9 has recordings but no metadata row
        for kind in ALL_KINDS:
            write_wav(date / pid / f"{kind}.wav", seconds=0.1, sr=16000)
    (date / "P2" / "cough-heavy.wav").write_bytes(b"")  # empty file -> reject
    (date / "P5" / "cough-shallow.wav").write_bytes((date / "P5" / "cough-shallow.wav").read_bytes()[:600])  # truncated
    write_wav(date / "P1" / "laugh.wav", seconds=0.1, sr=16000)  # not a Coswara kind -> reject
    (date / "P6").mkdir()  # a participant folder with nothing in it -> reject
    (root / "combined_data.csv").write_text(CSV, newline="")  # P3, P4 have no folder -> rejects
    return root


def test_tiny_tree_reads_coughs_and_accounts_for_every_participant(coswara, tmp_path):
    records, rejects = _split(list(read(coswara)))
    by = {r.record_id: r for r in records}
    assert sorted(by) == ["coswara/P1/cough-heavy", "coswara/P1/cough-shallow", "coswara/P2/cough-shallow",
                          "coswara/P5/cough-heavy", "coswara/P9/cough-heavy", "coswara/P9/cough-shallow"]
    p1 = by["coswara/P1/cough-heavy"]
    assert (p1.modality, p1.patient_id, p1.sample_rate, p1.num_frames) == ("cough", "coswara/P1", 16000, 1600)
    assert (p1.cough_status, p1.age_years, p1.sex) == ("covid-19", 28.0, "male")
    assert p1.metadata["covid_severity"] == "mild" and p1.metadata["smoker"] is True
    assert p1.metadata["symptoms"] == ["cough", "cold", "fever"] and "conditions" not in p1.metadata
    assert p1.source_labels["covid_status"] == "positive_mild"
    p2 = by["coswara/P2/cough-shallow"]
    assert (p2.cough_status, p2.age_years, p2.sex, p2.metadata["smoker"]) == ("healthy", None, "female", False)
    assert p2.metadata["conditions"] == ["asthma", "hypertension"]
    p5 = by["coswara/P5/cough-heavy"]
    assert p5.cough_status is None and p5.sex is None and p5.age_years is None
    assert p5.metadata["unrecognised_labels"] == {"g": ["X"], "covid_status": ["mystery_status"]}
    assert by["coswara/P9/cough-heavy"].metadata["missing_metadata"] is True

    reasons = Counter(r.reason.split(":")[0] for r in rejects)
    assert reasons == {NOT_LISTED: 2, "audio unreadable": 2, "not a Coswara recording name": 1,
                       "participant folder has none of the requested recordings": 1}
    assert {r.record_id for r in rejects if r.reason.startswith(NOT_LISTED)} == {"coswara/P3", "coswara/P4"}

    result = run_ingest("coswara", coswara, tmp_path / "out", progress=False)
    splits = defaultdict(set)
    for r in result.records:
        splits[r.patient_id].add(r.split)
    assert all(len(s) == 1 and None not in s for s in splits.values())


def test_breathing_is_read_as_lung_only_when_asked(coswara):
    records, _ = _split(list(read(coswara, kinds=("breathing-deep",))))
    assert {r.modality for r in records} == {"lung"}
    assert {r.record_id.split("/")[1] for r in records} == {"P1", "P2", "P5", "P9"}
    with pytest.raises(ValueError, match="kinds must be among"):
        list(read(coswara, kinds=("vowel-a",)))


def test_participant_metadata_json_and_bad_audio_bytes(tmp_path):
    folder = tmp_path / "20210406" / "Q1"
    write_wav(folder / "cough-heavy.wav", seconds=0.1, sr=48000)
    (folder / "cough-shallow.wav").write_bytes(b"this is not a wav file at all" * 10)
    # No combined_data.csv: the participant's own metadata.json gives the labels.
    (folder / "metadata.json").write_text('{"id": "Q1", "a": "52", "g": "female", "covid_status": "recovered_full", "smoker": "n"}')
    records, rejects = _split(list(read(tmp_path)))
    assert [(r.record_id, r.cough_status, r.age_years, r.sex, r.metadata["smoker"]) for r in records] == [
        ("coswara/Q1/cough-heavy", "recovered", 52.0, "female", False)]
    assert [r.reason.split(":")[0] for r in rejects] == ["audio unreadable"] and "not a readable wav" in rejects[0].reason
