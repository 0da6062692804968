"""OpenI / IU chest X-ray reports: the Kaggle CSV layout (real sample) and the original XML layout."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from clinlm.ingest import run_ingest
from clinlm.records import Record, Reject, read_records, read_rejects
from clinlm.sources import get_adapter
from clinlm.sources.openi_csv import read as read_csv
from clinlm.sources.openi_xml import read as read_xml

IU = "iu_xray_openi_reports"


def _split(items):
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


@pytest.mark.shared_data
def test_csv_counts_match_the_file(shared_data: Path) -> None:
    folder = shared_data / IU
    df = pd.read_csv(folder / "indiana_reports.csv", dtype=str, keep_default_na=False)
    has_f = df["findings"].str.strip() != ""
    has_i = df["impression"].str.strip() != ""
    records, rejects = _split(list(read_csv(folder)))

    assert len(records) == int((has_f & has_i).sum())
    assert len(rejects) == int((~(has_f & has_i)).sum())
    assert len(records) + len(rejects) == len(df)
    # Each reject names what is missing, and the reasons add up to the file's own counts.
    reasons = [r.reason for r in rejects]
    assert sum(x.startswith("missing findings and impression") for x in reasons) == int((~has_f & ~has_i).sum())
    assert sum(x.startswith("missing findings section") for x in reasons) == int((~has_f & has_i).sum())
    assert sum(x.startswith("missing impression section") for x in reasons) == int((has_f & ~has_i).sum())
    assert {r.record_id for r in records} == {f"openi/{u}" for u in df.loc[has_f & has_i, "uid"]}


@pytest.mark.shared_data
def test_csv_record_fields(shared_data: Path) -> None:
    folder = shared_data / IU
    df = pd.read_csv(folder / "indiana_reports.csv", dtype=str, keep_default_na=False).set_index("uid")
    proj = pd.read_csv(folder / "indiana_projections.csv", dtype=str, keep_default_na=False)
    records = {r.record_id: r for r in read_csv(folder) if isinstance(r, Record)}

    for r in records.values():
        assert r.modality == "report" and r.dataset == "openi" and r.media == []
        assert r.patient_id == r.record_id  # IU has no patient ids: one "patient" per study
    uid = next(u for u in df.index if "XXXX" in df.loc[u, "findings"] and f"openi/{u}" in records)
    rec = records[f"openi/{uid}"]
    assert "XXXX" in rec.findings  # de-identification marks kept as they are
    assert rec.findings == " ".join(df.loc[uid, "findings"].split())
    assert rec.impression == " ".join(df.loc[uid, "impression"].split())
    assert rec.source_labels["MeSH"] == df.loc[uid, "MeSH"]
    assert rec.metadata["images"] == list(proj.loc[proj["uid"] == uid, "filename"])
    assert rec.metadata["projections"] == list(proj.loc[proj["uid"] == uid, "projection"])

    # Labels: "normal" studies are not abnormal, indexed conditions are the diagnosis.
    normal = [r for r in records.values() if r.source_labels["Problems"] == "normal"]
    assert normal and all(r.abnormal is False and r.diagnosis == [] for r in normal)
    cardio = [r for r in records.values() if "Cardiomegaly" in r.source_labels["Problems"].split(";")]
    assert cardio and all(r.abnormal is True and "cardiomegaly" in r.diagnosis for r in cardio)


def test_csv_layout_quirks(tmp_path: Path) -> None:
    rows = [
        {"uid": "7", "MeSH": "Cardiomegaly/mild;Opacity/lung", "Problems": "Cardiomegaly;Opacity", "image": "PA",
         "indication": "dyspnea", "comparison": "None.", "findings": "Heart  is\nenlarged. XXXX opacity.", "impression": "Cardiomegaly."},
        {"uid": "8", "MeSH": "normal", "Problems": "normal", "image": "PA", "indication": "", "comparison": "",
         "findings": "   ", "impression": "Normal chest."},
        {"uid": "", "MeSH": "", "Problems": "", "image": "", "indication": "", "comparison": "", "findings": "x", "impression": "y"},
    ]
    with open(tmp_path / "indiana_reports.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(tmp_path / "indiana_projections.csv", "w", newline="", encoding="utf-8") as fh:
        fh.write("uid,filename,projection\r\n7,7_IM-1-1001.dcm.png,Frontal\r\n99,99_IM-9-1001.dcm.png,Lateral\r\n")

    records, rejects = _split(list(read_csv(tmp_path)))
    assert [r.record_id for r in records] == ["openi/7"]
    r = records[0]
    assert r.findings == "Heart is enlarged. XXXX opacity."  # whitespace collapsed, XXXX kept
    assert r.diagnosis == ["cardiomegaly", "opacity"] and r.abnormal is True
    assert r.indication == "dyspnea" and r.comparison == "None."
    assert r.metadata["images"] == ["7_IM-1-1001.dcm.png"] and r.metadata["projections"] == ["Frontal"]
    reasons = sorted(x.reason for x in rejects)
    assert len(rejects) == 3
    assert any(x.startswith("missing findings section") for x in reasons)  # whitespace-only findings
    assert "row has no uid" in reasons
    assert any("no report row" in x for x in reasons)  # images of uid 99, which has no report


def test_csv_wrong_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="openi-xml"):
        list(read_csv(tmp_path))


XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{uid}"/>
   <pmcId id="{uid}"/>
   <docSource>CXR</docSource>
   <IUXRId id="{uid}"/>
   <publisher>Indiana University</publisher>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
         <Abstract>
            <AbstractText Label="COMPARISON">{comparison}</AbstractText>
            <AbstractText Label="INDICATION">{indication}</AbstractText>
            <AbstractText Label="FINDINGS">{findings}</AbstractText>
            <AbstractText Label="IMPRESSION">{impression}</AbstractText>
         </Abstract>
      </Article>
   </MedlineCitation>
   <MeSH>
{mesh}
      <automatic>heart</automatic>
   </MeSH>
   <parentImage id="CXR{uid}_1_IM-0001-3001">
      <figureId>F1</figureId>
      <caption>Xray Chest PA and Lateral</caption>
      <panel type="single"><url>/hadoop/storage/radiology/extract/CXR{uid}_1_IM-0001-3001.png</url></panel>
   </parentImage>
   <parentImage id="CXR{uid}_1_IM-0001-4001">
      <figureId>F2</figureId>
      <caption>Xray Chest PA and Lateral</caption>
   </parentImage>
</eCitation>
"""


