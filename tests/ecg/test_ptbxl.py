"""The ptbxl adapter on the real PTB-XL sample (../shared/data/ptbxl) and on broken copies.

Expected values are computed here from the files with pandas / wfdb, independently of the adapter.
"""

from __future__ import annotations

import ast
import shutil

import numpy as np
import pandas as pd
import pytest
import wfdb

from clinlm.records import Record, Reject
from clinlm.signals.ecg import STANDARD_LEADS, load_ecg
from clinlm.sources import get_adapter
from clinlm.sources.ptbxl import read


@pytest.fixture(scope="module")
def ptbxl(shared_data):
    root = shared_data / "ptbxl"
    items = list(read(root))
    return root, [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def _expected_superclasses(codes: dict, statements: pd.DataFrame) -> set[str]:
    diag = statements[statements["diagnostic"] == 1]
    return {diag.loc[c, "diagnostic_class"] for c, lik in codes.items() if c in diag.index and lik > 0}


def test_every_row_is_a_record_with_official_fold_split(ptbxl):
    root, records, rejects = ptbxl
    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    assert rejects == []
    assert len(records) == len(db) == len({r.record_id for r in records})
    fold_split = {**{f: "train" for f in range(1, 9)}, 9: "val", 10: "test"}
    for r in records:
        row = db.loc[int(r.record_id.split("/")[1])]
        assert r.patient_id == f"ptbxl/{int(row.patient_id)}"
        assert r.split == fold_split[int(row.strat_fold)]
        assert r.sex == {0: "male", 1: "female"}[int(row.sex)]
        assert r.age_years == row.age
        assert r.metadata["report"] == row.report.strip()


def test_scp_codes_statements_and_superclasses(ptbxl):
    root, records, _ = ptbxl
    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    for r in records:
        codes = ast.literal_eval(db.loc[int(r.record_id.split("/")[1]), "scp_codes"])
        assert r.codes == list(codes) and r.code_system == "scp"
        assert r.statements == [statements.loc[c, "description"] for c in codes]
        assert set(r.superclasses) == _expected_superclasses(codes, statements)
        assert r.metadata["scp_likelihoods"] == {k: float(v) for k, v in codes.items()}
    by_id = {r.record_id: r for r in records}
    # ecg 17: AFLT 100 beats AFIB 0 for the rhythm; ecg 2: sinus bradycardia next to NORM
    assert by_id["ptbxl/00017"].rhythm == "afl"
    assert by_id["ptbxl/00002"].rhythm == "sinus bradycardia" and by_id["ptbxl/00002"].superclasses == ["NORM"]
    # a diagnostic code stated with likelihood 0 would not count; every NORM here is stated > 0
    assert sum("NORM" in r.superclasses for r in records) == sum(
        ast.literal_eval(c).get("NORM", 0) > 0 for c in db["scp_codes"]
    )


def test_header_fields_leads_gains_and_other_rate(ptbxl):
    root, records, _ = ptbxl
    for r in records[:10]:
        h = wfdb.rdheader(r.media[0])
        assert r.sample_rate == h.fs == 500 and r.num_frames == h.sig_len == 5000 and r.duration_s == 10.0
        assert r.leads == list(STANDARD_LEADS)  # PTB-XL writes AVR/AVL/AVF
        assert [c["name"] for c in r.metadata["channels"]] == h.sig_name
        assert [c["gain"] for c in r.metadata["channels"]] == h.adc_gain
        assert [c["baseline"] for c in r.metadata["channels"]] == h.baseline
        other = r.metadata["other_rate_path"]
        assert other.endswith("_lr") and wfdb.rdheader(other).fs == 100


def _small_copy(src, dst, rows: int):
    """The first `rows` rows of the database and their files at both rates (PTB-XL's own files)."""
    db = pd.read_csv(src / "ptbxl_database.csv").head(rows)
    for rel in list(db["filename_hr"]) + list(db["filename_lr"]):
        for ext in (".hea", ".dat"):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / (rel + ext), dst / (rel + ext))
    shutil.copy(src / "scp_statements.csv", dst)
    db.to_csv(dst / "ptbxl_database.csv", index=False)
    return db


