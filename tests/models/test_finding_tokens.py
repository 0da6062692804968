"""Finding tokens: one prefix token per finding of a warmed-up tower's head, read from that finding only."""

from __future__ import annotations

import pytest
import torch
from clinlm_toys import TINY_FEATURES, tiny_model_cfg, write_toy_bench

from clinlm.models.audio_tower import build_audio_tower
from clinlm.models.build import build_model
from clinlm.models.checkpoint import load_checkpoint, save_checkpoint
from clinlm.models.encoder_folder import save_encoder_folder
from clinlm.models.projector import AudioProjector
from clinlm.signals.features import AudioFeatures, FeatureConfig
from clinlm.train.data import read_rows
from clinlm.train.sft import collator_for, encode_rows

FINDINGS = ["murmur", "crackle", "wheeze", "abnormal"]


def test_each_finding_token_moves_with_its_own_finding_only():
    torch.manual_seed(0)
    proj = AudioProjector(audio_size=10, lm_size=16, num_tokens=3, kind="mlp", findings=4)
    hidden = torch.rand(2, 20, 10)  # (batch, frames', d_tower): the last 4 channels are probabilities
    out = proj(hidden)
    assert out.shape == (2, 3 + 4, 16)
    raised = hidden.clone()
    raised[:, :, -4 + 1] = 1.0  # crackle probability 1 in every frame
    moved = (proj(raised) - out).abs().amax(dim=-1)  # (batch, tokens)
    finding_moved = moved[:, 3:]
    assert (finding_moved[:, 1] > 1e-3).all()  # the crackle token changed ...
    assert torch.allclose(finding_moved[:, [0, 2, 3]], torch.zeros(2, 3))  # ... the other finding tokens did not


def test_binned_finding_statistics_interpolate_between_learned_levels():
    torch.manual_seed(0)
    proj = AudioProjector(audio_size=6, lm_size=8, num_tokens=1, findings=2, finding_bins=5)  # levels at 0, .25, .5, .75, 1
    assert proj.finding_levels.shape == (2, 2, 5, 8)
    hidden = torch.zeros(1, 4, 6)
    hidden[0, :, -2] = 0.5  # finding 0: max = mean = 0.5, exactly level 2
    hidden[0, :, -1] = torch.tensor([0.0, 0.0, 0.0, 0.5])  # finding 1: max 0.5 (level 2), mean 0.125 (halfway 0 -> 1)
    with torch.no_grad():
        proj.norm = torch.nn.Identity()  # read the raw tokens
        tokens = proj(hidden)[0, 1:]  # (K, d_lm)
        levels, slots = proj.finding_levels, proj.finding_slots
        assert torch.allclose(tokens[0], slots[0] + levels[0, 0, 2] + levels[0, 1, 2], atol=1e-6)
        want = slots[1] + levels[1, 0, 2] + 0.5 * (levels[1, 1, 0] + levels[1, 1, 1])
        assert torch.allclose(tokens[1], want, atol=1e-6)
    with pytest.raises(ValueError, match="finding_bins"):
        AudioProjector(audio_size=6, lm_size=8, num_tokens=1, findings=2, finding_bins=1)


def test_projector_without_findings_is_unchanged():
    proj = AudioProjector(audio_size=10, lm_size=16, num_tokens=3)
    assert proj(torch.rand(2, 20, 10)).shape == (2, 3, 16) and not hasattr(proj, "finding_slots")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_toy_bench(tmp_path_factory.mktemp("bench"), n_patients=12)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, bench):
    """An encoder folder like the tower warm-up's: a built-in tower with a findings head."""
    rows = read_rows(bench["train"])
    fc = FeatureConfig.from_dict({**TINY_FEATURES, "kind": "logmel"})
    AudioFeatures(fc).fit(p for r in rows for p in r.get("audios") or [])
    spec = {"type": "conv", "n_mels": fc.num_channels, "channels": 8, "layers": 2, "skip": True, "findings": FINDINGS}
    torch.manual_seed(0)
    return save_encoder_folder(tmp_path_factory.mktemp("enc") / "encoder", build_audio_tower(spec), spec, fc)


