"""The fact parser and the consistency rule shared by the bench builder and the evaluator."""

from __future__ import annotations

import random

import pytest
from bench_records import random_records, variety

from clinlm.bench.facts import TASKS, canonical_site, check_consistency, extract_facts
from clinlm.bench.labels import record_labels
from clinlm.bench.preference import mismatch_pool, preference_row
from clinlm.bench.tasks import comparison, make_row, record_rows, row_rng

# (text, {fact path: expected}) - phrasings the templates write and ones a model might write.
EXTRACT_CASES = [
    ("Yes, a murmur is present.", {"label": "yes", "findings.murmur": "yes"}),
    ("No, there is no murmur.", {"label": "no", "findings.murmur": "no"}),
    ("No murmur is heard.", {"label": "no", "findings.murmur": "no"}),
    ("There is a murmur.", {"label": None, "findings.murmur": "yes"}),
    ("No, the recording is normal.", {"findings.abnormal": "no"}),
    ("The recording is labelled abnormal.", {"findings.abnormal": "yes"}),
    ("It is not abnormal.", {"findings.abnormal": "no"}),
    ("Whether a murmur is present cannot be determined from the available information.",
     {"label": "unknown", "unknown": True, "findings.murmur": "unknown"}),
    ("There are crackles, no wheezes.", {"findings.crackle": "yes", "findings.wheeze": "no"}),
    ("Wheezes are not heard, crackles are.", {"findings.wheeze": "no", "findings.crackle": "yes"}),
    ("No murmur, crackle or wheeze.", {"findings.murmur": "no", "findings.crackle": "no", "findings.wheeze": "no"}),
    ("No murmur, but crackles are present.", {"findings.murmur": "no", "findings.crackle": "yes"}),
    ("Crackles: absent\nWheezes: present", {"findings.crackle": "no", "findings.wheeze": "yes"}),
    ("Fine crackles (rales) are heard bilaterally.", {"findings.crackle": "yes"}),
    ("No adventitious sounds.", {"findings.crackle": "no", "findings.wheeze": "no", "findings.stridor": "no"}),
    ("A grade 2/6 holosystolic plateau murmur, high-pitched and blowing, loudest at the mitral area.",
     {"grade.systolic": 2, "timing.systolic": "holosystolic", "shape.systolic": "plateau", "pitch.systolic": "high",
      "quality.systolic": "blowing", "most_audible": "mitral", "findings.systolic murmur": "yes", "findings.murmur": "yes"}),
    ("Grade III/VI harsh crescendo-decrescendo mid-systolic murmur at the right upper sternal border.",
     {"grade.systolic": 3, "shape.systolic": "diamond", "timing.systolic": "mid", "quality.systolic": "harsh", "site": "aortic"}),
    ("An early diastolic decrescendo murmur, grade 1/4.",
     {"grade.diastolic": 1, "timing.diastolic": "early", "shape.diastolic": "decrescendo", "grade.systolic": None}),
    ("A systolic murmur and a diastolic murmur are heard.", {"findings.systolic murmur": "yes", "findings.diastolic murmur": "yes"}),
    ("No murmur (systolic or diastolic) is heard.", {"findings.murmur": "no"}),
    ("Crackles at 0.58-2.45 s and 3.89-5.79 s; wheezes at 2.45-3.89 s.",
     {"events": [{"type": "crackle", "start_s": 0.58, "end_s": 2.45}, {"type": "crackle", "start_s": 3.89, "end_s": 5.79},
                 {"type": "wheeze", "start_s": 2.45, "end_s": 3.89}], "event_types": ["crackle", "wheeze"]}),
    ("Heart rate about 86 bpm.", {"heart_rate_bpm": 86.0}),
    ("The murmur is loudest at the apex; it is also audible at the aortic area.", {"most_audible": "mitral", "sites": ["mitral", "aortic"]}),
    ("Murmur best heard at AV.", {"most_audible": "aortic"}),
    ("We have a murmur.", {"sites": []}),  # "av" inside a word is not the aortic valve code
    ("At the left posterior chest there are crackles.", {"site": "left posterior", "findings.crackle": "yes"}),
    ("The first recording has the murmur; the second does not.", {"choice": "first"}),
    ("Recording 2 has crackles, recording 1 does not.", {"choice": "second"}),
    ("Neither recording has crackles.", {"choice": "neither", "findings.crackle": "no"}),
    ("Both recordings have wheezes.", {"choice": "both"}),
    ("Ranked candidates: 1) COPD (the labelled diagnosis); 2) bronchiectasis; 3) pneumonia.",
     {"diagnoses": ["copd", "bronchiectasis", "pneumonia"]}),
    ("Most likely pulmonic stenosis, then an atrial septal defect.", {"diagnoses": ["pulmonary stenosis", "atrial septal defect"]}),
    ("Yes, this cough is labelled COVID-19 positive.", {"label": "yes", "findings.covid": "yes"}),
    ("No, this cough is labelled COVID-19 negative.", {"label": "no", "findings.covid": "no"}),
]


