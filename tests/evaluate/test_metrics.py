"""Per-task metrics on tiny hand-computed cases; unparseable answers; the majority baseline."""

from __future__ import annotations

import pytest
from eval_fixtures import HEART_REPORT, LUNG_REPORT, binary, detection, one_of_each, row

from clinlm.evaluate.baselines import (
    UNKNOWN_TEXT,
    fit_majority,
    majority_predictions,
    render,
)
from clinlm.evaluate.metrics import HEADLINE, score_task

# The auscultation tasks these fixtures cover (the ECG tasks are tested in tests/ecg/test_ecg_eval.py).
AUSCULTATION_HEADLINE = {t: m for t, m in HEADLINE.items() if not t.startswith("ecg_")}
from clinlm.evaluate.run import score_predictions

UNKNOWN = "This cannot be determined from the available information."


def values(rows, texts, yes_probs=None, system="model"):
    out = score_predictions(rows, texts, yes_probs, system=system, n_boot=200, text_similarity=False)
    return {(r["task"], r["metric"]): r for r in out}


def test_binary_hand_computed():
    rows = [binary("yes", "a"), binary("no", "b"), binary("yes", "c"), binary("unknown", "d"), binary("no", "e")]
    texts = [
        "Yes, a murmur is present.",  # right
        "Yes, there is a murmur.",  # wrong, and contradicts the label
        "The weather is nice today.",  # unparseable: wrong
        UNKNOWN,  # right: the label is unknown
        "No murmur is heard.",  # right
    ]
    probs = [0.9, 0.8, 0.3, 0.5, 0.1]
    v = values(rows, texts, probs)
    assert v[("binary", "accuracy")]["value"] == pytest.approx(3 / 5)
    assert v[("binary", "unparseable_rate")]["value"] == pytest.approx(1 / 5)
    # F1 of yes: tp 1 (a), fp 1 (b), fn 1 (c) -> 2/(2+1+1)
    assert v[("binary", "f1")]["value"] == pytest.approx(0.5)
    # recall yes 1/2, no 1/2, unknown 1/1
    assert v[("binary", "balanced_accuracy")]["value"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    # AUROC on the 4 yes/no rows: positives .9 .3, negatives .8 .1 -> 3 of 4 pairs ordered
    assert v[("binary", "auroc")]["value"] == pytest.approx(0.75)
    assert v[("binary", "auroc")]["n"] == 4
    assert v[("binary", "contradiction_rate")]["value"] == pytest.approx(1 / 5)
    assert v[("binary", "accuracy")]["n"] == 5


def test_detection_event_f1_hand_computed():
    rows = [
        detection(["crackle"], ["wheeze"], "a"),
        detection(["crackle", "wheeze"], [], "b"),
        detection([], ["crackle", "wheeze"], "c"),
        detection([], ["crackle", "wheeze"], "d"),
        detection(["wheeze"], [], "e", unknown=["crackle"]),
    ]
    texts = [
        "Crackles are present. No wheezes are heard.",  # tp 1
        "Wheezes are present.",  # tp 1, fn 1
        "Crackles are present.",  # fp 1
        "No crackles or wheezes are heard.",  # nothing, rightly
        "Crackles are present. Wheezes are present.",  # tp 1; crackle is unknown, not scored
    ]
    v = values(rows, texts)
    assert v[("detection", "event_f1")]["value"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert v[("detection", "event_set_accuracy")]["value"] == pytest.approx(3 / 5)


def test_reporting_field_accuracy_hand_computed():
    rows = [row("reporting", HEART_REPORT, "a"), row("reporting", HEART_REPORT, "b")]
    texts = [
        render("reporting", HEART_REPORT),  # all 10 labelled fields
        # site wrong, murmur right, grade wrong, heart rate within 3 bpm; 6 fields not stated
        "Recorded at the aortic area. A systolic murmur is present, grade 3/6. Heart rate: 82 bpm.",
    ]
    v = values(rows, texts)
    assert v[("reporting", "field_accuracy")]["value"] == pytest.approx((10 + 2) / 20)


def test_differential_top1_top3_hand_computed():
    cands = {"candidates": ["copd", "pneumonia", "asthma"], "labelled": ["copd"], "findings": {"crackle": "yes"}}
    rows = [row("differential", cands, p) for p in "abc"]
    rows += [row("differential", {"candidates": [], "labelled": [], "findings": {}}, "d"), row("differential", cands, "e")]
    texts = ["1. COPD; 2. asthma.", "Most likely pneumonia, then COPD.", "Asthma, bronchitis, pneumonia or COPD.", UNKNOWN, "I have no idea."]
    v = values(rows, texts)
    assert v[("differential", "top1")]["value"] == pytest.approx(2 / 5)
    assert v[("differential", "top3")]["value"] == pytest.approx(3 / 5)
    assert v[("differential", "unparseable_rate")]["value"] == pytest.approx(1 / 5)


def test_comparison_location_reasoning_hand_computed():
    def comp(answer, p):
        return row("comparison", {"question": "which", "finding": "murmur", "first": "yes", "second": "no", "answer": answer, "sites": []}, p)

    rows = [comp("first", "a"), comp("second", "b"), comp("unknown", "c")]
    v = values(rows, ["The first recording.", "The first one.", UNKNOWN])
    assert v[("comparison", "accuracy")]["value"] == pytest.approx(2 / 3)

    most = {"question": "most_audible", "site": "mitral", "sites": ["mitral"], "findings": {"murmur": "yes"}}
    at = {"question": "at_site", "site": "trachea", "sites": ["trachea"], "findings": {"crackle": "yes", "wheeze": "no"}}
    no_murmur = {"question": "at_site", "site": "aortic", "sites": ["aortic"], "findings": {"murmur": "no"}}
    rows = [row("location", most, "a"), row("location", most, "b"), row("location", at, "c"), row("location", no_murmur, "d")]
    v = values(rows, [
        "The murmur is loudest at the mitral area.",
        "It is heard best at the aortic area.",
        "Crackles are present. No wheezes are heard.",
        "No murmur is heard. A systolic murmur is present.",  # says both: wrong, though it starts right
    ])
    assert v[("location", "accuracy")]["value"] == pytest.approx(2 / 4)
    assert v[("location", "contradiction_rate")]["value"] == pytest.approx(1 / 4)

    # "Is there a murmur, and where is it loudest?": both parts must be right.
    where = {"question": "murmur_where", "site": "mitral", "sites": ["mitral", "aortic"], "findings": {"murmur": "yes"}}
    none = {"question": "murmur_where", "site": None, "sites": [], "findings": {"murmur": "no"}}
    unsure = {"question": "murmur_where", "site": None, "sites": [], "findings": {"murmur": "unknown"}}
    rows = [row("location", where, p) for p in "abc"] + [row("location", none, p) for p in "de"] + [row("location", unsure, p) for p in "fg"]
    v = values(rows, [
        "Yes, there is a murmur; it is loudest at the mitral area.",  # right
        "Yes, there is a murmur; it is loudest at the aortic area.",  # wrong site
        "Yes, a murmur is present.",  # half an answer: no site
        "No, there is no murmur.",  # right
        "Yes, there is a murmur; it is loudest at the mitral area.",  # wrong: there is none
        UNKNOWN,  # right: the label is unknown
        "No murmur is heard.",  # wrong: the label does not say so
    ])
    assert v[("location", "accuracy")]["value"] == pytest.approx(3 / 7)

    answer = {"question": "diagnosis", "conclusion": "copd", "findings": {"crackle": "yes"}, "diagnosis": ["copd"]}
    rows = [row("reasoning", answer, "a"), row("reasoning", answer, "b")]
    v = values(rows, ["Crackles are present, which points to COPD.", "There are no crackles, so this is COPD."])
    assert v[("reasoning", "fact_consistency")]["value"] == pytest.approx(0.5)
    assert v[("reasoning", "conclusion_accuracy")]["value"] == pytest.approx(1.0)
    assert v[("reasoning", "contradiction_rate")]["value"] == pytest.approx(0.5)


def test_unparseable_answers_are_wrong_everywhere_and_counted():
    rows = [r for p in ("a", "b", "c") for r in one_of_each(p)]
    v = values(rows, ["Lorem ipsum dolor sit amet."] * len(rows), [0.5] * len(rows))
    for task, metric in AUSCULTATION_HEADLINE.items():
        assert v[(task, metric)]["value"] == 0.0, task  # fact consistency too: saying nothing is not consistent
        assert v[(task, "unparseable_rate")]["value"] == 1.0, task
    assert v[("all", "unparseable_rate")]["value"] == 1.0
    assert v[("all", "unparseable_rate")]["n"] == len(rows)
    # every binary row here is labelled yes: AUROC is undefined, reported as null, not a made-up number
    assert v[("binary", "auroc")]["value"] is None and v[("binary", "auroc")]["ci_low"] is None


ROUNDTRIP = one_of_each("a") + [
    binary("no", "b", finding="crackle"), binary("unknown", "b"), binary("yes", "b", finding="abnormal"), binary("no", "b", finding="covid"),
    detection([], ["crackle", "wheeze"], "b"),
    row("reporting", LUNG_REPORT, "b"),
    row("reasoning", {"question": "murmur", "conclusion": "no", "findings": {"murmur": "no"}, "diagnosis": []}, "b"),
    row("reasoning", {"question": "abnormal", "conclusion": "unknown", "findings": {}, "diagnosis": []}, "b"),
    row("comparison", {"question": "louder", "finding": "murmur", "first": "yes", "second": "yes", "answer": "second", "sites": ["aortic", "mitral"]}, "b"),
    row("comparison", {"question": "which", "finding": "crackle", "first": "no", "second": "no", "answer": "neither", "sites": []}, "b"),
    row("location", {"question": "at_site", "site": "trachea", "sites": ["trachea"], "findings": {"crackle": "yes", "wheeze": "no"}}, "b"),
    row("location", {"question": "most_audible", "site": "unknown", "sites": [], "findings": {}}, "b"),
]


@pytest.mark.parametrize("r", ROUNDTRIP, ids=lambda r: f"{r['task']}-{r['patient_id']}-{sorted(r['answer'].items())[0]}")
def test_rendered_answer_scores_as_right(r):
    """The baselines' renderer and the scorer agree: a row's own answer, written out, is correct."""
    text = render(r["task"], r["answer"])
    scored = score_task(r["task"], [r], [text])
    flags = scored.flags[0]
    assert flags["parsed"], text
    assert flags["problems"] == [], (text, flags["problems"])
    assert not flags["contradictions"]
    headline = {"binary": "accuracy", "detection": "event_set_accuracy", "reasoning": "conclusion_accuracy", "differential": "top1",
                "comparison": "accuracy", "location": "accuracy"}.get(r["task"])
    if headline:
        assert flags[headline] is True, text
    else:
        assert flags["fields"] and all(flags["fields"].values()), (text, flags["fields"])


def test_majority_baseline_on_a_skewed_set():
    train = [binary("no", f"t{i}") for i in range(8)] + [binary("yes", f"t{i}") for i in range(8, 10)]
    train += [binary("yes", f"u{i}", finding="crackle", dataset="icbhi") for i in range(3)] + [binary("no", "u3", finding="crackle", dataset="icbhi")]
    test = [binary("yes", "a"), binary("no", "b"), binary("yes", "c", finding="crackle", dataset="icbhi"), binary("no", "d", finding="crackle", dataset="icbhi")]
    table = fit_majority(train)
    assert table[("binary", "murmur", "circor")]["label"] == "no"
    assert table[("binary", "crackle", "icbhi")]["label"] == "yes"
    texts, probs = majority_predictions(test, train)
    assert probs == pytest.approx([0.2, 0.2, 0.75, 0.75])
    v = values(test, texts, probs, system="majority")
    assert v[("binary", "accuracy")]["value"] == pytest.approx(0.5)  # b and c right
    assert v[("binary", "f1")]["value"] == pytest.approx(0.5)  # tp c, fp d, fn a
    assert v[("binary", "auroc")]["value"] == pytest.approx(0.5)  # one prior per finding, both findings balanced here

    # an unseen dataset falls back to the question type over all datasets; an unseen question type abstains
    other = [binary("yes", "e", dataset="bmdhs"), binary("yes", "f", finding="wheeze")]
    texts, probs = majority_predictions(other, train)
    assert texts[0] == render("binary", {"finding": "murmur", "label": "no"})
    assert texts[1] == UNKNOWN_TEXT and probs[1] == 0.5


def test_majority_detection_and_report_are_modes():
    train = [detection(["crackle"], ["wheeze"], f"p{i}") for i in range(3)] + [detection([], ["crackle", "wheeze"], "q")]
    texts, _ = majority_predictions([detection([], ["crackle", "wheeze"], "z")], train)
    assert texts[0] == render("detection", {"present": ["crackle"], "absent": ["wheeze"]})
    reports = [row("reporting", {**HEART_REPORT, "heart_rate_bpm": hr}, f"p{i}") for i, hr in enumerate([70, 80, 80])]
    texts, _ = majority_predictions([reports[0]], reports)
    assert "80 bpm" in texts[0] and "mitral" in texts[0]


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task"):
        score_task("astrology", [], [])


def test_bench_references_score_perfectly(tmp_path):
    """Contract with the bench: its own reference responses, scored against its answers, are right
    on every metric (random label combinations, unknowns, every task the builder writes)."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_records import random_records, variety, write_records

    from clinlm.bench.build import build_bench
    from clinlm.evaluate.run import reference_of

    write_records(variety() + random_records(60, seed=1), tmp_path / "rec")
    build_bench([tmp_path / "rec"], tmp_path / "bench", seed=0, workers=1, allow_missing_media=True)
    rows = [json.loads(line) for split in ("train", "val", "test") for line in (tmp_path / "bench" / f"{split}.jsonl").read_text().splitlines()]
    assert {r["task"] for r in rows} == set(AUSCULTATION_HEADLINE)
    probs = [float(r["answer"]["label"] == "yes") if r["task"] == "binary" else None for r in rows]
    scored = score_predictions(rows, [reference_of(r) for r in rows], probs, n_boot=50, text_similarity=False)
    for m in scored:
        if m["metric"] in ("unparseable_rate", "contradiction_rate"):
            assert m["value"] == 0.0, m
        else:
            assert m["value"] in (None, 1.0), m


def test_abstaining_is_right_only_where_the_labels_decide_nothing():
    decided = [binary("yes", "a"), detection([], ["crackle", "wheeze"], "b"),
               row("reasoning", {"question": "diagnosis", "conclusion": "copd", "findings": {}, "diagnosis": ["copd"]}, "c")]
    undecided = [binary("unknown", "d"), detection([], [], "e", unknown=["crackle"]),
                 row("reasoning", {"question": "abnormal", "conclusion": "unknown", "findings": {}, "diagnosis": []}, "f")]
    v = values(decided, [UNKNOWN] * 3)
    assert v[("all", "fact_consistency")]["value"] == 0.0  # abstaining contradicts nothing, but is not consistent here
    assert v[("detection", "event_set_accuracy")]["value"] == 0.0  # "cannot be determined" is not "no events"
    assert v[("all", "contradiction_rate")]["value"] == 0.0 and v[("all", "unparseable_rate")]["value"] == 0.0
    v = values(undecided, [UNKNOWN] * 3)
    assert v[("all", "fact_consistency")]["value"] == 1.0
    assert v[("detection", "event_set_accuracy")]["value"] == 1.0
    assert v[("binary", "accuracy")]["value"] == 1.0 and v[("reasoning", "conclusion_accuracy")]["value"] == 1.0


def test_by_dataset_splits_every_figure_and_leaves_out_empty_ones():
    rows = [binary("yes", "a"), binary("no", "b"), binary("unknown", "c", dataset="icbhi"), binary("unknown", "d", dataset="icbhi")]
    out = score_predictions(rows, ["Yes.", "Yes.", UNKNOWN, "No."], [0.9, 0.2, 0.5, 0.5], by="dataset", n_boot=50, text_similarity=False)
    groups = {(r.get("dataset"), r["task"], r["metric"]): r for r in out}
    assert groups[(None, "binary", "accuracy")]["value"] == pytest.approx(2 / 4)
    assert groups[("circor", "binary", "accuracy")]["value"] == pytest.approx(1 / 2)
    assert groups[("icbhi", "binary", "accuracy")]["value"] == pytest.approx(1 / 2)
    assert groups[("circor", "binary", "auroc")]["n"] == 2
    assert ("icbhi", "binary", "auroc") not in groups  # no yes/no label there: no AUROC row, not n=0
    assert all(r["n"] > 0 for r in out)
    with pytest.raises(ValueError, match="cannot score tasks"):
        score_predictions([{**rows[0], "task": "astrology"}], ["Yes."])
