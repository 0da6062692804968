"""ECGBench-style rows: labels -> answers (unknown stays unknown), MCQ options, signal vs image rows."""

from __future__ import annotations

import json
import random

import pytest
from ecg_model_toys import ecg_record, toy_ecg_records

from clinlm.bench.build import build_bench
from clinlm.bench.ecg_facts import ECG_FINDINGS, ECG_TASKS, check_ecg_consistency, extract_ecg_facts, in_group
from clinlm.bench.ecg_tasks import ecg_labels, ecg_rows
from clinlm.bench.ecg_templates import NOUN, closed_response, names_are_parseable, report_response
from clinlm.bench.validate import validate_files


def labels_of(**kw):
    base = dict(i=1, media="/x/1", rhythm=None, superclasses=[], statements=[], split="train")
    return ecg_labels(ecg_record(**{**base, **kw}))["findings"]


@pytest.mark.parametrize("record, expected", [
    # PTB-XL (SCP, complete statements): every class and statement decided, one rhythm
    (dict(rhythm="af", superclasses=["CD"], statements=["atrial fibrillation", "complete left bundle branch block"]),
     {"af": "yes", "sr": "no", "stach": "no", "cd": "yes", "norm": "no", "mi": "no", "lbbb": "yes", "rbbb": "no", "ste": "no"}),
    # no diagnostic superclass: the classes stay unknown (never "no")
    (dict(rhythm="normal", superclasses=[], statements=["sinus rhythm"]), {"sr": "yes", "af": "no", "norm": "unknown", "mi": "unknown"}),
    # PhysioNet 2017 "other rhythm": not AF, not sinus, the rest unknown; statements unknown (not annotated)
    (dict(rhythm="other", code_system="physionet2017", statements=["other rhythm"]),
     {"af": "no", "sr": "no", "afl": "unknown", "stach": "unknown", "pvc": "unknown", "norm": "unknown"}),
    # CPSC 2021 paroxysmal AF: AF present, nothing said about the rest
    (dict(rhythm="paroxysmal af", code_system=None), {"af": "yes", "sr": "unknown", "lbbb": "unknown"}),
    # PhysioNet 2021 SNOMED: pvc/lbbb/rbbb annotated for every ECG, ST changes are not
    (dict(rhythm="normal", code_system="snomed", statements=["sinus rhythm", "right bundle branch block"]),
     {"rbbb": "yes", "lbbb": "no", "pvc": "no", "ste": "unknown", "std": "unknown"}),
    # noisy / no rhythm: unknown; an incomplete RBBB is not a (complete) right bundle branch block
    (dict(rhythm="noisy", statements=["incomplete right bundle branch block"]), {"af": "unknown", "sr": "unknown", "rbbb": "no"}),
])
def test_labels_decide_only_what_the_record_says(record, expected):
    found = labels_of(**record)
    assert {k: found[k] for k in expected} == expected


def test_every_noun_phrase_is_read_back_as_its_finding():
    names_are_parseable()
    for key in ECG_FINDINGS:
        for label in ("yes", "no", "unknown"):
            for seed in range(4):
                text = closed_response(key, label, random.Random(seed))
                facts = extract_ecg_facts(text)
                assert facts["findings"].get(key) == label, (text, facts)


def _all_rows(findings_list, media="signal"):
    rows = []
    for i, f in enumerate(findings_list):
        lab = {"record_id": f"t/{i}", "patient_id": f"t/p{i}", "dataset": "t", "split": "test", "findings": f, "other_statements": ["left axis deviation"]}
        rows += [r for _, r in ecg_rows(lab, ECG_TASKS, seed=i, media=media, path=f"/x/{i}")]
    return rows


def _random_findings(rng):
    return {k: rng.choice(["yes", "no", "unknown"]) for k in ECG_FINDINGS}


def test_responses_state_only_labelled_findings_and_abstain_on_unknown():
    rng = random.Random(0)
    findings = [_random_findings(rng) for _ in range(120)]
    rows = _all_rows(findings)
    assert {r["task"] for r in rows} == set(ECG_TASKS)
    for row in rows:
        truth = row["answer"]["findings"]
        for turn, msg in enumerate(m for m in row["messages"] if m["role"] == "assistant"):
            assert check_ecg_consistency(msg["content"], row["answer"], row["task"], turn=turn) == [], msg["content"]
            facts = extract_ecg_facts(msg["content"])
            for key, said in facts["mentions"].items():
                definite = set(said) - {"unknown"}
                assert not definite or truth[key] in definite, (key, truth[key], msg["content"])
                assert truth[key] != "unknown" or not definite  # unknown stays unknown
        if row["task"] == "ecg_closed" and row["answer"]["label"] == "unknown":
            assert "cannot be determined" in row["messages"][-1]["content"] or "not possible" in row["messages"][-1]["content"]


