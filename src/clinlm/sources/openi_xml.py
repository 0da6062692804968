"""`openi-xml`: the original OpenI / Indiana University chest X-ray reports, one XML file per study.

Layout (NLM's `NLMCXR_reports.tgz`, unpacked): `ecgen-radiology/1.xml ... 3955.xml`, each an
`<eCitation>` document with
- `<IUXRId id="1"/>` (the study number; also `<uId id="CXR1"/>`),
- `<MedlineCitation>...<Abstract><AbstractText Label="COMPARISON|INDICATION|FINDINGS|IMPRESSION">`,
- `<MeSH><major>Cardiomegaly/borderline</major>...<automatic>...</automatic></MeSH>`,
- `<parentImage id="CXR1_1_IM-0001-3001">` per image (the PNG is `<id>.png`) with a `<caption>`.

`root` may be the `ecgen-radiology` folder or any folder above it; every `*.xml` below is read.
Ids match `openi-csv` ("openi/<IUXRId>"), and, as there, IU has no patient ids: one "patient"
per study, so splits are by study. A file that is not well-formed XML is a Reject, never a crash.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

from clinlm.records import Record, Reject
from clinlm.sources.reports import clean_section, mesh_labels, report_record

DATASET = "openi"
_SECTIONS = ("FINDINGS", "IMPRESSION", "INDICATION", "COMPARISON")


def _study_id(doc: ET.Element, path: Path) -> str:
    """IUXRId, else the number in uId ("CXR12" -> "12"), else the file name ("12.xml" -> "12")."""
    node = doc.find(".//IUXRId")
    if node is not None and (node.get("id") or "").strip():
        return node.get("id").strip()
    node = doc.find(".//uId")
    if node is not None and (node.get("id") or "").strip():
        return re.sub(r"^CXR", "", node.get("id").strip())
    return path.stem


def _texts(doc: ET.Element, xpath: str) -> list[str]:
    return [t for t in (clean_section("".join(n.itertext())) for n in doc.findall(xpath)) if t]


def _sort_key(path: Path) -> tuple:
    # 2.xml before 10.xml: numeric stems in numeric order, others after, by name.
    return (0, int(path.stem), str(path)) if path.stem.isdigit() else (1, 0, str(path))


def read(root: Path) -> Iterator[Record | Reject]:
    """Yield one Record per study XML with findings and impression, one Reject per other file."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.rglob("*.xml"), key=_sort_key)
    if not files:
        raise FileNotFoundError(
            f"no .xml reports under {root}: `openi-xml` reads NLM's ecgen-radiology/*.xml; "
            "for the Kaggle indiana_reports.csv use `openi-csv`"
        )
    for path in files:
        try:
            doc = ET.parse(path).getroot()
        except ET.ParseError as exc:
            yield Reject(DATASET, str(path), f"not well-formed XML: {exc}")
            continue
        sections: dict[str, str | None] = {}
        for node in doc.iter("AbstractText"):
            label = (node.get("Label") or "").strip().upper()
            if label in _SECTIONS and not sections.get(label):
                sections[label] = clean_section("".join(node.itertext()))
        if not sections and doc.find(".//Abstract") is None:
            yield Reject(DATASET, str(path), "no <Abstract> with AbstractText sections: not an OpenI report XML")
            continue
        majors = _texts(doc, ".//MeSH/major")
        diagnosis, abnormal = mesh_labels(majors)
        images = doc.findall(".//parentImage")
        study = _study_id(doc, path)
        yield report_record(
            dataset=DATASET,
            study_id=study,
            patient_id=f"{DATASET}/{study}",  # no patient ids in IU: one "patient" per study
            source_path=str(path),
            findings=sections.get("FINDINGS"),
            impression=sections.get("IMPRESSION"),
            indication=sections.get("INDICATION"),
            comparison=sections.get("COMPARISON"),
            diagnosis=diagnosis,
            abnormal=abnormal,
            source_labels={
                "MeSH": ";".join(majors),
                "Problems": ";".join(t.split("/")[0].strip() for t in majors),
                "MeSH_automatic": ";".join(_texts(doc, ".//MeSH/automatic")),
            },
            metadata={
                "study_uid": study,
                "images": [f"{im.get('id')}.png" for im in images if im.get("id")],
                "image_captions": [clean_section("".join(c.itertext())) or "" for im in images for c in im.findall("caption")[:1]],
            },
        )
