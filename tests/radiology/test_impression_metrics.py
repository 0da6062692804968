"""ROUGE / BERTScore with CIs, the most-frequent and retrieval baselines, and the abnormal subset."""

from __future__ import annotations

import numpy as np
import pytest

from clinlm.evaluate.text_metrics import bertscore_f1
from clinlm.evaluate.impression import (
    abnormal_mask,
    evaluate_impressions,
    findings_of,
    format_table,
    minilm_retrieval,
    most_frequent_baseline,
    rouge_per_row,
    tfidf_retrieval,
)


def _row(findings: str, impression: str, patient: str, phrasing: str = "Summarise the findings into an impression.") -> dict:
    user = f"{phrasing}\n\nFINDINGS: {findings}" if phrasing else f"FINDINGS: {findings}"
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": impression}],
        "audios": [], "task": "impression", "record_ids": [patient], "patient_id": patient, "dataset": "toy",
        "split": "test", "answer": {"impression": impression},
    }


NORMAL_F = "The heart is normal in size. The lungs are clear. No effusion."
CASES = [
    ("Large right pleural effusion with adjacent atelectasis.", "Large right pleural effusion."),
    ("The heart is enlarged. Pulmonary vascular congestion and interstitial edema.", "Cardiomegaly with mild pulmonary edema."),
    ("Right upper lobe consolidation with air bronchograms.", "Right upper lobe pneumonia."),
    ("Small left apical pneumothorax after line placement.", "Small left pneumothorax."),
    ("Rounded 2 cm nodule in the left lower lobe.", "Left lower lobe nodule, CT recommended."),
]


def _train() -> list[dict]:
    rows = [_row(NORMAL_F + (" XXXX." if i % 2 else ""), "No acute cardiopulmonary abnormality." if i % 3 else "No acute cardiopulmonary abnormality. .", f"t{i}") for i in range(12)]
    rows += [_row(NORMAL_F, "No active disease.", f"t{12 + i}") for i in range(5)]
    rows += [_row(f, imp, f"t{20 + i}") for i, (f, imp) in enumerate(CASES)]
    return rows


def test_rouge_is_stemmed_f_measure() -> None:
    s = rouge_per_row(
        ["Large pleural effusions.", "no acute disease", "heart normal", ""],
        ["Large pleural effusion.", "No acute disease.", "Pneumothorax on the left.", "Clear lungs."],
    )
    assert s["rouge1"][0] == pytest.approx(1.0)  # "effusions" and "effusion" share a stem
    assert s["rouge1"][1] == pytest.approx(1.0) and s["rougeL"][1] == pytest.approx(1.0)  # case and punctuation ignored
    assert s["rouge1"][2] == 0.0 and s["rouge2"][2] == 0.0 and s["rouge1"][3] == 0.0
    p = rouge_per_row(["large effusion"], ["large right effusion"])  # P = 2/2, R = 2/3 -> F = 0.8
    assert p["rouge1"][0] == pytest.approx(0.8)
    assert p["rouge2"][0] == pytest.approx(0.0)  # no shared bigram


def test_bertscore_orders_paraphrase_above_unrelated() -> None:
    f1 = bertscore_f1(
        ["No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process.", "Fracture of the left femur.", ""],
        ["No acute cardiopulmonary abnormality."] * 4,
    )
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert f1[0] > f1[1] > f1[2] and f1[3] == 0.0


def test_baselines() -> None:
    train = _train()
    test = [_row(NORMAL_F + ". ", "No acute disease.", "q0", phrasing="")] + [
        _row(f.replace(".", " ."), imp, f"q{i + 1}") for i, (f, imp) in enumerate(CASES)
    ]
    # The most frequent impression counts the variants as one; it is returned as most often written.
    assert most_frequent_baseline(train, 2) == ["No acute cardiopulmonary abnormality."] * 2
    tfidf = tfidf_retrieval(train, test)
    assert tfidf[1:] == [imp for _, imp in CASES]  # each abnormal case finds its own training twin
    assert tfidf[0] in {"No acute cardiopulmonary abnormality.", "No acute cardiopulmonary abnormality. .", "No active disease."}
    minilm = minilm_retrieval(train, test)
    assert minilm[1:] == [imp for _, imp in CASES]
    assert findings_of(test[0]) == NORMAL_F + "."