def _write_xml(folder: Path, uid: str, findings: str, impression: str, majors=("normal",), indication="Chest pain", comparison="None.") -> Path:
    from xml.sax.saxutils import escape

    mesh = "\n".join(f"      <major>{escape(m)}</major>" for m in majors)
    path = folder / "ecgen-radiology" / f"{uid}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(XML.format(uid=uid, findings=escape(findings), impression=escape(impression), mesh=mesh,
                               indication=escape(indication), comparison=escape(comparison)), encoding="utf-8")
    return path


def test_xml_layout(tmp_path: Path) -> None:
    _write_xml(tmp_path, "1", "The cardiac silhouette is\n   normal. There are no XXXX of effusion.", "Normal chest x-XXXX.")
    _write_xml(tmp_path, "2", "Borderline cardiomegaly. Clear lungs.", "No acute findings.",
               majors=("Cardiomegaly/borderline", "Pulmonary Artery/enlarged"))
    _write_xml(tmp_path, "10", "", "No acute disease.")  # empty FINDINGS element
    _write_xml(tmp_path, "11", "Clear lungs.", "   ")  # whitespace-only IMPRESSION
    (tmp_path / "ecgen-radiology" / "12.xml").write_text("<eCitation><MeSH>", encoding="utf-8")  # truncated

    items = list(get_adapter("openi-xml")(tmp_path))
    records, rejects = _split(items)
    assert len(items) == 5  # every file accounted for
    by_id = {r.record_id: r for r in records}
    assert sorted(by_id) == ["openi/1", "openi/2"]
    one = by_id["openi/1"]
    assert one.findings == "The cardiac silhouette is normal. There are no XXXX of effusion."
    assert one.impression == "Normal chest x-XXXX." and one.indication == "Chest pain" and one.comparison == "None."
    assert one.abnormal is False and one.patient_id == "openi/1" and one.modality == "report"
    assert one.metadata["images"] == ["CXR1_1_IM-0001-3001.png", "CXR1_1_IM-0001-4001.png"]
    two = by_id["openi/2"]
    assert two.source_labels["MeSH"] == "Cardiomegaly/borderline;Pulmonary Artery/enlarged"
    assert two.source_labels["Problems"] == "Cardiomegaly;Pulmonary Artery"
    assert two.diagnosis == ["cardiomegaly", "pulmonary artery"] and two.abnormal is True
    reasons = {Path(r.path).name: r.reason for r in rejects}
    assert reasons["10.xml"].startswith("missing findings section")
    assert reasons["11.xml"].startswith("missing impression section")
    assert reasons["12.xml"].startswith("not well-formed XML")


@pytest.mark.shared_data
def test_xml_and_csv_agree_on_the_same_study(shared_data: Path, tmp_path: Path) -> None:
    """Write real CSV rows in the XML layout: both adapters must give the same record content."""
    df = pd.read_csv(shared_data / IU / "indiana_reports.csv", dtype=str, keep_default_na=False).head(40)
    for _, row in df.iterrows():
        _write_xml(tmp_path, row["uid"], row["findings"], row["impression"], majors=row["MeSH"].split(";"),
                   indication=row["indication"], comparison=row["comparison"])
    from_csv = {r.record_id: r for r in read_csv(shared_data / IU) if isinstance(r, Record)}
    xml_items = list(read_xml(tmp_path))
    from_xml = {r.record_id: r for r in xml_items if isinstance(r, Record)}
    assert len(xml_items) == len(df)
    assert from_xml and set(from_xml) <= set(from_csv)
    for rid, x in from_xml.items():
        c = from_csv[rid]
        assert (x.findings, x.impression, x.indication, x.comparison) == (c.findings, c.impression, c.indication, c.comparison)
        assert (x.diagnosis, x.abnormal, x.source_labels["MeSH"]) == (c.diagnosis, c.abnormal, c.source_labels["MeSH"])


@pytest.mark.shared_data
def test_ingest_openi_csv_splits_by_study(shared_data: Path, tmp_path: Path) -> None:
    result = run_ingest("openi-csv", shared_data / IU, tmp_path / "rec", progress=False)
    records = read_records(tmp_path / "rec")
    assert len(records) == len(result.records) and len(read_rejects(tmp_path / "rec")) == len(result.rejects)
    assert {r.split for r in records} == {"train", "val", "test"}
    assert result.summary["reject_reasons"]["missing findings section"] > 0