def test_a_report_says_when_the_rhythm_and_class_are_unknown():
    f = {k: "unknown" for k in ECG_FINDINGS} | {"pvc": "yes"}
    text = report_response({"findings": f, "other_statements": ["left axis deviation"]}, random.Random(1))
    assert "rhythm cannot be determined" in text.lower() or "Rhythm: The rhythm cannot" in text
    assert "diagnostic class cannot be determined" in text.lower() and "left axis deviation" in text
    found = extract_ecg_facts(text)["findings"]
    assert {k: v for k, v in found.items() if v != "unknown"} == {"pvc": "yes"}
    assert {k for k, v in found.items() if v == "unknown"} == {"lbbb", "rbbb", "ste", "std"}  # said to be undeterminable


def test_mcq_options_come_from_the_vocabulary_and_distractors_are_labelled_absent():
    rng = random.Random(1)
    rows = [r for r in _all_rows([_random_findings(rng) for _ in range(200)]) if r["task"] == "ecg_mcq"]
    assert len(rows) > 20 and {r["answer"]["question"] for r in rows} >= {"rhythm", "class", "finding"}
    letters = set()
    for r in rows:
        a, truth = r["answer"], r["answer"]["findings"]
        group = {"rhythm": "rhythm", "class": "class", "finding": "statement"}[a["question"]]
        assert len(a["options"]) == 4 and set(a["options"]) <= set(in_group(group))
        assert truth[a["finding"]] == "yes" and a["options"]["ABCD".index(a["correct"])] == a["finding"]
        assert all(truth[o] == "no" for o in a["options"] if o != a["finding"])  # never an unknown distractor
        assert all(f"{ltr}. " in r["messages"][0]["content"] for ltr in "ABCD")
        letters.add(a["correct"])
    assert letters == set("ABCD")  # the right answer is not always in one place


def test_conversation_has_three_turns_on_one_ecg():
    rows = [r for r in _all_rows([labels_of(rhythm="af", superclasses=["CD"], statements=["complete left bundle branch block"])]) if r["task"] == "ecg_conversation"]
    (row,) = rows
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "assistant"] * 3 and row["messages"][0]["content"].count("<ecg>") == 1
    assert sum(m["content"].count("<ecg>") for m in row["messages"]) == 1 == len(row["ecgs"])
    assert "atrial fibrillation" in row["messages"][1]["content"].lower()


def test_build_signal_and_image_benches_ask_the_same_questions(tmp_path):
    rec = toy_ecg_records(tmp_path, n=6)
    sig = build_bench([rec], tmp_path / "sig", seed=0, tasks=["ecg"], workers=1)
    img = build_bench([rec], tmp_path / "img", seed=0, media="image", workers=1)  # ECG inputs: the ECG tasks by default
    assert sig["rows"] == img["rows"] > 0 and sig["tasks"] == img["tasks"] == list(ECG_TASKS)
    assert "--media image" in img["command"] and "--tasks ecg" in img["command"]
    for split in ("train", "val", "test"):
        a = [json.loads(x) for x in (tmp_path / "sig" / f"{split}.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (tmp_path / "img" / f"{split}.jsonl").read_text().splitlines()]
        assert [r["answer"] for r in a] == [r["answer"] for r in b]
        assert [r["messages"][-1]["content"] for r in a] == [r["messages"][-1]["content"] for r in b]
        assert all("<ecg>" in r["messages"][0]["content"] and r["ecgs"] for r in a)
        assert all("<image>" in r["messages"][0]["content"] and r["images"][0].endswith(".png") for r in b)
    report = validate_files([tmp_path / "sig" / f"{s}.jsonl" for s in ("train", "val", "test")]
                            + [tmp_path / "img" / f"{s}.jsonl" for s in ("train", "val", "test")])
    assert not report.errors, [str(e) for e in report.errors]
    # a rendered page keeps its settings beside it
    page = json.loads(next((tmp_path / "img" / "images").rglob("*.json")).read_text())
    assert page["paper_speed_mm_s"] == 25.0 and page["source_record_id"].startswith("toyecg/")


def test_unknown_task_and_media_are_refused(tmp_path):
    rec = toy_ecg_records(tmp_path, n=2)
    with pytest.raises(ValueError, match="--media must be one of signal, image"):
        build_bench([rec], tmp_path / "b", media="photo")
    with pytest.raises(ValueError, match="unknown task 'ecg_qa'"):
        build_bench([rec], tmp_path / "b", tasks=["ecg_qa"])


def test_noun_phrases_cover_the_vocabulary():
    assert set(NOUN) == set(ECG_FINDINGS)
