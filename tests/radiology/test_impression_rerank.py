"""The model's own likelihood of a candidate answer, and choosing between its impression and retrieved ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clinlm_toys import REPO, write_impression_bench

import clinlm
from clinlm.bench.impression import listed_similar, similar_block, user_prompt
from clinlm.infer import answer_logprob
from clinlm.train.collator import encode_row
from clinlm.train.data import read_rows
from clinlm.train.run import train_from_config

RECIPE = REPO / "configs" / "radiology_impression.yaml"
SIMILAR = ["No acute cardiopulmonary abnormality.", "Cardiomegaly without edema."]


def test_listed_similar_reads_back_what_the_prompt_lists():
    prompt = user_prompt("The heart is normal in size.", "Give the impression.", SIMILAR)
    assert listed_similar(prompt) == SIMILAR
    assert listed_similar("FINDINGS: The heart is normal in size.") == []
    assert similar_block([]) == ""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    bench = write_impression_bench(root / "bench")
    over = [f"data.train={bench['train']}", "data.val=null", "model.language_model=tiny", "train.max_steps=2",
            "train.batch_size=4", f"train.output_dir={root / 'run'}"]
    return train_from_config(RECIPE, over), bench


def test_answer_logprob_is_the_mean_log_probability_of_the_answer_tokens(trained):
    ckpt, bench = trained
    model = clinlm.load(ckpt).eval()
    rows = read_rows(bench["test"])[:3]
    answers = ["No acute disease.", "Cardiomegaly.", "Small left pleural effusion."]
    got = answer_logprob(model, rows, answers, batch_size=2)
    for row, answer, value in zip(rows, answers, got):
        item = encode_row({**row, "messages": [row["messages"][0], {"role": "assistant", "content": answer}]}, model.tokenizer, {})
        ids, labels = torch.tensor([item["input_ids"]]), torch.tensor(item["labels"][1:])
        with torch.no_grad():
            logp = torch.log_softmax(model.language_model(input_ids=ids).logits[0, :-1].float(), -1)
        keep = labels != -100
        manual = logp[keep].gather(1, labels[keep][:, None]).mean()
        assert abs(value - float(manual)) < 1e-4
    assert answer_logprob(model, rows[:1], answers[:1], batch_size=1)[0] == pytest.approx(got[0], abs=1e-5)  # batching
    with pytest.raises(ValueError, match="rows but"):
        answer_logprob(model, rows, answers[:1])


def test_eval_with_retrieved_impressions_reports_the_chosen_and_the_greedy_answer(trained, tmp_path):
    from clinlm.evaluate.run import evaluate

    ckpt, bench = trained
    rows = [json.loads(line) for line in Path(bench["test"]).read_text().splitlines()]
    for r in rows:  # prompts that list the impressions of similar reports, as a retrieval-augmented bench writes them
        r["messages"][0]["content"] += similar_block(SIMILAR)
    data = Path(bench["test"]).with_name("test_similar.jsonl")
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = evaluate(ckpt, data, tmp_path / "eval", max_new_tokens=8, n_boot=20, train=bench["train"])
    assert {"model", "model_greedy"} <= {m["system"] for m in metrics}
    preds = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    for p in preds:  # the chosen answer is the greedy one or one of the listed impressions, nothing else
        assert p["predictions"]["model"] in [p["predictions"]["model_greedy"], *SIMILAR]
    assert "model_greedy" in (tmp_path / "eval" / "report.md").read_text()
