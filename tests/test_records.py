"""The Record table: round trip, typed schema, unknown stays unknown, atomic writes."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from clinlm.records import (
    RECORD_SCHEMA,
    Event,
    Record,
    atomic_write_table,
    iter_records,
    records_to_table,
    read_records,
)


def _heart() -> Record:
    return Record(
        record_id="circor/1_AV", patient_id="circor/1", dataset="circor", modality="heart",
        media=["/x/1_AV.wav"], sample_rate=4000.0, murmur="present", murmur_locations=["AV", "MV"],
        systolic_grade=3, events=[Event(0.1, 0.2, "heart_state", "S1")],
        source_labels={"Murmur": "Present"}, metadata={"height_cm": 98.0},
    )


def test_round_trip_keeps_every_field(tmp_path):
    rec = [
        _heart(),
        Record(record_id="iu/1", patient_id="iu/1", dataset="openi", modality="report", findings="Clear lungs.", impression="Normal."),
        Record(record_id="ptbxl/1", patient_id="ptbxl/p1", dataset="ptbxl", modality="ecg", leads=["I", "II"], codes=["NORM"], superclasses=["NORM"]),
    ]
    atomic_write_table(records_to_table(rec), tmp_path / "records.parquet")
    back = read_records(tmp_path)
    assert back == rec
    assert list(iter_records(tmp_path, batch_size=1)) == rec


def test_schema_is_typed_and_unknown_stays_null(tmp_path):
    r = Record(record_id="a", patient_id="p", dataset="d", modality="lung")
    atomic_write_table(records_to_table([r]), tmp_path / "records.parquet")
    table = pq.read_table(tmp_path / "records.parquet")
    assert table.schema.equals(RECORD_SCHEMA)
    assert str(table.schema.field("systolic_grade").type) == "int64"
    row = table.to_pylist()[0]
    assert row["murmur"] is None and row["crackle"] is None and row["abnormal"] is None


def test_bad_modality_is_refused():
    with pytest.raises(ValueError, match="modality"):
        Record(record_id="a", patient_id="p", dataset="d", modality="eeg")


def test_missing_table_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="clinlm ingest"):
        read_records(tmp_path)
