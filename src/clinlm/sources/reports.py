"""Shared steps of the radiology report adapters (`openi-csv`, `openi-xml`, `mimic-cxr`).

A report becomes one `Record` with modality "report" and its sections in `findings`,
`impression`, `indication`, `comparison`. The findings -> impression task needs both of the first
two, so a report without either is a `Reject` that names the missing section(s). Section text is
only whitespace-normalised: de-identification marks (`XXXX` in OpenI, `___` in MIMIC-CXR) are kept
exactly as the publisher wrote them, so a model learns to reproduce them rather than guess.
"""

from __future__ import annotations

import re
from typing import Any

from clinlm.records import Record, Reject

_WS = re.compile(r"\s+")

# OpenI's MeSH "Problems" that are not a condition: they say the study was normal or not indexed.
_NOT_A_CONDITION = {"normal", "no indexing"}


def clean_section(text: str | None) -> str | None:
    """Collapse runs of whitespace (line breaks, CRLF, double spaces) to one space; None when empty."""
    if text is None:
        return None
    text = _WS.sub(" ", str(text)).strip()
    return text or None


def mesh_labels(major_terms: list[str]) -> tuple[list[str], bool | None]:
    """OpenI MeSH major terms -> (diagnosis names, abnormal verdict).

    A term is "Heading/qualifier/..." (e.g. "Cardiomegaly/borderline"); its heading is the
    condition, lower-cased, in first-seen order. "normal" alone -> abnormal False; "No Indexing"
    alone (or no terms) -> None (unknown); any other heading -> abnormal True.
    """
    heads: list[str] = []
    for term in major_terms:
        head = term.split("/")[0].strip().lower()
        if head and head not in heads:
            heads.append(head)
    conditions = [h for h in heads if h not in _NOT_A_CONDITION]
    if conditions:
        return conditions, True
    if "normal" in heads:
        return [], False
    return [], None


def report_record(
    *,
    dataset: str,
    study_id: str,
    patient_id: str,
    source_path: str,
    findings: str | None,
    impression: str | None,
    indication: str | None = None,
    comparison: str | None = None,
    diagnosis: list[str] | None = None,
    abnormal: bool | None = None,
    source_labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Record | Reject:
    """One report as a Record, or a Reject naming the missing findings/impression section."""
    findings, impression = clean_section(findings), clean_section(impression)
    record_id = f"{dataset}/{study_id}"
    missing = [name for name, text in (("findings", findings), ("impression", impression)) if text is None]
    if missing:
        what = " and ".join(missing)
        return Reject(
            dataset,
            source_path,
            f"missing {what} section{'s' if len(missing) > 1 else ''}: the findings -> impression task needs both",
            record_id,
        )
    return Record(
        record_id=record_id,
        patient_id=patient_id,
        dataset=dataset,
        modality="report",
        findings=findings,
        impression=impression,
        indication=clean_section(indication),
        comparison=clean_section(comparison),
        diagnosis=list(diagnosis or []),
        abnormal=abnormal,
        source_labels=dict(source_labels or {}),
        metadata=dict(metadata or {}),
        source_path=source_path,
    )
