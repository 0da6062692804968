"""The WFDB record-line reader used by the heart adapters agrees with wfdb, the reference library."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinlm.sources._hea import DEFAULT_FS, HeaderError, hea_conflict, read_record_line


def test_agrees_with_wfdb_on_real_headers(shared_data: Path):
    wfdb = pytest.importorskip("wfdb")
    headers = []
    for folder in sorted(p for p in shared_data.iterdir() if p.is_dir()):
        headers += sorted(folder.rglob("*.hea"))[:8]  # a few per dataset keeps this test fast
    if not headers:
        pytest.skip("no WFDB headers in the shared data")
    assert len({h.parts[len(shared_data.parts)] for h in headers}) >= 3  # several datasets' dialects
    for hea in headers:
        reference = wfdb.rdheader(str(hea.with_suffix("")))
        fs, sig_len = read_record_line(hea)
        assert fs == pytest.approx(float(reference.fs)), hea
        assert sig_len == reference.sig_len, hea


@pytest.mark.parametrize(
    "text, expected",
    [
        ("rec 1 4000 121600\r\nrec.wav 16+44 1 16 0 0 0 0 AV\r\n", (4000.0, 121600)),
        ("# a comment first\n\nrec 2 500/1000(0) 5000 12:00:00\nrec.dat 16 1000 16 0 0 0 0 I\n", (500.0, 5000)),
        ("rec 1\n", (DEFAULT_FS, None)),  # the spec's default rate, no length
        ("rec 1 2000\n", (2000.0, None)),
    ],
)
def test_record_line_dialects(tmp_path, text, expected):
    (tmp_path / "rec.hea").write_text(text)
    assert read_record_line(tmp_path / "rec.hea") == expected


@pytest.mark.parametrize("text", ["", "# only a comment\n", "rec\n", "rec one 4000\n", "rec 1 fast 10\n", "rec 1 4000 long\n"])
def test_unreadable_headers_raise_with_the_file_name(tmp_path, text):
    (tmp_path / "bad.hea").write_text(text)
    with pytest.raises(HeaderError, match="bad.hea"):
        read_record_line(tmp_path / "bad.hea")


def test_conflicts_name_both_numbers(tmp_path):
    hea = tmp_path / "x.hea"
    hea.write_text("x 1 4000 8000\n")
    assert hea_conflict(hea, 4000, 8000) is None
    assert hea_conflict(hea, 8000, 16000) == "sample rate mismatch: x.hea says 4000 Hz but the wav header says 8000 Hz"
    assert hea_conflict(hea, 4000, 3999).startswith("length mismatch: x.hea says 8000 samples but the wav holds 3999")
