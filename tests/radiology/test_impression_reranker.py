"""The learned impression reranker: candidates, features, the fit, storage, and its use by train/eval/ask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clinlm_toys import REPO

from clinlm.bench.retrieval import INDEX_FILE, ImpressionIndex
from clinlm.evaluate.impression_rerank import (
    FEATURES,
    RERANKER_FILE,
    Candidates,
    Reranker,
    candidates_for,
    feature_matrix,
    fit_reranker,
)

RECIPE = REPO / "configs" / "radiology_impression.yaml"
COL = {name: i for i, name in enumerate(FEATURES)}


def _index() -> ImpressionIndex:
    findings = ["heart normal lungs clear", "heart normal lungs clear no effusion", "heart enlarged lungs clear",
                "left pleural effusion", "heart enlarged"]
    impressions = ["No acute disease.", "No acute disease.", "Cardiomegaly.", "Left pleural effusion.", "Cardiomegaly."]
    return ImpressionIndex.fit(findings, impressions)


def test_candidates_start_with_the_model_and_are_distinct() -> None:
    index = _index()
    (c,) = candidates_for(index, ["heart normal lungs clear"], ["Normal chest."], k=3)
    assert c.texts[0] == "Normal chest." and c.generated[0] == 1.0
    assert c.rank[0] == 0.0 and c.cosine[0] == 0.0  # the model's own text was not retrieved
    assert c.texts[1] == "No acute disease." and c.rank[1] == 1.0  # the most similar report's impression
    assert len(c.texts) == len({t.lower() for t in c.texts})  # two neighbours share "No acute disease.": listed once
    assert c.votes[1] == pytest.approx(2 / 3)  # ... and that is its k-NN vote

    (same,) = candidates_for(index, ["heart normal lungs clear"], ["no acute disease"], k=3)
    assert same.texts[0] == "no acute disease" and same.generated[0] == 1.0  # generated == the top retrieved one:
    assert same.rank[0] == 1.0 and same.votes[0] == pytest.approx(2 / 3)  # one candidate with both facts
    assert "No acute disease." not in same.texts


def test_features_are_computed_from_the_prompt_and_candidates_only() -> None:
    c = Candidates(["Cardiomegaly.", "No acute disease."], cosine=[0.9, 0.5], rank=[1.0, 0.5], votes=[0.5, 0.5], generated=[1.0, 0.0])
    (x,) = feature_matrix([c], ["The heart shows cardiomegaly."], ["Cardiomegaly."], [[-0.5, -2.0]], {"no acute disease": 30})
    assert x.shape == (2, len(FEATURES))
    assert x[0, COL["findings_cover"]] == 1.0 and x[1, COL["findings_cover"]] == 0.0
    assert x[0, COL["agree_model"]] == pytest.approx(1.0) and x[1, COL["agree_model"]] == 0.0
    assert x[1, COL["logprob_gap"]] == pytest.approx(-1.5) and x[0, COL["logprob_gap"]] == 0.0
    assert x[1, COL["log_frequency"]] == pytest.approx(np.log1p(30)) and x[0, COL["log_frequency"]] == 0.0


def test_fit_learns_a_planted_ranking_and_ignores_row_constants() -> None:
    rng = np.random.default_rng(0)
    per_row, targets = [], []
    for _ in range(200):
        n = int(rng.integers(2, 8))
        x = rng.normal(size=(n, len(FEATURES)))
        x[:, COL["cosine"]] = rng.normal()  # the same for every candidate of a row: says nothing about the ranking
        y = 0.6 * x[:, COL["findings_cover"]] - 0.3 * x[:, COL["log_words"]] + 5.0 * x[0, COL["cosine"]] + rng.normal(0, 0.05, n)
        per_row.append(x)
        targets.append(y)
    reranker = fit_reranker(per_row, targets, alpha=1.0)
    w = dict(zip(FEATURES, reranker.weights))
    scale = dict(zip(FEATURES, reranker.scale))
    assert w["findings_cover"] / scale["findings_cover"] == pytest.approx(0.6, abs=0.05)
    assert w["log_words"] / scale["log_words"] == pytest.approx(-0.3, abs=0.05)
    assert abs(w["cosine"]) < 1e-6  # centring within rows removes it
    test = [rng.normal(size=(5, len(FEATURES))) for _ in range(50)]
    truth = [int(np.argmax(0.6 * x[:, COL["findings_cover"]] - 0.3 * x[:, COL["log_words"]])) for x in test]
    assert np.mean(np.array(reranker.choose(test)) == np.array(truth)) > 0.9
    with pytest.raises(ValueError, match="two or more candidates"):
        fit_reranker([np.zeros((1, len(FEATURES)))], [np.zeros(1)])


def test_save_load_roundtrip_and_feature_mismatch(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    per_row = [rng.normal(size=(4, len(FEATURES))) for _ in range(20)]
    reranker = fit_reranker(per_row, [rng.normal(size=4) for _ in per_row])
    loaded = Reranker.load(reranker.save(tmp_path / RERANKER_FILE))
    assert np.allclose(loaded.scores(per_row[0]), reranker.scores(per_row[0]))
    assert loaded.choose(per_row) == reranker.choose(per_row)
    doc = json.loads((tmp_path / RERANKER_FILE).read_text())
    doc["features"] = doc["features"][:-1]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="refit"):
        Reranker.load(tmp_path / "old.json")
    with pytest.raises(ValueError, match="expects"):
        reranker.scores(np.zeros((2, 3)))


@pytest.fixture(scope="module")
def radiology_run(tmp_path_factory):
    """`clinlm bench build --task impression` on toy reports, then the shipped recipe with a tiny LM."""
    from test_impression_bench import _records, _write

    from clinlm.bench.impression import build_impression_bench
    from clinlm.train.run import train_from_config

    root = tmp_path_factory.mktemp("reranker")
    rec = _write(_records(60), root / "rec")
    bench = root / "bench"
    build_impression_bench([rec], bench)
    over = [f"data.train={bench / 'train.jsonl'}", f"data.val={bench / 'val.jsonl'}", "model.language_model=tiny",
            "train.max_steps=3", "train.batch_size=8", f"train.output_dir={root / 'run'}"]
    return train_from_config(RECIPE, over), bench


def test_train_ships_the_index_and_a_reranker_fitted_on_val(radiology_run) -> None:
    ckpt, bench = radiology_run
    assert (ckpt / INDEX_FILE).exists() and (ckpt / RERANKER_FILE).exists()
    reranker = Reranker.load(ckpt / RERANKER_FILE)
    n_val = sum(1 for _ in (bench / "val.jsonl").open())
    assert reranker.fitted_on["val_rows"] == n_val
    f = reranker.fitted_on  # in-sample choice can only match or beat the greedy answer's mean ROUGE-1 up to the oracle
    assert f["val_rouge1_oracle"] >= f["val_rouge1_reranked_in_sample"] >= 0.0
    assert f["val_rouge1_oracle"] >= f["val_rouge1_greedy"]


def test_eval_reports_reranked_likelihood_and_greedy_and_never_reads_the_reference(radiology_run, tmp_path: Path) -> None:
    from clinlm.evaluate.run import evaluate

    ckpt, bench = radiology_run
    evaluate(ckpt, bench / "test.jsonl", tmp_path / "a", max_new_tokens=8, n_boot=20)
    preds = [json.loads(line) for line in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    index = ImpressionIndex.load(ckpt / INDEX_FILE)
    for p in preds:
        assert {"model", "model_likelihood", "model_greedy"} <= set(p["predictions"])
        assert p["predictions"]["model"] == p["predictions"]["model_greedy"] or p["predictions"]["model"] in index.impressions

    rows = [json.loads(line) for line in (bench / "test.jsonl").read_text().splitlines()]
    for r in rows:  # other references: the chosen impressions must not change
        r["messages"][-1]["content"] = r["answer"]["impression"] = "Something else entirely."
    changed = tmp_path / "bench2"
    changed.mkdir()
    (changed / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (changed / "train.jsonl").write_text((bench / "train.jsonl").read_text())
    evaluate(ckpt, changed / "test.jsonl", tmp_path / "b", max_new_tokens=8, n_boot=20)
    again = [json.loads(line) for line in (tmp_path / "b" / "predictions.jsonl").read_text().splitlines()]
    assert [p["predictions"]["model"] for p in again] == [p["predictions"]["model"] for p in preds]


def test_ask_retrieves_and_reranks_like_eval(radiology_run) -> None:
    from clinlm.infer import ask

    ckpt, bench = radiology_run
    index = ImpressionIndex.load(ckpt / INDEX_FILE)
    row = json.loads((bench / "test.jsonl").read_text().splitlines()[0])
    findings = row["messages"][0]["content"].rpartition("FINDINGS:")[2].split("IMPRESSIONS OF SIMILAR")[0].strip()
    answer = ask(ckpt, f"FINDINGS: {findings}", max_new_tokens=8)
    assert isinstance(answer, str) and answer
    retrieved = [imp for imp, _ in index.query([findings], Reranker.load(ckpt / RERANKER_FILE).k)[0]]
    # the answer is a retrieved impression or the model's own text; with the reranker removed, only the latter
    (ckpt / RERANKER_FILE).rename(ckpt / "moved.json")
    try:
        greedy = ask(ckpt, f"FINDINGS: {findings}", max_new_tokens=8)
    finally:
        (ckpt / "moved.json").rename(ckpt / RERANKER_FILE)
    assert answer in retrieved or answer == greedy


def test_knn_features_weigh_the_nearest_reports_most() -> None:
    c = Candidates(["Cardiomegaly.", "No acute disease."], cosine=[0.9, 0.5], rank=[1.0, 0.5], votes=[0.5, 0.5], generated=[1.0, 0.0],
                   neighbours=["Cardiomegaly.", "No acute disease.", "No acute disease."], neighbour_cosines=[0.9, 0.5, 0.5])
    (x,) = feature_matrix([c], ["Enlarged heart."], ["Cardiomegaly."], [[-1.0, -1.0]], {})
    p4, p16 = COL["knn_vote_p4"], COL["knn_vote_p16"]
    w4 = 0.9**4 / (0.9**4 + 2 * 0.5**4)
    assert x[0, p4] == pytest.approx(w4) and x[1, p4] == pytest.approx(1 - w4)  # the vote of each impression
    assert x[0, p16] > x[0, p4]  # a sharper power: the nearest report counts for more
    assert x[0, COL["knn_rouge_p4"]] > x[1, COL["knn_rouge_p4"]]  # expected ROUGE-1 against the weighted neighbours
    assert x[0, COL["knn_rouge_p4"]] == pytest.approx(w4 * 1.0 + (1 - w4) * 0.0)  # no words shared with "No acute disease."


def test_served_impression_is_what_ask_answers(radiology_run) -> None:
    """`clinlm serve` on a radiology checkpoint retrieves and reranks like `clinlm ask`."""
    from fastapi.testclient import TestClient

    from clinlm.infer import ask
    from clinlm.serve.api import create_app

    ckpt, bench = radiology_run
    row = json.loads((bench / "test.jsonl").read_text().splitlines()[1])
    findings = row["messages"][0]["content"].rpartition("FINDINGS:")[2].split("IMPRESSIONS OF SIMILAR")[0].strip()
    question = f"FINDINGS: {findings}"
    with TestClient(create_app(ckpt)) as http:
        reply = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}], "max_tokens": 8})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == ask(ckpt, question, max_new_tokens=8)
