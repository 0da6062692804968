"""Reports from record metadata: they state only what the labels support, unknown stays unknown."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from align_fixtures import toy_recs  # noqa: F401  (pytest fixture)
from typer.testing import CliRunner

from clinlm.align.reports import build_reports, llm_problems, read_reports, report_answer, template_report
from clinlm.bench.facts import check_consistency, extract_facts
from clinlm.cli import app
from clinlm.records import Record, iter_records


def heart(**kw) -> Record:
    base = dict(record_id="circor/1_AV", patient_id="circor/1", dataset="circor", modality="heart", media=["/x.wav"],
                site="AV", sex="female", age_group="Child")
    return Record(**{**base, **kw})


def lung(**kw) -> Record:
    base = dict(record_id="icbhi/2_1b1_Al_sc_Meditron", patient_id="icbhi/2", dataset="icbhi", modality="lung",
                media=["/y.wav"], site="Al", age_years=70.0, sex="male", device="Meditron")
    return Record(**{**base, **kw})


def report(record: Record) -> tuple[str, dict]:
    answer = report_answer(record)
    return template_report(record, answer), answer


def test_unknown_murmur_is_said_to_be_undeterminable_never_asserted():
    text, answer = report(heart(murmur="unknown"))
    facts = extract_facts(text)
    assert "cannot be determined" in text
    assert set(facts["mentions"].get("murmur", [])) == {"unknown"}
    assert not check_consistency(text, answer, "reporting")


@pytest.mark.parametrize("record", [heart(murmur=None, abnormal=None), lung(crackle=None, wheeze=None)], ids=["heart", "lung"])
def test_no_label_means_no_finding_stated_and_no_verdict(record):
    text, answer = report(record)
    facts = extract_facts(text)
    stated = {k: v for k, vs in facts["mentions"].items() for v in vs if v != "unknown"}
    assert stated == {}, text  # nothing stated present or absent
    assert "normal" not in text.lower()  # no verdict without an abnormal label
    assert facts["diagnoses"] == []


def test_heart_report_never_mentions_lung_sounds_and_lung_report_no_murmur():
    h, _ = report(heart(murmur="absent", abnormal=False))
    l, _ = report(lung(crackle=True, wheeze=False, diagnosis=["COPD"], abnormal=True))
    assert not {"crackle", "wheeze"} & set(extract_facts(h)["mentions"])
    assert "murmur" not in extract_facts(l)["mentions"]
    assert extract_facts(l)["findings"] == {"crackle": "yes", "wheeze": "no", "abnormal": "yes"}
    assert extract_facts(l)["diagnoses"] == ["copd"]


def test_murmur_descriptors_only_as_labelled():
    rec = heart(murmur="present", murmur_locations=["AV", "PV"], murmur_most_audible="AV", systolic_timing="Holosystolic",
                systolic_grade=3, systolic_shape=None, systolic_pitch="High", systolic_quality=None)
    text, answer = report(rec)
    facts = extract_facts(text)
    assert facts["timing"]["systolic"] == "holosystolic" and facts["grade"]["systolic"] == 3
    assert facts["pitch"]["systolic"] == "high"
    assert facts["shape"]["systolic"] is None and facts["quality"]["systolic"] is None  # unknown: not stated
    assert facts["most_audible"] == "aortic" and "pulmonic" in facts["sites"]
    assert not check_consistency(text, answer, "reporting")


def _all_consistent(folders, out):
    summary = build_reports(folders, out)
    reports = read_reports(out)
    records = [r for folder in folders for r in iter_records(folder)]
    assert summary["reports"] == len(records) == len(reports)
    for r in records:
        assert not check_consistency(reports[r.record_id], report_answer(r), "reporting"), reports[r.record_id]
    return reports


def test_every_toy_record_gets_a_consistent_report(toy_recs, tmp_path):
    _all_consistent(list(toy_recs.values()), tmp_path / "rep")


@pytest.mark.shared_data
def test_every_real_circor_and_icbhi_record_gets_a_consistent_report(shared_data, tmp_path):
    from clinlm.ingest import run_ingest

    run_ingest("circor", shared_data / "circor_physionet2022", tmp_path / "circor", progress=False)
    run_ingest("icbhi", shared_data / "icbhi2017_respiratory", tmp_path / "icbhi", progress=False)
    reports = _all_consistent([tmp_path / "circor", tmp_path / "icbhi"], tmp_path / "rep")
    assert any("cannot be determined" in t for t in reports.values())  # CirCor's Murmur: Unknown patients


class _FakeLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint: a faithful rewrite for heart drafts, an invented crackle otherwise."""

    calls = 0

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        draft = body["messages"][-1]["content"].split("Draft report: ", 1)[1]
        text = draft if draft.startswith("Heart") else draft + " Fine crackles are heard at 7.25 seconds."
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Rewritten. " + text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_llm_reports_are_checked_and_cached(toy_recs, tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _FakeLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        s1 = build_reports([toy_recs["icbhi"], toy_recs["circor"]], tmp_path / "rep", llm_url=url, llm_model="fake")
        calls = _FakeLLM.calls
        s2 = build_reports([toy_recs["icbhi"], toy_recs["circor"]], tmp_path / "rep", llm_url=url, llm_model="fake")
    finally:
        server.shutdown()
    n_heart = s1["by_modality_and_source"]["heart"]["llm"]
    assert n_heart == sum(1 for _ in iter_records(toy_recs["circor"]))  # faithful rewrites accepted
    assert s1["by_modality_and_source"]["lung"] == {"template": sum(1 for _ in iter_records(toy_recs["icbhi"]))}
    assert s1["llm"]["rejected"] == s1["by_modality_and_source"]["lung"]["template"]
    assert _FakeLLM.calls == calls and s2["llm"]["calls"] == 0  # the second run asked nothing
    assert s2["llm"]["cached"] == s2["reports"] and s2["by_modality_and_source"] == s1["by_modality_and_source"]
    rows = [json.loads(x) for x in (tmp_path / "rep" / "reports.jsonl").read_text().splitlines()]
    assert all(r["text"].startswith("Rewritten.") == (r["source"] == "llm") for r in rows)


def test_llm_problems_catches_invented_numbers():
    rec = heart(murmur="absent", abnormal=False, age_years=4.0, age_group=None)
    text, answer = report(rec)
    assert llm_problems(text, text, answer) == []
    assert any("numbers" in p for p in llm_problems(text.replace("4 years", "7 years"), text, answer))


def test_cli_reports(toy_recs, tmp_path):
    res = CliRunner().invoke(app, ["reports", str(toy_recs["circor"]), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "reports.jsonl").exists()
    res = CliRunner().invoke(app, ["reports", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "clinlm ingest" in " ".join(res.output.split())  # rich wraps long lines
