"""ECG signals: WFDB headers without the samples, loading in mV in a fixed lead order, resampling.

Every ECG dataset clinlm reads is WFDB underneath: a `.hea` text header naming, per channel, the
signal file (`.dat`, or a `.mat` holding `val` for the PhysioNet 2017/2021 challenges), the
storage format, the ADC gain (units per mV), the baseline (the ADC value of 0 mV) and the units.
`wfdb` (the PhysioNet reference library) parses the header and converts to physical units
(`(adc - baseline) / gain`), so nothing here re-implements the format. What is added:

- units normalised to mV: the header's unit string is matched case-insensitively (PhysioNet 2021's
  HR records write `mv`), `uV` is scaled by 1e-3; channels in other units (`NU` pleth, resp)
  are not ECG leads and are left out of `leads`;
- lead names normalised to the fixed order `STANDARD_LEADS` (PTB-XL writes `AVR`, PTB `avr`,
  both become `aVR`): standard leads come first in that order, any other ECG channel (MIT-BIH
  `MLII`, Frank `vx`) follows in file order under its own name; an adapter may rename a channel
  (`aliases`, e.g. PhysioNet 2017's `ECG` is lead I) and records that in `Record.metadata`;
- checks a person can act on: a missing or truncated signal file, a header without a sampling
  rate or length, two channels with the same lead name; all raise `EcgError`.

`load_ecg` is what the ECG tower and the image renderer call: it returns a float32 array
`(leads, samples)` in mV, the sampling rate in Hz and the lead names, optionally resampled
(scipy polyphase) and restricted to a window. Samples WFDB marks as missing stay NaN.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_CANONICAL = {name.lower(): name for name in STANDARD_LEADS}
# Physical units a channel may be written in, and the factor that turns them into mV.
UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
# Bytes per sample of the WFDB storage formats we can size-check (format 212 packs 2 in 3 bytes).
_BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5, "310": 4 / 3, "311": 4 / 3}


class EcgError(ValueError):
    """An ECG record that cannot be used, with the reason."""


def canonical_lead(name: str) -> str:
    """The standard spelling of a lead name (`AVR`, `avr` -> `aVR`); other names unchanged."""
    return _CANONICAL.get(name.strip().lower(), name.strip())


def wfdb_base(path: str | Path) -> Path:
    """The WFDB record path without extension (`.../00001_hr` for `00001_hr.hea`/`.dat`/`.mat`)."""
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in {".hea", ".dat", ".mat"} else path


@dataclass
class EcgHeader:
    """What a WFDB header says about one ECG record (no samples read)."""

    fs: float  # Hz
    num_samples: int  # per channel
    leads: list[str]  # ECG leads: STANDARD_LEADS present, in that order, then others in file order
    channels: list[dict[str, Any]]  # every channel in file order: name, lead (None if not ECG), units, gain, baseline, fmt, file
    comments: list[str] = field(default_factory=list)
    media_format: str = "wfdb"  # "wfdb" (.dat signal files) or "mat" (challenge .mat files)

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.fs

    def lead_channel(self, lead: str) -> int:
        """Index (in file order) of the channel that holds `lead`."""
        for i, ch in enumerate(self.channels):
            if ch["lead"] == lead:
                return i
        raise EcgError(f"no lead {lead!r} in this record (it has {', '.join(self.leads)})")


def read_ecg_header(path: str | Path, aliases: dict[str, str] | None = None) -> EcgHeader:
    """Parse the `.hea` of a WFDB record (path with or without extension); read no samples.

    `aliases` renames channels before normalisation (file name -> lead name).
    Raises EcgError with the reason when the record cannot be used.
    """
    import wfdb  # imported here: ~0.5 s, only ECG code needs it

    base = wfdb_base(path)
    hea = base.with_name(base.name + ".hea")
    if not hea.exists():
        raise EcgError(f"WFDB header not found: {hea}")
    try:
        h = wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises ValueError, IndexError, ... on malformed text
        raise EcgError(f"unreadable WFDB header {hea.name} ({type(exc).__name__}: {exc})") from exc
    if not h.fs or h.fs <= 0:
        raise EcgError(f"{hea.name} gives no sampling rate")
    if not h.sig_len or h.sig_len <= 0:
        raise EcgError(f"{hea.name} gives no signal length (0 samples)")
    if not h.n_sig or not h.sig_name:
        raise EcgError(f"{hea.name} describes no signals")
    aliases = aliases or {}
    channels, seen = [], set()
    for i, name in enumerate(h.sig_name):
        units = (h.units[i] if h.units and h.units[i] else "mV").strip()  # WFDB default unit: mV
        scale = UNIT_TO_MV.get(units.lower())
        lead = canonical_lead(aliases.get(name, name)) if scale is not None else None
        if lead is not None:
            if lead in seen:
                raise EcgError(f"{hea.name} has two channels for lead {lead}")
            seen.add(lead)
        channels.append(
            {
                "name": name,
                "lead": lead,
                "units": units,
                "to_mv": scale,
                "gain": float(h.adc_gain[i]) if h.adc_gain else None,
                "baseline": int(h.baseline[i]) if h.baseline else None,
                "fmt": str(h.fmt[i]) if h.fmt else None,
                "file": h.file_name[i],
            }
        )
    if not seen:
        units = sorted({c["units"] for c in channels})
        raise EcgError(f"{hea.name} has no ECG channel in voltage units (units: {', '.join(units)})")
    _check_signal_files(base, h, hea.name)
    leads = [lead for lead in STANDARD_LEADS if lead in seen]
    leads += [c["lead"] for c in channels if c["lead"] is not None and c["lead"] not in STANDARD_LEADS]
    suffixes = {Path(c["file"]).suffix.lower() for c in channels}
    return EcgHeader(
        fs=float(h.fs),
        num_samples=int(h.sig_len),
        leads=leads,
        channels=channels,
        comments=[c.strip() for c in (h.comments or []) if c.strip()],
        media_format="mat" if suffixes == {".mat"} else "wfdb",
    )


def _check_signal_files(base: Path, h: Any, hea_name: str) -> None:
    """Every signal file the header names exists and is at least as long as the header says."""
    per_file: dict[str, list[int]] = {}
    for i, name in enumerate(h.file_name):
        per_file.setdefault(name, []).append(i)
    for name, idx in per_file.items():
        path = base.parent / name
        if not path.exists():
            raise EcgError(f"signal file {name} named by {hea_name} not found")
        fmts = {str(h.fmt[i]) for i in idx}
        if len(fmts) != 1 or next(iter(fmts)) not in _BYTES_PER_SAMPLE:
            continue  # mixed or exotic formats: leave it to wfdb when the samples are read
        offset = int((h.byte_offset or [0] * len(h.file_name))[idx[0]] or 0)
        need = offset + int(np.ceil(_BYTES_PER_SAMPLE[fmts.pop()] * len(idx) * h.sig_len))
        size = os.path.getsize(path)
        if size < need:
            raise EcgError(
                f"truncated signal file {name}: {hea_name} promises {h.sig_len} samples x {len(idx)} "
                f"channels ({need} bytes) but the file has {size} bytes"
            )


def _window(header: EcgHeader, start_s: float, duration_s: float | None) -> tuple[int, int]:
    start = round(start_s * header.fs)
    stop = header.num_samples if duration_s is None else min(header.num_samples, start + round(duration_s * header.fs))
    if start < 0 or start >= stop:
        raise EcgError(f"window start {start_s} s is outside the record ({header.duration_s:g} s)")
    return start, stop


def resample_ecg(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy; anti-aliased, exact for rational ratios)."""
    if fs_in == fs_out:
        return x
    from scipy.signal import resample_poly

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def load_ecg(
    record: Any,
    fs: float | None = None,
    leads: list[str] | tuple[str, ...] | None = None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    missing: str = "error",
) -> tuple[np.ndarray, float, list[str]]:
    """Read an ECG as float32 `(leads, samples)` in mV, its rate in Hz, and the lead names.

    `record`: a `clinlm.records.Record` (its `media[0]` is the WFDB record path; its
    `metadata["lead_aliases"]` renames channels) or a WFDB path (with or without extension).
    `fs`: resample to this rate. `leads`: return exactly these leads in this order; a lead the
    record lacks raises EcgError, or is a row of zeros when `missing="zeros"` (for a model that
    needs a fixed input, e.g. 12 leads from a 2-lead Holter). `start_s`/`duration_s`: read only
    that window (a 30-minute MIT-BIH record need not be read whole to draw 10 s).
    """
    import wfdb

    if missing not in ("error", "zeros"):
        raise ValueError(f"missing must be 'error' or 'zeros', got {missing!r}")
    aliases = None
    if hasattr(record, "media"):  # a Record
        if not record.media:
            raise EcgError(f"record {record.record_id} has no media path")
        if record.media_format not in (None, "wfdb", "mat"):
            raise EcgError(f"record {record.record_id} is a {record.media_format} file, not a WFDB signal")
        aliases = (record.metadata or {}).get("lead_aliases")
        path = record.media[0]
    else:
        path = record
    header = read_ecg_header(path, aliases)
    start, stop = _window(header, start_s, duration_s)
    idx = [header.lead_channel(lead) for lead in header.leads]
    try:
        rec = wfdb.rdrecord(str(wfdb_base(path)), sampfrom=start, sampto=stop, channels=idx, physical=True)
    except Exception as exc:
        raise EcgError(f"could not read the samples of {wfdb_base(path).name} ({type(exc).__name__}: {exc})") from exc
    # p_signal: (samples, channels) in the header's units, channels in the order of `idx`.
    scale = np.array([header.channels[i]["to_mv"] for i in idx])
    x = (rec.p_signal * scale).T.astype(np.float32)  # (leads, samples) in mV
    out_leads = list(header.leads)
    if leads is not None:
        rows = []
        for lead in leads:
            lead = canonical_lead(lead)
            if lead in out_leads:
                rows.append(x[out_leads.index(lead)])
            elif missing == "zeros":
                rows.append(np.zeros(x.shape[1], dtype=np.float32))
            else:
                raise EcgError(f"no lead {lead!r} in {wfdb_base(path).name} (it has {', '.join(out_leads)})")
        x, out_leads = np.stack(rows), [canonical_lead(lead) for lead in leads]
    rate = header.fs
    if fs is not None and fs != rate:
        x, rate = resample_ecg(x, rate, fs).astype(np.float32), float(fs)
    return x, rate, out_leads