@pytest.mark.parametrize("text,expected", EXTRACT_CASES, ids=[c[0][:40] for c in EXTRACT_CASES])
def test_extract_facts(text, expected):
    facts = extract_facts(text)
    for path, value in expected.items():
        head, _, rest = path.partition(".")
        got = facts[head][rest] if rest else facts[head]
        assert got == value, f"{path}: {got!r} != {value!r} in {text!r}"


# (text, answer, task, expect a contradiction)
CONSISTENCY_CASES = [
    ("Yes, a murmur is present.", {"finding": "murmur", "label": "yes"}, "binary", False),
    ("Yes, a murmur is present.", {"finding": "murmur", "label": "no"}, "binary", True),
    ("No murmur is heard.", {"finding": "murmur", "label": "yes"}, "binary", True),
    ("Yes, a murmur is present.", {"finding": "murmur", "label": "unknown"}, "binary", True),
    ("This cannot be determined from the available information.", {"finding": "murmur", "label": "unknown"}, "binary", False),
    ("No, there are no crackles. A murmur is also present.", {"finding": "crackle", "label": "no"}, "binary", True),
    ("A grade 3/6 holosystolic murmur is heard.",
     {"modality": "heart", "site": "mitral", "murmur": "yes", "systolic": {"timing": "holosystolic", "shape": "unknown", "grade": 2,
      "pitch": "unknown", "quality": "unknown"}, "diastolic": None, "most_audible": "mitral", "abnormal": "unknown", "diagnosis": [],
      "heart_rate_bpm": "unknown"}, "reporting", True),
    ("A grade 2/6 holosystolic murmur is heard; it is loudest at the aortic area.",
     {"modality": "heart", "site": "mitral", "murmur": "yes", "systolic": {"timing": "holosystolic", "shape": "unknown", "grade": 2,
      "pitch": "unknown", "quality": "unknown"}, "diastolic": None, "most_audible": "mitral", "abnormal": "unknown", "diagnosis": [],
      "heart_rate_bpm": "unknown"}, "reporting", True),
    ("Heart rate about 90 bpm. No murmur.",
     {"modality": "heart", "site": "mitral", "murmur": "no", "systolic": None, "diastolic": None, "most_audible": None,
      "abnormal": "unknown", "diagnosis": [], "heart_rate_bpm": 72}, "reporting", True),
    ("Crackles occur at 0.10-1.50 s.", {"present": ["crackle"], "absent": ["wheeze"], "unknown": [], "timing": {},
     "events": [{"type": "crackle", "start_s": 0.1, "end_s": 1.5}]}, "detection", False),
    ("Crackles occur at 0.70-2.10 s.", {"present": ["crackle"], "absent": ["wheeze"], "unknown": [], "timing": {},
     "events": [{"type": "crackle", "start_s": 0.1, "end_s": 1.5}]}, "detection", True),
    ("Crackles and wheezes occur.", {"present": ["crackle"], "absent": ["wheeze"], "unknown": [], "timing": {}, "events": []},
     "detection", True),
    ("Most likely COPD, then pneumonia.", {"candidates": ["copd", "pneumonia"], "labelled": ["copd"], "findings": {}}, "differential", False),
    ("Most likely pneumonia, then COPD.", {"candidates": ["copd", "pneumonia"], "labelled": ["copd"], "findings": {}}, "differential", True),
    ("Most likely asthma.", {"candidates": [], "labelled": [], "findings": {}}, "differential", True),
    ("The second recording has crackles; the first does not.",
     {"question": "which", "finding": "crackle", "first": "no", "second": "yes", "answer": "second", "sites": ["left anterior", "right anterior"]},
     "comparison", False),
    ("The first recording has crackles; the second does not.",
     {"question": "which", "finding": "crackle", "first": "no", "second": "yes", "answer": "second", "sites": ["left anterior", "right anterior"]},
     "comparison", True),
    ("It is loudest at the mitral area.", {"question": "most_audible", "site": "mitral", "sites": ["mitral", "aortic"], "findings": {"murmur": "yes"}},
     "location", False),
    ("It is loudest at the tricuspid area.", {"question": "most_audible", "site": "mitral", "sites": ["mitral", "aortic"], "findings": {"murmur": "yes"}},
     "location", True),
    ("Yes, there is a murmur; it is loudest at the mitral area.",
     {"question": "murmur_where", "site": "mitral", "sites": ["mitral"], "findings": {"murmur": "yes"}}, "location", False),
    ("Yes, there is a murmur; it is loudest at the aortic area.",
     {"question": "murmur_where", "site": "mitral", "sites": ["mitral"], "findings": {"murmur": "yes"}}, "location", True),
    ("No murmur is heard in this recording.",
     {"question": "murmur_where", "site": "mitral", "sites": ["mitral"], "findings": {"murmur": "yes"}}, "location", True),
    ("Yes, there is a murmur, but the point where it is loudest cannot be determined from the available information.",
     {"question": "murmur_where", "site": None, "sites": [], "findings": {"murmur": "no"}}, "location", True),
    ("No, there is no murmur.", {"question": "murmur_where", "site": None, "sites": [], "findings": {"murmur": "unknown"}},
     "location", True),
    ("The labelled diagnosis is pneumonia.", {"question": "diagnosis", "conclusion": "copd", "findings": {}, "diagnosis": ["copd"]},
     "reasoning", True),
]