@pytest.mark.parametrize("bins,time_dropout", [(0, 0.0), (6, 0.5)])
def test_model_with_finding_tokens_fills_every_slot_and_round_trips(bench, encoder, tmp_path, bins, time_dropout):
    rows = read_rows(bench["train"])
    model = build_model(tiny_model_cfg(audio_tower=str(encoder), num_audio_tokens=2, finding_tokens=True, finding_bins=bins,
                                       time_token_dropout=time_dropout), TINY_FEATURES, rows)
    assert hasattr(model.multi_modal_projector, "finding_levels") == bool(bins)
    assert model.multi_modal_projector.time_token_dropout == time_dropout
    assert model.config.num_audio_tokens == 2 + len(FINDINGS) and model.config.audio_finding_tokens == len(FINDINGS)
    ds, _ = encode_rows(rows, model, max_length=512)
    batch = collator_for(model)([ds[i] for i in range(4)])
    # every <audio> placeholder was expanded to time tokens + finding tokens
    n_audios = batch["audio_features"].shape[0]
    assert int((batch["input_ids"] == model.config.audio_token_id).sum()) == n_audios * (2 + len(FINDINGS))
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    ckpt = save_checkpoint(model, model.tokenizer, model.features.cfg, {"model": {}}, tmp_path / "ckpt")
    again = load_checkpoint(ckpt)
    assert again.multi_modal_projector.time_token_dropout == time_dropout  # the setting travels with the checkpoint
    again.eval()
    with torch.no_grad():
        assert torch.allclose(again(**batch).logits, logits, atol=1e-5)


def test_finding_tokens_need_a_findings_head(bench):
    rows = read_rows(bench["train"])
    with pytest.raises(ValueError, match="findings head"):
        build_model(tiny_model_cfg(finding_tokens=True), TINY_FEATURES, rows)


def test_finding_words_are_the_spellings_questions_use():
    from clinlm.models.build import finding_word_ids
    from clinlm.models.language_model import train_tokenizer

    # Bench-like text: the plural is frequent (one token), the singular rare (split into pieces).
    texts = ["Any crackles? Yes, crackles are present. Any wheezes? No wheezes. Is there a murmur?"] * 200
    tok = train_tokenizer(texts, vocab_size=300)
    plural = tok(" crackles", add_special_tokens=False)["input_ids"]
    assert len(plural) == 1 and len(tok(" crackle", add_special_tokens=False)["input_ids"]) > 1
    ids = finding_word_ids(tok, ["murmur", "crackle", "wheeze"])
    assert ids[0] == tok(" murmur", add_special_tokens=False)["input_ids"]
    assert ids[1] == plural  # " crackles", as "Any crackles?" asks; not the pieces of " crackle"
    assert ids[2] == tok(" wheezes", add_special_tokens=False)["input_ids"]


def test_time_token_dropout_zeroes_whole_recordings_in_training_only():
    torch.manual_seed(0)
    proj = AudioProjector(audio_size=10, lm_size=16, num_tokens=3, findings=4, time_token_dropout=0.5)
    hidden = torch.rand(64, 20, 10)
    proj.train()
    out = proj(hidden)  # (64, 3 + 4, 16)
    dropped = out[:, :3].abs().sum(dim=(1, 2)) == 0  # (64,): recordings whose time tokens are all zero
    assert 10 < int(dropped.sum()) < 54  # about half of them ...
    assert (out[:, 3:].abs().sum(dim=-1) > 0).all()  # ... and the finding tokens always stay
    kept = ~dropped
    assert (out[kept, :3].abs().sum(dim=-1) > 0).all()  # a recording keeps all its time tokens or none
    proj.eval()
    assert (proj(hidden)[:, :3].abs().sum(dim=-1) > 0).all()  # never at inference
    with pytest.raises(ValueError, match="finding tokens"):
        AudioProjector(audio_size=10, lm_size=16, num_tokens=3, time_token_dropout=0.5)


def test_presence_finding_words_scale_each_name_by_its_finding_peak(bench, encoder):
    rows = read_rows(bench["train"])
    model = build_model(tiny_model_cfg(audio_tower=str(encoder), num_audio_tokens=2, finding_tokens=True, finding_words="presence"),
                        TINY_FEATURES, rows)
    assert model.config.audio_finding_word_presence
    model.eval()
    size = model.audio_tower.hidden_size
    hidden = torch.rand(2, 5, size)
    hidden[0, :, -len(FINDINGS):] = 1.0  # recording 0: every finding certain
    hidden[1, :, -len(FINDINGS):] = 0.0  # recording 1: none heard
    model.audio_tower.forward = lambda features: hidden
    with torch.no_grad():
        presence = model.encode_media("audio", torch.zeros(2, 1))
        bare = model.multi_modal_projector(hidden)
        model.config.audio_finding_word_presence = False
        constant = model.encode_media("audio", torch.zeros(2, 1))
    assert torch.allclose(presence[0], constant[0])  # peak 1: the whole name, as with constant names
    assert torch.allclose(presence[1], bare[1])  # peak 0: no name at all
    assert not torch.allclose(presence[1, -len(FINDINGS):], constant[1, -len(FINDINGS):])


def test_a_misspelt_finding_words_setting_is_refused(bench, encoder):
    rows = read_rows(bench["train"])
    with pytest.raises(ValueError, match="finding_words"):
        build_model(tiny_model_cfg(audio_tower=str(encoder), finding_tokens=True, finding_words="presense"), TINY_FEATURES, rows)
