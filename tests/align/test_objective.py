"""The alignment losses on hand-checked cases, and the masking arithmetic of the masked-patch term."""

from __future__ import annotations

import math

import pytest
import torch

from clinlm.align.objective import AlignModel, apply_mask, cka_loss, info_nce, linear_cka, span_mask, time_axis, to_patches
from clinlm.models.audio_tower import ConvAudioEncoder


def test_linear_cka_hand_checked_one_dimensional_case():
    # For one column each, linear CKA is the squared Pearson correlation:
    # x = [1, 2, 3] -> centred [-1, 0, 1]; y = [1, 3, 2] -> centred [-1, 1, 0]; r = 1 / (sqrt2 sqrt2) = 0.5.
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [3.0], [2.0]])
    assert linear_cka(x, y).item() == pytest.approx(0.25, abs=1e-6)
    assert cka_loss(x, y).item() == pytest.approx(0.75, abs=1e-6)


def test_linear_cka_is_one_for_rotated_scaled_copies_and_lower_for_unrelated_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, generator=g)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))  # an orthogonal matrix
    assert linear_cka(x, 3.0 * x @ q + 7.0).item() == pytest.approx(1.0, abs=1e-5)
    y = torch.randn(16, 4, generator=g)
    value = linear_cka(x, y).item()
    assert 0.0 <= value < 0.9
    assert linear_cka(x, y).item() == pytest.approx(linear_cka(y, x).item(), abs=1e-6)  # symmetric


def test_info_nce_hand_checked_two_by_two():
    # Orthonormal pairs, temperature 1 (logit scale log 1 = 0): logits [[1, 0], [0, 1]], each row's
    # loss -log(e / (e + 1)) = log(1 + e^-1), the same in both directions.
    a = torch.eye(2)
    loss = info_nce(a, a.clone(), torch.tensor(0.0))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # Swapped pairs: each row's positive is the other one: -log(1 / (e + 1)) = log(1 + e).
    assert info_nce(a, a.flip(0), torch.tensor(0.0)).item() == pytest.approx(math.log(1 + math.e), abs=1e-6)


def test_info_nce_with_copies_of_a_report_equals_the_multi_positive_loss():
    # Recordings 0 and 1 have the same report. The plain loss (identity targets) equals, exactly,
    # the loss whose targets spread each row over both copies: a copy is never a false negative.
    audio = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # unit rows
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    logits = audio @ text.T  # scale 1
    target = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    a2t = -(target * logits.log_softmax(1)).sum(1).mean()
    t2a = -(target * logits.T.log_softmax(1)).sum(1).mean()
    assert info_nce(audio, text, torch.tensor(0.0)).item() == pytest.approx(((a2t + t2a) / 2).item(), abs=1e-6)


def test_time_axis_and_patches_for_three_input_layouts():
    assert time_axis(torch.zeros(2, 401, 64), None) == 1  # built-in log-mel (batch, frames, mels)
    assert time_axis(torch.zeros(2, 16, 100), 16) == 2  # Whisper (batch, mels, frames)
    assert time_axis(torch.zeros(2, 16000), None) == 1  # waveform
    x = torch.arange(2 * 10 * 3, dtype=torch.float32).reshape(2, 10, 3)
    patches, stride = to_patches(x, 1, 4)  # 10 steps into 4 frames: stride 3, padded to 12
    assert stride == 3 and patches.shape == (2, 4, 9)
    assert torch.equal(patches[0, 0], x[0, :3].reshape(-1))
    assert torch.equal(patches[0, 3, :3], x[0, 9]) and patches[0, 3, 3:].abs().sum() == 0


def test_span_mask_and_apply_mask_zero_exactly_the_masked_patches():
    torch.manual_seed(0)
    mask = span_mask(20, 3, ratio=0.3, span=2)
    assert mask.shape == (3, 20) and (mask.sum(1) == 6).all()  # 10 spans of 2, 3 chosen
    runs = mask[:, ::2] == mask[:, 1::2]  # spans of two frames are masked together
    assert runs.all()
    x = torch.ones(3, 16, 40)  # (batch, features, time) with stride 2 -> 20 frames
    masked = apply_mask(x, 2, mask, 2)
    step_mask = mask.repeat_interleave(2, dim=1)
    assert torch.equal(masked == 0, step_mask[:, None, :].expand_as(x))


def test_align_model_parts_are_named_and_ssl_only_in_training():
    torch.manual_seed(0)
    enc = ConvAudioEncoder(16, 8, 2)
    x = torch.randn(6, 41, 16)
    model = AlignModel(enc, 12, x[0], {"alignment": "infonce", "ssl": "masked_patch", "head_hidden": 16}, None)
    assert model.stride == 4  # 41 frames -> 11 hidden frames: patches of 4 input frames x 16 mels
    out = model(x, torch.randn(6, 12))
    assert set(out) == {"loss", "align_infonce", "ssl_masked_patch"}
    assert out["loss"].item() == pytest.approx(out["align_infonce"].item() + out["ssl_masked_patch"].item(), rel=1e-5)
    model.eval()
    assert set(model(x, torch.randn(6, 12))) == {"loss", "align_infonce"}
    with pytest.raises(ValueError, match="train.alignment"):
        AlignModel(enc, 12, x[0], {"alignment": "mse"}, None)
