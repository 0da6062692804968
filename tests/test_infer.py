"""Inference: batched generation, yes/no probabilities, `clinlm ask`, and a model that really hears."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score
from clinlm_toys import heart_wav, tiny_overrides, write_toy_bench
from typer.testing import CliRunner

import clinlm
from clinlm.cli import app
from clinlm.infer import answer_token_ids, ask, generate, yes_probability
from clinlm.train.collator import encode_prompt
from clinlm.train.data import read_rows
from clinlm.train.run import train_from_config


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_toy_bench(tmp_path_factory.mktemp("bench"), n_patients=36, comparison=False)


@pytest.fixture(scope="module")
def trained(bench, tmp_path_factory):
    """A tiny model trained until it answers the toy murmur question from the audio."""
    out = tmp_path_factory.mktemp("run")
    over = tiny_overrides(bench, out) + ["train.max_steps=60", "train.batch_size=8", "train.lr=0.005", "train.logging_steps=20"]
    return train_from_config("configs/stetholm_tiny.yaml", over)


def test_batched_generation_equals_one_by_one(trained, bench):
    model = clinlm.load(trained)
    rows = read_rows(bench["test"]) + read_rows(bench["val"])
    rows[1] = {**rows[1], "messages": [{"role": "user", "content": "<audio>\nPlease listen carefully. Is there a murmur?"}, rows[1]["messages"][1]]}
    batched = generate(model, rows, max_new_tokens=12, batch_size=8)
    single = [generate(model, [r], max_new_tokens=12, batch_size=1)[0] for r in rows]
    assert batched == single


def test_the_model_hears_the_murmur(trained, bench):
    model = clinlm.load(trained)
    rows = read_rows(bench["test"]) + read_rows(bench["val"])  # held-out patients
    truth = [r["answer"]["murmur"] == "present" for r in rows]
    answers = generate(model, rows, max_new_tokens=12)
    said_yes = [a.startswith("Yes") for a in answers]
    assert all(a.startswith(("Yes", "No")) for a in answers), answers
    assert sum(s == t for s, t in zip(said_yes, truth)) >= 0.9 * len(rows)
    p = yes_probability(model, rows)
    assert roc_auc_score(truth, p) >= 0.95
    assert sum(pi > 0.5 for pi in p) == sum(said_yes)  # greedy answer and P(yes) agree


def test_yes_probability_is_the_first_answer_token_softmax(trained, bench):
    model = clinlm.load(trained)
    row = read_rows(bench["test"])[0]
    ids = torch.tensor([encode_prompt(row, model.tokenizer, model.config.num_audio_tokens)["input_ids"]])
    feats = model.features(row["audios"][0])[None]
    with torch.no_grad():
        last = model(input_ids=ids, attention_mask=torch.ones_like(ids), audio_features=feats).logits[0, -1]
    yes, no = answer_token_ids(model.tokenizer)
    expected = torch.softmax(last[[yes, no]], -1)[0].item()
    assert yes_probability(model, [row])[0] == pytest.approx(expected, abs=1e-5)
    assert model.tokenizer.decode([yes]).strip() == "Yes" and model.tokenizer.decode([no]).strip() == "No"


def test_ask_adds_placeholders_and_cli_prints_the_answer(trained, tmp_path):
    wav = heart_wav(tmp_path / "murmur.wav", murmur=True, seed=123)
    answer = ask(trained, "Is there a murmur?", audios=[str(wav)], max_new_tokens=12)
    assert answer == ask(trained, "<audio>\nIs there a murmur?", audios=[str(wav)], max_new_tokens=12)
    res = CliRunner().invoke(app, ["ask", str(trained), "Is there a murmur?", "--audio", str(wav), "--max-new-tokens", "12"])
    assert res.exit_code == 0 and answer in " ".join(res.output.split())
    with pytest.raises(ValueError, match="placeholder"):
        ask(trained, "<audio> and <audio>?", audios=[str(wav)])
    with pytest.raises(FileNotFoundError, match="not found"):
        ask(trained, "Is there a murmur?", audios=[str(tmp_path / "missing.wav")])


def test_text_only_model_refuses_audio(bench, tmp_path):
    ckpt = train_from_config("configs/stetholm_tiny.yaml", tiny_overrides(bench, tmp_path) + ["model.audio_tower=none"])
    with pytest.raises(ValueError, match="text-only"):
        ask(ckpt, "Is there a murmur?", audios=[str(heart_wav(tmp_path / "a.wav", murmur=False, seed=1))])
    assert isinstance(ask(ckpt, "Is there a murmur?", max_new_tokens=4), str)
