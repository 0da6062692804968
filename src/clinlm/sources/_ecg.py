"""Helpers the ECG adapters share: Record fields from a WFDB header, `.atr` annotations as events,
and the shared rhythm vocabulary.

Rhythm vocabulary (`Record.rhythm` and the labels of "rhythm" events; lower-case):
- "normal" (normal sinus rhythm: PTB-XL SR, PhysioNet 2017 N, SNOMED 426783006, WFDB `(N`),
- "af" (atrial fibrillation: PTB-XL AFIB, 2017 A, SNOMED 164889003, `(AFIB`),
- "afl" (atrial flutter: AFLT, 164890007, `(AFL`),
- any other rhythm by its name ("sinus bradycardia", "sinus tachycardia", "ventricular
  tachycardia", ...), PhysioNet 2017's "other" and "noisy",
- CPSC 2021 record classes "persistent af", "paroxysmal af", "non af".
`AF_RHYTHMS` are the values that mean AF is present in the recording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinlm.records import Event
from clinlm.signals.ecg import EcgHeader, read_ecg_header

AF_RHYTHMS = frozenset({"af", "persistent af", "paroxysmal af"})
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")  # PTB-XL's five, in its order

# WFDB rhythm annotations (aux_note of a "+" annotation), from PhysioNet's MIT-BIH documentation
# (https://physionet.org/physiobank/database/html/mitdbdir/intro.htm#rhythm).
WFDB_RHYTHMS = {
    "(AB": "atrial bigeminy",
    "(AFIB": "af",
    "(AFL": "afl",
    "(B": "ventricular bigeminy",
    "(BII": "2nd degree heart block",
    "(IVR": "idioventricular rhythm",
    "(N": "normal",
    "(NOD": "nodal rhythm",
    "(P": "paced",
    "(PREX": "pre-excitation",
    "(SBR": "sinus bradycardia",
    "(SVTA": "supraventricular tachyarrhythmia",
    "(T": "ventricular trigeminy",
    "(VFL": "ventricular flutter",
    "(VT": "ventricular tachycardia",
}


def ecg_fields(path: str | Path, aliases: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any], EcgHeader]:
    """Record fields and metadata for one WFDB record, from its header only.

    Returns (fields for `Record(**fields)`, metadata entries, the parsed header). `num_channels`
    counts ECG leads (what `load_ecg` returns); channels in other units (pleth, resp) are listed
    in `metadata["other_channels"]`. Every channel's name, units as written, ADC gain (units per
    mV), baseline (ADC value of 0) and storage format are kept in `metadata["channels"]`.
    Raises `clinlm.signals.ecg.EcgError` when the record cannot be used.
    """
    h = read_ecg_header(path, aliases)
    base = Path(path).resolve()
    base = base.with_suffix("") if base.suffix.lower() in {".hea", ".dat", ".mat"} else base
    fields = {
        "media": [str(base)],
        "media_format": h.media_format,
        "sample_rate": h.fs,
        "num_frames": h.num_samples,
        "duration_s": round(h.duration_s, 6),
        "num_channels": len(h.leads),
        "leads": list(h.leads),
    }
    metadata: dict[str, Any] = {
        "channels": [{k: c[k] for k in ("name", "lead", "units", "gain", "baseline", "fmt")} for c in h.channels],
    }
    if aliases:
        metadata["lead_aliases"] = dict(aliases)
    other = [c["name"] for c in h.channels if c["lead"] is None]
    if other:
        metadata["other_channels"] = other
    return fields, metadata, h


def _clean_note(note: Any) -> str:
    # MIT-BIH pads aux notes with NUL ("(N\x00"); CPSC 2021 writes the text "None" into the aux
    # field of every beat (a Python None written as text): both mean "no note".
    note = str(note or "").replace("\x00", "").strip()
    return "" if note == "None" else note


def annotation_events(
    path: str | Path, fs: float, num_samples: int, extension: str = "atr"
) -> tuple[list[Event], dict[str, Any]]:
    """Beat and rhythm events from a WFDB annotation file (`<record>.<extension>`).

    - each QRS annotation (wfdb's `is_qrs` table: N, V, A, L, R, ...) -> Event kind "beat",
      start_s = end_s = the annotation time, label the beat symbol;
    - each rhythm annotation (aux_note starting with "(", e.g. "(AFIB") opens an interval that
      runs to the next rhythm annotation or to the end of the record -> Event kind "rhythm",
      label from `WFDB_RHYTHMS` (an unknown note keeps its text without the bracket). A rhythm
      annotation on the record's last sample only closes the previous interval (CPSC 2021 ends
      every AF episode that reaches the end with "(N" there).
    Returns (events sorted by time, summary counts for metadata). Raises OSError/ValueError from
    wfdb when the file is unreadable (the adapter decides what that means).
    """
    import wfdb
    from wfdb.io.annotation import is_qrs

    base = str(Path(path).with_suffix("") if Path(path).suffix.lower() in {".hea", ".dat", ".mat"} else path)
    ann = wfdb.rdann(base, extension, return_label_elements=["symbol", "label_store"])
    if ann.fs and abs(float(ann.fs) - fs) > 1e-6:
        raise ValueError(f"annotation sampling rate {ann.fs} Hz differs from the record's {fs} Hz")
    events: list[Event] = []
    rhythm_marks: list[tuple[int, str]] = []
    other: dict[str, int] = {}
    notes = ann.aux_note or [""] * len(ann.sample)
    for sample, symbol, store, note in zip(ann.sample, ann.symbol, ann.label_store, notes):
        sample, note = int(sample), _clean_note(note)
        if note.startswith("("):  # usually on a "+" (rhythm change) annotation, sometimes on a beat
            rhythm_marks.append((sample, note))
        if is_qrs[int(store)]:
            events.append(Event(sample / fs, sample / fs, "beat", symbol))
        elif not note.startswith("("):
            other[symbol] = other.get(symbol, 0) + 1
    for i, (sample, note) in enumerate(rhythm_marks):
        if sample >= num_samples - 1:
            continue  # a closing mark on the last sample
        end = rhythm_marks[i + 1][0] if i + 1 < len(rhythm_marks) else num_samples
        label = WFDB_RHYTHMS.get(note, note.lstrip("(").lower())
        events.append(Event(sample / fs, min(end, num_samples) / fs, "rhythm", label))
    events.sort(key=lambda e: (e.start_s, e.kind))
    summary = {
        "beats": sum(e.kind == "beat" for e in events),
        "rhythm_intervals": sum(e.kind == "rhythm" for e in events),
    }
    if other:
        summary["other_annotations"] = dict(sorted(other.items()))
    return events, summary