@pytest.mark.parametrize("text,answer,task,contradicts", CONSISTENCY_CASES, ids=[f"{c[2]}:{c[0][:30]}" for c in CONSISTENCY_CASES])
def test_check_consistency(text, answer, task, contradicts):
    problems = check_consistency(text, answer, task)
    assert bool(problems) == contradicts, problems


def test_check_consistency_rejects_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        check_consistency("Yes.", {}, "nonsense")


@pytest.mark.parametrize("code,site", [("MV", "mitral"), ("av", "aortic"), ("Phc", "other"), ("Pl", "left posterior"),
                                       ("p2", "left lateral"), ("p3", "right posterior"), ("Tc", "trachea"), ("xyz", None), (None, None)])
def test_canonical_site(code, site):
    assert canonical_site(code) == site


def _all_rows(records):
    """Every instruction row the builder makes for these records, with the labels it came from."""
    labs = []
    for r in records:
        if not r.media:
            r.media = ["/x.wav"]
        labs.append(record_labels(r))
    rows = [(i, row, [lab]) for lab in labs for i, row in record_rows(lab, TASKS, 0)]
    by_patient = {}
    for lab in labs:
        by_patient.setdefault(lab["patient_id"], []).append(lab)
    for group in by_patient.values():
        for a, b in zip(group, group[1:]):
            rows += [(i, make_row("comparison", ans, [a, b], 0, i), [a, b])
                     for i, ans in enumerate(comparison(a, b, row_rng(0, a["record_id"], b["record_id"])))]
    return rows, labs


def test_every_template_response_is_consistent_and_parses_back():
    """The honesty rule on many random label combinations, plus: the parser recovers each task's key fact."""
    rows, labs = _all_rows(random_records(400, seed=3) + variety())
    assert {row["task"] for _, row, _ in rows} == set(TASKS)
    for _, row, _ in rows:
        text, answer, task = row["messages"][-1]["content"], row["answer"], row["task"]
        assert check_consistency(text, answer, task) == [], (task, text, answer)
        facts = extract_facts(text, diagnoses=answer.get("candidates", []))
        if task == "binary":
            if answer["label"] == "unknown":
                assert facts["unknown"] and facts["label"] in (None, "unknown")
            else:
                assert (facts["findings"].get(answer["finding"]) or facts["label"]) == answer["label"], text
        elif task == "differential" and answer["candidates"]:
            assert facts["diagnoses"][: len(answer["candidates"])] == answer["candidates"], text
        elif task == "comparison":
            assert (facts["choice"] or ("unknown" if facts["unknown"] else None)) == answer["answer"], text
        elif task == "location" and answer["question"] == "most_audible" and answer["site"] != "unknown":
            assert facts["most_audible"] == answer["site"], text
        elif task == "location" and answer["question"] == "murmur_where":
            murmur = answer["findings"]["murmur"]
            said = facts["label"] if facts["label"] in ("yes", "no") else facts["findings"].get("murmur")
            assert said in ((None, "unknown") if murmur == "unknown" else (murmur,)) and facts["unknown"] == (murmur == "unknown" or (murmur == "yes" and answer["site"] == "unknown")), text
            if murmur == "yes" and answer["site"] != "unknown":
                assert facts["most_audible"] == answer["site"], text
        elif task == "detection":
            assert set(facts["event_types"]) >= {t for t in answer["present"] if t != "murmur"}, text
            shown = {(e["type"], round(e["start_s"], 2)) for e in facts["events"]}
            assert shown <= {(e["type"], round(e["start_s"], 2)) for e in answer["events"]}


def test_rejected_responses_contradict_the_answer():
    rows, labs = _all_rows(random_records(200, seed=4) + variety())
    pool = mismatch_pool(labs)
    kinds = set()
    made = 0
    for i, row, row_labs in rows:
        ids = row["record_ids"]
        pref = preference_row(row, row_labs, pool, random.Random(i), lambda: row_rng(0, *ids, row["task"], i, "response"))
        if pref is None:
            continue
        made += 1
        kinds.add(pref["rejection"]["text"])
        assert pref["chosen"][0]["content"] == row["messages"][-1]["content"]
        assert check_consistency(pref["rejected"][0]["content"], row["answer"], row["task"]), pref["rejected"]
    assert made >= 0.95 * len(rows)
    assert {"contradiction", "hallucination", "overconfident", "wrong_grade", "wrong_location"} <= kinds
