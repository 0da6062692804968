"""DPO and mDPO losses on cases small enough to compute by hand."""

from __future__ import annotations

import math

import pytest
import torch

from clinlm.train.dpo_loss import pair_loss, preference_losses, sequence_logps


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


def test_sequence_logps_sums_only_the_labelled_next_tokens():
    # vocab 2; logits at positions 0..2 predict tokens 1..3. log_softmax([0, log 3]) = [log 1/4, log 3/4]
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, 0.0], [math.log(3), 0.0], [5.0, 5.0]]])
    labels = torch.tensor([[-100, 1, 0, -100]])  # score token 1 (after pos 0) and token 2 (after pos 1)
    logps, n = sequence_logps(logits, labels)
    assert n.tolist() == [2]
    assert logps.item() == pytest.approx(math.log(3 / 4) + math.log(1 / 2))


POLICY = {"chosen": t(-1.0), "rejected": t(-3.0)}
REFERENCE = {"chosen": t(-2.0), "rejected": t(-2.0)}  # log-ratios: chosen +1, rejected -1


def test_sigmoid_dpo_by_hand():
    out = preference_losses(POLICY, REFERENCE, beta=0.5)
    # -log sigmoid(0.5 * (1 - (-1))) = log(1 + e^-1)
    assert out["loss"].item() == pytest.approx(softplus(-1.0), abs=1e-6)
    assert out["loss/dpo"].item() == pytest.approx(softplus(-1.0), abs=1e-6)
    assert out["rewards/chosen"].item() == pytest.approx(0.5)
    assert out["rewards/rejected"].item() == pytest.approx(-0.5)
    assert out["rewards/margins"].item() == pytest.approx(1.0)
    assert out["rewards/accuracies"].item() == 1.0
    assert "loss/conditional" not in out and "loss/anchor" not in out


def test_hinge_and_ipo_by_hand():
    assert preference_losses(POLICY, REFERENCE, beta=0.5, loss_type="hinge")["loss"].item() == pytest.approx(0.0)  # relu(1 - 1)
    assert preference_losses(POLICY, REFERENCE, beta=0.25, loss_type="hinge")["loss"].item() == pytest.approx(0.5)  # relu(1 - 0.5)
    lengths = {"chosen": t(2), "rejected": t(4)}
    # per-token log-ratio difference: 1/2 - (-1)/4 = 0.75; (0.75 - 1/(2 * 0.5))^2 = 0.0625
    assert preference_losses(POLICY, REFERENCE, lengths, beta=0.5, loss_type="ipo")["loss"].item() == pytest.approx(0.0625)
    with pytest.raises(ValueError, match="lengths"):
        pair_loss(t(1.0), t(0.0), 0.5, "ipo")
    with pytest.raises(ValueError, match="loss_type"):
        pair_loss(t(1.0), t(0.0), 0.5, "kto")


def test_policy_equal_to_reference_gives_log_two():
    same = {"chosen": t(-4.0, -1.0), "rejected": t(-2.0, -7.0)}
    out = preference_losses(same, same, beta=0.1)
    assert out["loss"].item() == pytest.approx(math.log(2))
    assert out["rewards/margins"].item() == 0.0


def test_mdpo_terms_by_hand():
    policy = {**POLICY, "conditional": t(-4.0)}
    reference = {**REFERENCE, "conditional": t(-3.0)}  # conditional log-ratio -1
    out = preference_losses(policy, reference, beta=0.5, conditional_weight=1.0, anchor_weight=1.0)
    dpo = softplus(-1.0)  # -log sigmoid(0.5 * (1 - (-1)))
    cond = softplus(-1.0)  # -log sigmoid(0.5 * (r(y_w|a)=1 - r(y_w|a')=-1))
    anchor = softplus(-0.5)  # -log sigmoid(0.5 * 1 - 0)
    assert out["loss/dpo"].item() == pytest.approx(dpo, abs=1e-6)
    assert out["loss/conditional"].item() == pytest.approx(cond, abs=1e-6)
    assert out["loss/anchor"].item() == pytest.approx(anchor, abs=1e-6)
    assert out["loss"].item() == pytest.approx(dpo + cond + anchor, abs=1e-6)
    assert out["rewards/conditional_margins"].item() == pytest.approx(1.0)
    weighted = preference_losses(policy, reference, beta=0.5, conditional_weight=0.5, anchor_weight=2.0, anchor_delta=0.5)
    # anchor with delta 0.5: -log sigmoid(0.5 - 0.5) = log 2
    assert weighted["loss/anchor"].item() == pytest.approx(math.log(2))
    assert weighted["loss"].item() == pytest.approx(dpo + 0.5 * cond + 2 * math.log(2), abs=1e-6)


def test_gradients_push_the_right_way():
    chosen, rejected, conditional = (torch.tensor([v], requires_grad=True) for v in (-1.0, -3.0, -4.0))
    out = preference_losses({"chosen": chosen, "rejected": rejected, "conditional": conditional}, {**REFERENCE, "conditional": t(-3.0)},
                            beta=0.5, conditional_weight=1.0, anchor_weight=1.0)
    out["loss"].backward()
    assert chosen.grad.item() < 0  # raising the chosen answer's likelihood lowers the loss
    assert rejected.grad.item() > 0 and conditional.grad.item() > 0  # raising either wrong one raises it
    # the anchor adds its own push on the chosen answer beyond DPO's and the conditional term's
    plain = torch.tensor([-1.0], requires_grad=True)
    preference_losses({"chosen": plain, "rejected": t(-3.0), "conditional": t(-4.0)}, {**REFERENCE, "conditional": t(-3.0)},
                      beta=0.5, conditional_weight=1.0, anchor_weight=0.0)["loss"].backward()
    assert chosen.grad.item() < plain.grad.item()


def test_the_conditional_term_averages_over_the_rows_that_have_a_rejected_audio():
    policy = {"chosen": t(-1.0, -1.0), "rejected": t(-3.0, -3.0), "conditional": t(-4.0, -1.0)}
    reference = {"chosen": t(-2.0, -2.0), "rejected": t(-2.0, -2.0), "conditional": t(-3.0, 5.0)}
    out = preference_losses(policy, reference, beta=0.5, conditional_weight=1.0, anchor_weight=1.0, conditional_mask=t(1.0, 0.0))
    # only row 0 counts: log-ratios chosen 1, conditional -1 -> log(1 + e^-1); row 1 (ratio -6) is ignored
    assert out["loss/conditional"].item() == pytest.approx(softplus(-1.0), abs=1e-6)
    assert out["rewards/conditional_margins"].item() == pytest.approx(1.0)
    none = preference_losses(policy, reference, beta=0.5, conditional_weight=1.0, anchor_weight=1.0, conditional_mask=t(0.0, 0.0))
    assert none["loss/conditional"].item() == 0.0
    assert none["loss"].item() == pytest.approx(none["loss/dpo"].item() + none["loss/anchor"].item())
