"""ECG scoring: MCQ letters, closed answers, report metrics, class probes, the majority baseline."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from clinlm.bench.ecg_facts import ECG_FINDINGS, ECG_TASKS, extract_ecg_facts
from clinlm.bench.ecg_tasks import ecg_rows
from clinlm.evaluate.baselines import majority_predictions
from clinlm.evaluate.ecg_metrics import class_probes, majority_probe_probs, probe_metric_rows
from clinlm.evaluate.run import score_predictions, split_scoreable


def _rows(n=40, seed=0, media="signal"):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        af = i % 3 == 0
        f = {k: "unknown" for k in ECG_FINDINGS}
        f.update({k: "no" for k in ("sr", "af", "afl", "stach", "sbrad", "pvc", "lbbb", "rbbb", "ste", "std")})
        f["af" if af else rng.choice(["sr", "stach"])] = "yes"
        if not af:
            f.update({k: "no" for k in ("norm", "mi", "sttc", "cd", "hyp")})
            f[rng.choice(["norm", "cd"])] = "yes"
        lab = {"record_id": f"t/{i}", "patient_id": f"t/p{i}", "dataset": "t", "split": "test", "findings": f, "other_statements": []}
        rows += [r for _, r in ecg_rows(lab, ECG_TASKS, seed=0, media=media, path=f"/x/{i}")]
    return rows


def _metric(rows, task, metric, system="model"):
    return next(r["value"] for r in rows if r["task"] == task and r["metric"] == metric and r["system"] == system)


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("B.", "B"), ("C. Atrial fibrillation.", "C"), ("(D) sinus rhythm", "D"), ("The answer is A: sinus rhythm.", "A"),
    ("Answer: b", "B"), ("Atrial fibrillation.", None), ("Because the rhythm is irregular, B.", None), ("", None),
])
def test_mcq_letter_is_read_from_the_start_of_the_reply(text, letter):
    assert extract_ecg_facts(text)["choice"] == letter


def test_references_score_perfectly_and_the_mcq_is_scored_by_the_letter():
    rows = _rows()
    scoreable, skipped = split_scoreable(rows)
    assert not skipped and len(scoreable) == len(rows)
    refs = [r["messages"][-1]["content"] for r in rows]
    out = score_predictions(rows, refs, text_similarity=False, n_boot=50)
    for task, metric in [("ecg_closed", "accuracy"), ("ecg_closed", "af_accuracy"), ("ecg_mcq", "accuracy"),
                         ("ecg_report", "finding_f1"), ("ecg_report", "rhythm_accuracy"), ("ecg_conversation", "accuracy"),
                         ("all", "fact_consistency")]:
        assert _metric(out, task, metric) == pytest.approx(1.0), (task, metric)
    assert _metric(out, "all", "contradiction_rate") == 0.0
    # the MCQ counts the letter, not the words: the right name under the wrong letter is wrong
    mcq = [i for i, r in enumerate(rows) if r["task"] == "ecg_mcq"]
    preds = list(refs)
    for i in mcq[::2]:
        a = rows[i]["answer"]
        wrong = next(ltr for ltr in "ABCD" if ltr != a["correct"])
        preds[i] = f"{wrong}. {a['finding']}"
    out = score_predictions(rows, preds, text_similarity=False, n_boot=50)
    assert _metric(out, "ecg_mcq", "accuracy") == pytest.approx(1 - len(mcq[::2]) / len(mcq))


def test_closed_answers_flipped_are_wrong_and_contradict():
    rows = [r for r in _rows() if r["task"] == "ecg_closed"]
    flip = {"yes": "No.", "no": "Yes.", "unknown": "Yes."}
    preds = [flip[r["answer"]["label"]] for r in rows]
    out = score_predictions(rows, preds, [0.9 if p == "Yes." else 0.1 for p in preds], text_similarity=False, n_boot=50)
    assert _metric(out, "ecg_closed", "accuracy") == 0.0 and _metric(out, "ecg_closed", "auroc") == 0.0
    assert _metric(out, "ecg_closed", "fact_consistency") == 0.0


def test_report_metrics_count_findings_and_the_rhythm():
    rows = [r for r in _rows() if r["task"] == "ecg_report"]
    # a report that names only the rhythm: rhythm right, recall of the other labelled findings lost
    preds = [f"Rhythm: {'atrial fibrillation' if r['answer']['findings']['af'] == 'yes' else 'sinus rhythm' if r['answer']['findings']['sr'] == 'yes' else 'sinus tachycardia'}." for r in rows]
    out = score_predictions(rows, preds, text_similarity=False, n_boot=50)
    assert _metric(out, "ecg_report", "rhythm_accuracy") == 1.0
    n_true = sum(sum(v == "yes" for v in r["answer"]["findings"].values()) for r in rows)
    assert _metric(out, "ecg_report", "finding_f1") == pytest.approx(2 * len(rows) / (len(rows) + n_true))
    # saying "cannot be determined" where the rhythm is labelled is not a right rhythm
    out = score_predictions(rows, ["The rhythm cannot be determined from the available information."] * len(rows), text_similarity=False, n_boot=50)
    assert _metric(out, "ecg_report", "rhythm_accuracy") == 0.0


def test_class_probes_give_per_class_auroc_and_f1():
    rows = _rows(60)
    probes = class_probes(rows)
    # every ECG once per class its labels decide (superclasses where known, the simulator's rhythms)
    assert len({p["row"]["ecgs"][0] for p in probes}) == 60
    assert {p["finding"] for p in probes} == {"norm", "mi", "sttc", "cd", "hyp", "sr", "af", "stach", "sbrad"}
    assert all(p["row"]["messages"][0]["content"].startswith("<ecg>\n") for p in probes)
    rng = np.random.default_rng(0)
    scores = [float(np.clip((0.7 if p["label"] == "yes" else 0.3) + rng.normal(0, 0.25), 0, 1)) for p in probes]
    out = probe_metric_rows(probes, {"model": scores}, n_boot=100, seed=0)
    af = [i for i, p in enumerate(probes) if p["finding"] == "af"]
    auc = roc_auc_score([probes[i]["label"] == "yes" for i in af], [scores[i] for i in af])
    row = next(r for r in out if r["task"] == "ecg_class:af" and r["metric"] == "auroc")
    assert row["value"] == pytest.approx(auc) and row["ci_low"] <= auc <= row["ci_high"] and row["n"] == 60
    per_class = [r["value"] for r in out if r["task"].startswith("ecg_class:") and r["metric"] == "auroc"
                 and r["task"].split(":")[1] in ("sr", "af", "stach", "sbrad")]
    macro = next(r["value"] for r in out if r["metric"] == "macro_auroc_rhythm")
    assert macro == pytest.approx(np.mean(per_class))
    # the majority baseline: the training share of "yes" per class, a constant score (AUROC 0.5)
    probs = majority_probe_probs(probes, rows)
    assert probs[af[0]] == pytest.approx(20 / 60)
    base = probe_metric_rows(probes, {"majority": probs}, n_boot=50, seed=0)
    assert next(r["value"] for r in base if r["task"] == "ecg_class:af" and r["metric"] == "auroc") == 0.5


def test_image_rows_probe_the_image():
    probes = class_probes(_rows(6, media="image"))
    assert probes and all(p["row"]["images"] and p["row"]["messages"][0]["content"].startswith("<image>\n") for p in probes)


def test_majority_baseline_answers_parse_and_score_as_their_answer():
    train, test = _rows(60, seed=1), _rows(30, seed=2)
    texts, probs = majority_predictions(test, train)
    out = score_predictions(test, texts, probs, text_similarity=False, n_boot=50)
    closed = [r for r in test if r["task"] == "ecg_closed"]
    # "no" is the commonest answer of every closed question type here except the "yes" rows of the chosen yes findings
    assert 0.0 < _metric(out, "ecg_closed", "accuracy") < 1.0
    assert _metric(out, "all", "unparseable_rate") == 0.0
    # the MCQ baseline picks, per row, the option most often right in training: a real letter
    mcq = [t for r, t in zip(test, texts) if r["task"] == "ecg_mcq"]
    assert all(extract_ecg_facts(t)["choice"] in tuple("ABCD") for t in mcq)
    assert len(closed) and all(p is not None for r, p in zip(test, probs) if r["task"] == "ecg_closed")


def test_media_table_puts_the_three_media_side_by_side(tmp_path):
    import json

    from clinlm.evaluate.ecg_compare import write_media_table

    def metrics(folder, af, majority):
        folder.mkdir()
        rows = [{"system": "model", "task": "ecg_closed", "metric": "af_accuracy", "value": af, "ci_low": af - 0.1, "ci_high": af + 0.05, "n": 30},
                {"system": "majority", "task": "ecg_closed", "metric": "af_accuracy", "value": majority, "ci_low": 0.8, "ci_high": 0.95, "n": 30},
                {"system": "model", "task": "ecg_mcq", "metric": "accuracy", "value": af / 2, "ci_low": 0.1, "ci_high": 0.6, "n": 30}]
        (folder / "metrics.json").write_text(json.dumps(rows))
        return folder

    runs = {"signal": metrics(tmp_path / "s", 0.97, 0.89), "clean image": metrics(tmp_path / "c", 0.9, 0.89), "photo": metrics(tmp_path / "p", 0.8, 0.89)}
    table = write_media_table(runs, tmp_path / "out").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| figure"))
    assert header == "| figure | signal | clean image | photo | majority | text-only | n |"
    af = next(line for line in table.splitlines() if line.startswith("| AF? accuracy"))
    assert "0.970 [0.87, 1.02]" in af and "| 0.900 [" in af and "| 0.800 [" in af and "0.890 [0.80, 0.95]" in af
    assert json.loads((tmp_path / "out" / "media_table.json").read_text())[1]["photo"]["value"] == 0.4
    with pytest.raises(FileNotFoundError, match="run `clinlm eval`"):
        write_media_table({"signal": tmp_path / "nowhere"}, tmp_path / "out2")
