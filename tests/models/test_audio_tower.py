"""Audio towers and the projector: shapes, a transformers encoder from a local folder, rebuilds."""

from __future__ import annotations

import pytest
import torch
from clinlm_toys import heart_wav, make_whisper_encoder_folder

from clinlm.models.audio_tower import ConvAudioEncoder, build_audio_tower, load_hf_audio_tower
from clinlm.models.projector import AudioProjector
from clinlm.signals.features import AudioFeatures, FeatureConfig


def test_conv_tower_downsamples_time_by_two_per_block():
    tower = ConvAudioEncoder(n_mels=16, channels=32, layers=3)
    out = tower(torch.randn(2, 101, 16))  # (batch, frames, n_mels)
    assert out.shape == (2, 13, 32)  # ceil(101 / 8) frames', 32 channels
    # each recording is encoded on its own: changing one does not move the other
    x = torch.randn(2, 101, 16)
    y = x.clone()
    y[1] += 1.0
    assert torch.allclose(tower(x)[0], tower(y)[0]) and not torch.allclose(tower(x)[1], tower(y)[1])


def test_skip_carries_a_one_frame_event_to_the_output_where_it_happened():
    tower = ConvAudioEncoder(n_mels=16, channels=32, layers=3, skip=True)
    assert tower.hidden_size == 32 + 16
    x = torch.zeros(1, 160, 16)
    x[0, 83, 5] = 7.0  # one frame of one channel, e.g. a crackle in the transient channel
    out = tower(x)  # (1, 20, 48)
    assert out.shape == (1, 20, 48)
    peaks = out[0, :, 32 + 5]
    assert peaks[83 // 8] == 7.0 and peaks.argmax() == 83 // 8 and (peaks == 0).sum() == 19
    # old checkpoints' specs (no "skip") rebuild without it
    assert build_audio_tower({"type": "conv", "n_mels": 16, "channels": 32, "layers": 3}).hidden_size == 32


def test_findings_head_appends_probabilities_and_rebuilds_from_its_spec():
    spec = {"type": "conv", "n_mels": 8, "channels": 16, "layers": 2, "skip": True, "findings": ["murmur", "crackle"]}
    tower = build_audio_tower(spec)
    assert tower.hidden_size == 16 + 8 + 2
    hidden, logits = tower.forward_with_findings(torch.randn(3, 40, 8))
    assert hidden.shape == (3, 10, 26) and logits.shape == (3, 10, 2)
    assert torch.allclose(hidden[..., -2:], torch.sigmoid(logits))  # the last channels are the head's probabilities
    twin = build_audio_tower(spec)
    twin.load_state_dict(tower.state_dict())  # the head's weights belong to the tower's state
    x = torch.randn(2, 40, 8)
    assert torch.equal(tower.eval()(x), twin.eval()(x))
    assert build_audio_tower({**spec, "findings": []}).findings_head is None


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("frames", [3, 40, 1000])
def test_projector_gives_a_fixed_number_of_tokens_whatever_the_length(kind, frames):
    proj = AudioProjector(audio_size=32, lm_size=48, num_tokens=4, kind=kind)
    assert proj(torch.randn(3, frames, 32)).shape == (3, 4, 48)


def test_projector_tokens_follow_time_order():
    proj = AudioProjector(audio_size=8, lm_size=8, num_tokens=4, kind="linear")
    h = torch.zeros(1, 40, 8)
    h[0, 30:] = 5.0  # something happens in the last quarter only
    out = proj(h)[0]
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[1], out[2]) and not torch.allclose(out[2], out[3])


def test_bad_projector_settings_are_refused():
    with pytest.raises(ValueError, match="projector"):
        AudioProjector(8, 8, 4, kind="transformer")
    with pytest.raises(ValueError, match="num_audio_tokens"):
        AudioProjector(8, 8, 0)


def test_whisper_encoder_from_a_local_folder(tmp_path):
    folder = make_whisper_encoder_folder(tmp_path / "whisper")
    tower, extractor, spec = load_hf_audio_tower(folder)
    assert spec["type"] == "hf" and spec["input_name"] == "input_features"
    feats = AudioFeatures(FeatureConfig(kind="hf", sample_rate=extractor.sampling_rate, max_seconds=1.0), extractor)
    wav = heart_wav(tmp_path / "a.wav", murmur=True, seed=0)
    x = feats(wav)
    assert x.shape == (16, 100)  # Whisper log-mel (n_mels, frames of its 1-s window)
    out = tower(x[None])
    assert out.shape == (1, 50, 32)  # (batch, frames', d_model) from last_hidden_state
    # The spec alone rebuilds the same architecture; the weights then load one to one.
    rebuilt = build_audio_tower(spec)
    rebuilt.load_state_dict(tower.state_dict())
    tower.eval(), rebuilt.eval()
    assert torch.allclose(rebuilt(x[None]), tower(x[None]))
    assert not any("decoder" in k for k in tower.state_dict())  # only the encoder half is kept


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_audio_tower(tmp_path)
