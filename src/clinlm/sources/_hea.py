"""Cross-check a WFDB header (`.hea`) against the wav it describes.

CirCor and PhysioNet 2016 ship every wav with a WFDB header naming its sample rate and length.
The two should agree; when they do not, one of them is wrong and we cannot tell which (a wav
re-encoded at another rate, a truncated copy whose own header was rewritten), so the adapter
rejects the recording with both numbers in the reason.

Only the header's *record line* is needed (WFDB spec, https://www.physionet.org/physiotools/wag/header-5.htm):

    record_name[/n_seg] n_sig [fs[/counter_freq][(base_counter)] [sig_len [base_time [base_date]]]]

It is parsed here rather than with `wfdb.rdheader`, which builds pandas frames for every signal
line and costs ~12 ms per header: it was 60 % of the time to index a CirCor folder (2,000
headers = 25 s). `tests/sources/test_hea.py` checks this parser against `wfdb.rdheader` on every
real header in ../shared/data.
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_FS = 250.0  # Hz: the WFDB spec's value when a header names no sampling frequency
_FS = re.compile(r"(?P<fs>[0-9.eE+-]+)(?:/[0-9.eE+-]+)?(?:\([0-9.eE+-]+\))?")


class HeaderError(ValueError):
    """A .hea file whose record line cannot be parsed."""


def read_record_line(hea: Path) -> tuple[float, int | None]:
    """(sampling frequency in Hz, samples per signal or None) from a WFDB header's record line."""
    hea = Path(hea)
    try:
        text = hea.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise HeaderError(f"unreadable WFDB header {hea.name} ({exc})") from exc
    # The record line is the first line that is neither blank nor a comment (CRLF or LF).
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), None)
    if line is None:
        raise HeaderError(f"WFDB header {hea.name} has no record line")
    fields = line.split()
    try:
        int(fields[1])  # number of signals: present in every valid record line
        fs = DEFAULT_FS
        if len(fields) > 2:
            match = _FS.fullmatch(fields[2])
            if match is None:
                raise ValueError(f"sampling frequency {fields[2]!r}")
            fs = float(match["fs"])
        sig_len = int(fields[3]) if len(fields) > 3 else None
    except (IndexError, ValueError) as exc:
        raise HeaderError(f"unreadable WFDB header {hea.name}: record line {line!r} ({exc})") from exc
    return fs, sig_len


def hea_conflict(hea: Path, sample_rate: float, num_frames: int) -> str | None:
    """The reason the .hea disagrees with the wav header (its rate in Hz and its length in
    samples), or None when they agree.

    Raises HeaderError when the .hea cannot be parsed (the adapter decides what that means).
    """
    fs, sig_len = read_record_line(hea)
    if abs(fs - sample_rate) > 1e-6:
        return f"sample rate mismatch: {Path(hea).name} says {fs:g} Hz but the wav header says {sample_rate:g} Hz"
    if sig_len is not None and sig_len != num_frames:
        return (
            f"length mismatch: {Path(hea).name} says {sig_len} samples but the wav holds "
            f"{num_frames} (a truncated or re-encoded copy?)"
        )
    return None