def test_100_hz_option(shared_data, tmp_path):
    db = _small_copy(shared_data / "ptbxl", tmp_path, rows=4)
    items = list(read(tmp_path, sampling_rate=100))
    records = [i for i in items if isinstance(i, Record)]
    assert len(records) == len(items) == len(db)
    assert all(r.sample_rate == 100 and r.num_frames == 1000 for r in records)
    assert all("/records100/" in r.media[0] and r.metadata["other_rate_path"].endswith("_hr") for r in records)
    with pytest.raises(ValueError, match="100 and 500"):
        next(read(tmp_path, sampling_rate=250))


def test_load_ecg_matches_wfdb_and_resamples(ptbxl):
    _, records, _ = ptbxl
    r = records[1]
    x, fs, leads = load_ecg(r)
    raw = wfdb.rdrecord(r.media[0])
    assert x.dtype == np.float32 and x.shape == (12, 5000) and fs == 500 and leads == list(STANDARD_LEADS)
    np.testing.assert_allclose(x[leads.index("aVF")], raw.p_signal[:, raw.sig_name.index("AVF")], atol=1e-6)
    # Resampled to 100 Hz it matches PTB-XL's own 100 Hz copy of the same ECG.
    x100, fs100, _ = load_ecg(r, fs=100)
    low = wfdb.rdrecord(r.metadata["other_rate_path"]).p_signal[:, 1]
    assert x100.shape == (12, 1000) and fs100 == 100
    assert np.corrcoef(x100[1], low)[0, 1] > 0.95
    # A window reads only part of the record.
    part, _, _ = load_ecg(r, start_s=2.0, duration_s=1.5)
    np.testing.assert_allclose(part, x[:, 1000:1750])


def test_broken_rows_become_rejects(shared_data, tmp_path):
    db = _small_copy(shared_data / "ptbxl", tmp_path, rows=6)
    db.loc[0, "scp_codes"] = "{'NORM': 100.0"  # unparseable
    db.loc[1, "age"] = 300  # PTB-XL's de-identified age (> 89)
    (tmp_path / db.loc[2, "filename_hr"]).with_suffix(".dat").unlink()  # signal file gone
    dropped = db.loc[3, "filename_hr"]
    db = db.drop(index=3)  # a record on disk that no row names
    db.to_csv(tmp_path / "ptbxl_database.csv", index=False)
    items = list(get_adapter("ptbxl")(tmp_path))
    records = [i for i in items if isinstance(i, Record)]
    rejects = {i.record_id or i.path: i.reason for i in items if isinstance(i, Reject)}
    assert len(records) == len(db) - 2 and len(rejects) == 3
    assert "not a dict literal" in rejects["ptbxl/00001"]
    assert "signal file" in rejects["ptbxl/00003"] and "not found" in rejects["ptbxl/00003"]
    assert any(k.endswith(dropped.split("/")[-1] + ".hea") and "not named" in v for k, v in rejects.items())
    old = next(r for r in records if r.record_id == "ptbxl/00002")
    assert old.age_years is None and old.age_group == "90+"


def test_missing_database_is_one_clear_reject(tmp_path):
    items = list(read(tmp_path))
    assert len(items) == 1 and isinstance(items[0], Reject) and "ptbxl_database.csv" in items[0].reason


def test_patient_level_splits_keep_the_official_folds(ptbxl):
    from clinlm.splits import assign_splits

    _, records, _ = ptbxl
    splits = assign_splits(records, seed=0)  # what `clinlm ingest` writes
    assert all(splits[r.patient_id] == r.split for r in records)
    assert {r.split for r in records} == {"train", "val", "test"}
