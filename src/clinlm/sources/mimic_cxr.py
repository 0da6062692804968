"""`mimic-cxr`: MIMIC-CXR free-text reports, `files/pXX/pXXXXXXX/sNNNNNNNN.txt`.

Each `.txt` is one study's report, free text with upper-case headings at the start of a line:

    FINAL REPORT
    EXAMINATION:  CHEST (PA AND LAT)
    INDICATION:  ___F with new onset ascites  // eval for infection
    COMPARISON:  None.
    FINDINGS:
    There is no focal consolidation, pleural effusion or pneumothorax. ...
    IMPRESSION:
    No acute cardiopulmonary process.

The text is cut at every heading (`NAME:` opening a line) and each heading is normalised the way
MIT-LCP's section parser for this corpus does: "CONCLUSION", "FINDINGS AND IMPRESSION", "FINDINGS/
IMPRESSION" and misspellings are the impression, "REASON FOR EXAM"/"CLINICAL INDICATION" the
indication, "CHEST, PA AND LATERAL:"-style view headings the findings. Reports without a findings
section (common: about a third of MIMIC-CXR) or without an impression are Rejects that say so.

The patient is the `pXXXXXXXX` folder ("mimic-cxr/p10000032"), the study the file name
("mimic-cxr/s50414267"), so splits are by patient. `___` de-identification marks are kept.
Image files in the study's sibling folder (`sNNNNNNNN/*.dcm|*.jpg`, when present) are listed in
`metadata["images"]`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from clinlm.records import Record, Reject
from clinlm.sources.reports import clean_section, report_record

DATASET = "mimic-cxr"

# A heading: upper-case words (with spaces, parentheses, slashes, commas, hyphens) opening a line,
# then a colon. Lower-case text ("Heart size is normal:") never matches, nor do times ("10:30").
_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z ()/,&'-]*[A-Z)])[ \t]*:", re.MULTILINE)
_STUDY_FILE = re.compile(r"^s\d+$")
_PATIENT_DIR = re.compile(r"^p\d{3,}$")  # pXXXXXXXX; the pXX group folders above have 2 digits

# Heading (lower-case) -> section, for the names and misspellings that occur in the corpus.
_NAMES = {
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "findings and impression": "impression",
    "findings/impression": "impression",
    "findings/ impression": "impression",
    "impresson": "impression",
    "impession": "impression",
    "impresion": "impression",
    "findings": "findings",
    "finding": "findings",
    "findngs": "findings",
    "finidngs": "findings",
    "reference findings": "findings",
    "indication": "indication",
    "indications": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "clinical indication": "indication",
    "history": "history",
    "clinical history": "history",
    "clinical information": "history",
    "patient history": "history",
    "comparison": "comparison",
    "comparisons": "comparison",
    "comparison exam": "comparison",
    "comparison film": "comparison",
    "reference exam": "comparison",
    "comparision": "comparison",
    "examination": "examination",
    "exam": "examination",
    "type of examination": "examination",
    "technique": "technique",
    "wet read": "wet read",
    "notification": "notification",
    "recommendation": "recommendations",
    "recommendations": "recommendations",
    "recommendation(s)": "recommendations",
    "addendum": "addendum",
}
# Headings that describe the views taken ("CHEST, PA AND LATERAL:") introduce the findings.
_VIEW_WORDS = ("chest", "portable", "pa and lat", "ap and lat", "lateral and", "frontal", "two views", "one view", "view")
_COMBINED = {"findings and impression", "findings/impression", "findings/ impression"}


def section_name(heading: str) -> str:
    """Normalise one heading ("CONCLUSION" -> "impression"); unknown headings are lower-cased."""
    name = " ".join(heading.lower().split())
    if name in _NAMES:
        return _NAMES[name]
    for main in ("impression", "findings", "comparison", "indication", "history"):
        if main in name:
            return main
    if any(word in name for word in _VIEW_WORDS):
        return "findings"
    return name


def split_sections(text: str) -> tuple[dict[str, str], list[str]]:
    """Report text -> ({section: text}, headings as written, in order).

    Text before the first heading is the "preamble". A section that occurs twice (e.g. an empty
    FINDINGS: then a filled one) keeps the non-empty parts joined with a space.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    matches = list(_HEADING.finditer(text))
    parts: dict[str, list[str]] = {}
    headings: list[str] = []
    if not matches or text[: matches[0].start()].strip():
        parts["preamble"] = [text[: matches[0].start()] if matches else text]
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        headings.append(m.group(1))
        parts.setdefault(section_name(m.group(1)), []).append(text[m.end() : end])
    sections = {}
    for name, chunks in parts.items():
        cleaned = [c for c in (clean_section(x) for x in chunks) if c]
        if cleaned:
            sections[name] = " ".join(cleaned)
    return sections, headings


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per report with findings and impression, one Reject per other report file."""
    root = Path(root)
    files = sorted(p for p in root.rglob("s*.txt") if _STUDY_FILE.match(p.stem))
    if not files:
        raise FileNotFoundError(
            f"no sNNNNNNNN.txt reports under {root}: `mimic-cxr` reads the files/pXX/pXXXXXXXX/sNNNNNNNN.txt "
            "tree of mimic-cxr-reports"
        )
    for path in files:
        if not _PATIENT_DIR.match(path.parent.name):
            yield Reject(DATASET, str(path), f"not in the files/pXX/pXXXXXXXX/sNNNNNNNN.txt layout: parent folder {path.parent.name!r} is not a patient folder")
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            yield Reject(DATASET, str(path), f"cannot read report: {exc}")
            continue
        sections, headings = split_sections(text)
        patient, study = path.parent.name, path.stem
        if "findings" not in sections and any(" ".join(h.lower().split()) in _COMBINED for h in headings):
            yield Reject(
                DATASET,
                str(path),
                "missing findings section: findings and impression are written as one combined section, "
                "which gives no separate input and target",
                f"{DATASET}/{study}",
            )
            continue
        image_dir = path.with_suffix("")
        images = sorted(p.name for p in image_dir.iterdir() if p.is_file()) if image_dir.is_dir() else []
        yield report_record(
            dataset=DATASET,
            study_id=study,
            patient_id=f"{DATASET}/{patient}",
            source_path=str(path),
            findings=sections.get("findings"),
            impression=sections.get("impression"),
            indication=sections.get("indication") or sections.get("history"),
            comparison=sections.get("comparison"),
            source_labels={"headings": ";".join(headings)},
            metadata={
                "subject_id": patient,
                "study_id": study,
                "images": images,
                **{k: sections[k] for k in ("examination", "technique") if k in sections},
            },
        )