def test_abnormal_subset_excludes_top_templates() -> None:
    train = _train()
    rows = [_row("x", "No acute cardiopulmonary abnormality", "a"), _row("x", "No active disease!", "b"), _row("x", "Right pneumonia.", "c")]
    assert abnormal_mask(rows, train, top_k=2).tolist() == [False, False, True]
    assert abnormal_mask(rows, train, top_k=1).tolist() == [False, True, True]


def test_evaluate_impressions_table() -> None:
    train = _train()
    test = [_row(f, imp, f"q{i}") for i, (f, imp) in enumerate(CASES)] + [
        _row(NORMAL_F, "No acute cardiopulmonary abnormality.", f"n{i}") for i in range(5)
    ]
    perfect = [r["answer"]["impression"] for r in test]
    rows = evaluate_impressions(test, perfect, train, baselines=("most_frequent", "tfidf_nn"), top_k=2, n_boot=200)
    by = {(r["system"], r["metric"], r["subset"]): r for r in rows}
    assert {r["system"] for r in rows} == {"model", "most_frequent", "tfidf_nn", "model - most_frequent", "model - tfidf_nn"}
    assert {r["subset"] for r in rows} == {"all", "abnormal"}
    for r in rows:
        assert set(r) - {"paired_difference"} == {"system", "task", "metric", "value", "ci_low", "ci_high", "n", "subset"}
        assert r.get("paired_difference", False) == (" - " in r["system"])
        assert r["task"] == "impression" and r["ci_low"] <= r["value"] + 1e-9 and r["value"] <= r["ci_high"] + 1e-9
    assert by[("model", "rouge1", "all")]["value"] == pytest.approx(1.0)
    assert by[("model", "rouge1", "all")]["n"] == 10 and by[("model", "rouge1", "abnormal")]["n"] == 5
    # The most frequent impression is right on the normal rows only: half the rows, none of the abnormal ones.
    mf = by[("most_frequent", "rouge1", "all")]
    assert 0.5 <= mf["value"] < 0.75 and mf["ci_low"] < mf["value"] < mf["ci_high"]
    assert by[("most_frequent", "rouge1", "abnormal")]["value"] < 0.2
    assert by[("model", "bertscore_f1", "all")]["value"] > by[("most_frequent", "bertscore_f1", "all")]["value"]
    table = format_table(rows, "abnormal")
    assert "| model |" in table and "abnormal, n=5" in table and "model - tfidf_nn" not in table
    # Paired differences: the per-row difference's mean, the same as the difference of the means.
    for base in ("most_frequent", "tfidf_nn"):
        for subset in ("all", "abnormal"):
            diff = by[(f"model - {base}", "rouge1", subset)]
            assert diff["value"] == pytest.approx(by[("model", "rouge1", subset)]["value"] - by[(base, "rouge1", subset)]["value"])
            assert diff["ci_low"] <= diff["value"] <= diff["ci_high"]
    assert by[("model - most_frequent", "rouge1", "abnormal")]["ci_low"] > 0  # perfect vs a template on abnormal rows
    assert "| model - tfidf_nn |" in format_table(rows, "all", paired=True)

    with pytest.raises(ValueError, match="one prediction per row"):
        evaluate_impressions(test, perfect[:-1], train, baselines=())


def test_ci_resamples_patients_not_rows() -> None:
    """Ten rows of one patient are one unit: a CI over 2 patients is wider than over 20 independent rows."""
    train = _train()
    good = [_row(f, imp, "p-same") for f, imp in CASES * 2]
    bad = [_row(f, imp, "p-other") for f, imp in CASES * 2]
    preds = [r["answer"]["impression"] for r in good] + ["unrelated words here"] * len(bad)
    clustered = evaluate_impressions(good + bad, preds, train, baselines=(), n_boot=300)
    for i, r in enumerate(good + bad):
        r["patient_id"] = f"own{i}"
    independent = evaluate_impressions(good + bad, preds, train, baselines=(), n_boot=300)
    width = lambda rows: next(r["ci_high"] - r["ci_low"] for r in rows if r["metric"] == "rouge1" and r["subset"] == "all")
    assert width(clustered) > width(independent) > 0
    assert np.isclose(clustered[0]["value"], independent[0]["value"])
