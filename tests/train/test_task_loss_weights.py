"""train.task_loss_weights: a per-task multiplier on every answer token's loss."""

from __future__ import annotations

import pytest
import torch
from clinlm_toys import TINY_FEATURES, tiny_model_cfg, write_toy_bench

from clinlm.models.build import build_model
from clinlm.train.collator import IGNORE
from clinlm.train.data import read_rows
from clinlm.train.run import apply_override
from clinlm.train.sft import collator_for, encode_rows, task_weights


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    bench = write_toy_bench(tmp_path_factory.mktemp("bench"), n_patients=12)
    return read_rows(bench["train"])


@pytest.fixture(scope="module")
def model(rows):
    torch.manual_seed(0)
    return build_model(tiny_model_cfg(), TINY_FEATURES, rows).eval()


def _batch(model, rows, weights):
    ds, _ = encode_rows(rows, model, max_length=512, loss_weights=weights)
    return collator_for(model)([ds[i] for i in range(len(ds))])


def _row_token_loss_sums(model, batch):
    """(batch,) sum of each row's answer-token cross-entropies, from the LM's full logits."""
    embeds = model.embed(batch["input_ids"], batch["audio_features"])
    positions = (batch["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    logits = model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=positions).logits
    targets = batch["labels"][:, 1:]
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets.clamp(min=0), reduction="none")
    return (ce * (targets != IGNORE)).sum(1), int((targets != IGNORE).sum())


def test_items_and_batch_carry_each_rows_task_weight(model, rows):
    picked = rows[:6]
    batch = _batch(model, picked, {"binary": 3.0})
    want = [3.0 if r["task"] == "binary" else 1.0 for r in picked]
    assert batch["loss_weights"].tolist() == want
    assert "loss_weights" not in _batch(model, picked, {})  # no weights: the batch is as before


def test_weighted_loss_is_the_weighted_token_sum_over_the_token_count(model, rows):
    picked = rows[:6]
    tasks = {r["task"] for r in picked}
    assert "binary" in tasks and len(tasks) > 1  # the check needs both weighted and unweighted rows
    plain = _batch(model, picked, {})
    weighted = _batch(model, picked, {"binary": 3.0})
    sums, n_tokens = _row_token_loss_sums(model, plain)
    w = weighted["loss_weights"]
    with torch.no_grad():
        assert torch.allclose(model(**plain).loss, sums.sum() / n_tokens, atol=1e-5)
        assert torch.allclose(model(**weighted).loss, (w * sums).sum() / n_tokens, atol=1e-5)
        ones = dict(weighted, loss_weights=torch.ones_like(w))
        assert torch.allclose(model(**ones).loss, model(**plain).loss, atol=1e-6)


def test_weights_must_be_positive_numbers():
    assert task_weights({"binary": "3"}) == {"binary": 3.0}
    with pytest.raises(ValueError, match="must be > 0"):
        task_weights({"binary": 0})
    with pytest.raises(ValueError, match="not a number"):
        task_weights({"binary": "lots"})


def test_override_may_add_a_task_to_the_task_maps_but_not_elsewhere():
    cfg = {"train": {"task_loss_weights": {}, "epochs": 3}, "data": {"repeat": {}}}
    apply_override(cfg, "train.task_loss_weights.binary=3")
    apply_override(cfg, "data.repeat.location=2")
    assert cfg["train"]["task_loss_weights"] == {"binary": 3} and cfg["data"]["repeat"] == {"location": 2}
    with pytest.raises(KeyError, match="no key 'epoch'"):
        apply_override(cfg, "train.epoch=3")


def test_lm_without_logits_to_keep_gives_the_same_weighted_loss(model, rows, monkeypatch):
    batch = _batch(model, rows[:6], {"binary": 3.0})
    with torch.no_grad():
        kept = model(**batch).loss
        monkeypatch.setattr(model, "_keeps_logits", False, raising=False)  # as for an LM whose forward lacks it
        full = model(**batch).loss
    assert torch.allclose(kept, full, atol=1e-5)
