"""The composite model: audio scattered into <audio> slots, loss, freezing, LoRA, local LMs."""

from __future__ import annotations

import pytest
import torch
from clinlm_toys import TINY_FEATURES, make_llama_folder, make_qwen2_folder, make_whisper_encoder_folder, tiny_model_cfg, write_toy_bench

from clinlm.models.build import build_model
from clinlm.train.collator import IGNORE
from clinlm.train.data import read_rows
from clinlm.train.sft import collator_for, encode_rows


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    bench = write_toy_bench(tmp_path_factory.mktemp("bench"), n_patients=12)
    return read_rows(bench["train"])


def batch_for(model, rows):
    ds, skipped = encode_rows(rows, model, max_length=512)
    assert not skipped
    return collator_for(model)([ds[i] for i in range(len(ds))])


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before, module):
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


def train_steps(model, batch, steps=8, lr=3e-3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_audio_replaces_exactly_the_placeholder_embeddings_in_order(rows):
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg(), TINY_FEATURES, rows).eval()
    multi = [r for r in rows if len(r["audios"]) == 2][:2] + [r for r in rows if len(r["audios"]) == 1][:1]
    batch = batch_for(model, multi)
    ids, feats = batch["input_ids"], batch["audio_features"]
    assert feats.shape[0] == 5  # 2 + 2 + 1 audios, row by row
    embeds = model.embed(ids, feats)
    plain = model.get_input_embeddings()(ids)
    slots = ids == model.config.audio_token_id
    assert torch.equal(embeds[~slots], plain[~slots])  # text positions untouched
    audio = model.encode_audio(feats)  # (5, N, hidden)
    n = model.config.num_audio_tokens
    k = 0
    for b in range(ids.shape[0]):
        pos = slots[b].nonzero().flatten()
        for j in range(0, len(pos), n):
            assert torch.allclose(embeds[b, pos[j : j + n]], audio[k])
            k += 1
    assert k == 5
    # the labels never sit on an audio slot
    assert (batch["labels"][slots] == IGNORE).all()


def test_count_mismatch_between_slots_and_audios_raises(rows):
    model = build_model(tiny_model_cfg(), TINY_FEATURES, rows)
    batch = batch_for(model, rows[:2])
    with pytest.raises(ValueError, match=r"per row \[\d+, \d+\].*audios x 2 tokens"):
        model(**{**batch, "audio_features": batch["audio_features"][:-1]})


def test_loss_goes_down_and_only_trainable_parts_change(rows):
    torch.manual_seed(0)
    cfg = tiny_model_cfg(freeze={"audio_tower": True})
    model = build_model(cfg, TINY_FEATURES, rows)
    batch = batch_for(model, rows[:8])
    tower, proj, lm = params(model.audio_tower), params(model.multi_modal_projector), params(model.language_model)
    losses = train_steps(model, batch)
    assert losses[-1] < 0.7 * losses[0]
    assert not changed(tower, model.audio_tower)  # frozen
    assert changed(proj, model.multi_modal_projector) == set(proj)
    assert len(changed(lm, model.language_model)) > 0.9 * len(lm)


def test_loss_counts_assistant_tokens_only(rows):
    model = build_model(tiny_model_cfg(), TINY_FEATURES, rows).eval()
    batch = batch_for(model, rows[:2])
    loss = model(**batch).loss
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    manual = torch.nn.functional.cross_entropy(logits[:, :-1][keep], labels[keep])
    assert torch.allclose(loss, manual, atol=1e-5)


def test_loss_on_labelled_positions_equals_the_lms_own_loss(rows):
    # forward(labels=...) projects only the scored positions onto the vocabulary; the value must be
    # the LM's full-logits loss, also with the Trainer's num_items_in_batch (gradient accumulation)
    model = build_model(tiny_model_cfg(), TINY_FEATURES, rows).eval()
    batch = batch_for(model, rows[:4])
    embeds = model.embed(batch["input_ids"], batch["audio_features"])
    positions = (batch["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    full = model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=positions, labels=batch["labels"])
    out = model(**batch)
    assert torch.allclose(out.loss, full.loss, atol=1e-5)
    n_scored = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert out.logits.shape == (n_scored, full.logits.shape[-1])  # only the scored positions were projected
    halved = model(**batch, num_items_in_batch=torch.tensor(2 * n_scored))
    assert torch.allclose(halved.loss, full.loss / 2, atol=1e-5)


@pytest.mark.parametrize("lm_kind", ["qwen2", "llama"])
def test_local_lm_with_lora_trains_only_adapter_and_projector(rows, tmp_path, lm_kind):
    folder = (make_qwen2_folder if lm_kind == "qwen2" else make_llama_folder)(tmp_path / lm_kind)
    torch.manual_seed(0)
    cfg = tiny_model_cfg(language_model=str(folder), lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    model = build_model(cfg, TINY_FEATURES, rows)
    assert model.tokenizer.convert_tokens_to_ids("<audio>") == model.config.audio_token_id
    assert model.get_input_embeddings().weight.shape[0] >= len(model.tokenizer)  # resized for the media tokens
    batch = batch_for(model, rows[:8])
    lm = params(model.language_model)
    proj = params(model.multi_modal_projector)
    tower = params(model.audio_tower)
    losses = train_steps(model, batch, steps=6, lr=1e-2)
    assert losses[-1] < losses[0]
    moved = changed(lm, model.language_model)
    assert moved and all("lora_" in k for k in moved)  # base LM weights frozen by LoRA
    assert {k for k in lm if "lora_" in k} == moved
    assert changed(proj, model.multi_modal_projector) and changed(tower, model.audio_tower)


def test_transformers_audio_encoder_as_tower(rows, tmp_path):
    folder = make_whisper_encoder_folder(tmp_path / "whisper")
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg(audio_tower=str(folder)), {"band_hz": [25, 1800], "max_seconds": 1.0}, rows)
    assert model.features.cfg.kind == "hf" and model.features.cfg.sample_rate == 16000
    batch = batch_for(model, rows[:4])
    assert batch["audio_features"].shape[1:] == (16, 100)
    tower = params(model.audio_tower)
    losses = train_steps(model, batch, steps=5)
    assert losses[-1] < losses[0] and changed(tower, model.audio_tower)


def test_text_only_model_has_no_audio_parts_and_refuses_audio(rows):
    model = build_model(tiny_model_cfg(audio_tower="none"), TINY_FEATURES, rows)
    assert model.audio_tower is None and model.multi_modal_projector is None and model.features is None
    batch = batch_for(model, rows[:4])
    assert "audio_features" not in batch and not (batch["input_ids"] == model.config.audio_token_id).any()
    assert model(**batch).loss.isfinite()
    with pytest.raises(ValueError, match="text-only"):
        model.embed(batch["input_ids"], torch.zeros(1, 5, 16))


def test_unknown_settings_are_refused(rows):
    with pytest.raises(ValueError, match="unknown model settings"):
        build_model(tiny_model_cfg(num_audio_token=3), TINY_FEATURES, rows)
    with pytest.raises(KeyError, match="preset"):
        build_model(tiny_model_cfg(tower_size="huge"), TINY_FEATURES, rows)
    with pytest.raises(FileNotFoundError, match="neither a preset"):
        build_model(tiny_model_cfg(language_model="/nonexistent/llm"), TINY_FEATURES, rows)
