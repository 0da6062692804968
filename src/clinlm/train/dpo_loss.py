"""DPO and mDPO losses as plain functions of summed log-probabilities (no model inside).

Notation, per preference row (x = prompt, a = the row's audio, a' = its rejected audio):
    r(y | a) = log pi(y | x, a) - log pi_ref(y | x, a)      the implicit reward / beta
               (sums over the response tokens; pi = the policy, pi_ref = the frozen reference)

DPO (Rafailov et al. 2023), the response preference, `loss_type`:
    sigmoid   -log sigmoid(beta * (r(y_w|a) - r(y_l|a)))
    hinge     relu(1 - beta * (r(y_w|a) - r(y_l|a)))
    ipo       (r(y_w|a)/|y_w| - r(y_l|a)/|y_l| - 1/(2 beta))^2     (per-token, as TRL does)
These are TRL's formulas (trl.DPOTrainer, `loss_type` of the same names); tests check the two agree.

mDPO (Wang et al. 2024, "mDPO: Conditional Preference Optimization for Multimodal LLMs") adds:
    conditional   the same pairwise loss with the *same* chosen answer under the real audio vs
                  under the rejected (degraded / mismatched / swapped) audio:
                  pair(r(y_w|a), r(y_w|a')), so the answer's likelihood must depend on the audio;
    anchor        -log sigmoid(beta * r(y_w|a) - delta): keeps the chosen reward from falling
                  below delta (0), which plain DPO allows as long as the rejected falls faster.
    loss = dpo + conditional_weight * conditional + anchor_weight * anchor

`preference_losses` returns every term by name (`loss/dpo`, `loss/conditional`, `loss/anchor`)
and the usual diagnostics (`rewards/chosen`, `rewards/rejected`, `rewards/margins`,
`rewards/accuracies`, `rewards/conditional`, `rewards/conditional_margins`, `logps/...`), rewards
being beta * r as in TRL's logs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "hinge", "ipo")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability of the labelled tokens, number of labelled tokens) per sequence.

    logits (batch, seq, vocab) predict the next token; labels (batch, seq) with ignore_index
    where nothing is scored. Returns two (batch,) tensors.
    """
    labels = labels[:, 1:]
    logits = logits[:, :-1].float()
    mask = labels != ignore_index
    safe = labels.masked_fill(~mask, 0)
    # log_softmax then gather: (batch, seq-1) log-probabilities of the actual next tokens
    token_logps = torch.gather(logits.log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def pair_loss(chosen_ratio: torch.Tensor, rejected_ratio: torch.Tensor, beta: float, loss_type: str = "sigmoid",
              chosen_len: torch.Tensor | None = None, rejected_len: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row pairwise preference loss from the log-ratios r(y_w), r(y_l) (each (batch,))."""
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    if loss_type == "hinge":
        return torch.relu(1 - beta * (chosen_ratio - rejected_ratio))
    if loss_type == "ipo":
        if chosen_len is None or rejected_len is None:
            raise ValueError("the ipo loss needs the response lengths (tokens)")
        delta = chosen_ratio / chosen_len.clamp(min=1) - rejected_ratio / rejected_len.clamp(min=1)
        return (delta - 1 / (2 * beta)) ** 2
    raise ValueError(f"unknown dpo.loss_type {loss_type!r}; known: {', '.join(LOSS_TYPES)}")


def preference_losses(
    policy: dict[str, torch.Tensor],
    reference: dict[str, torch.Tensor],
    lengths: dict[str, torch.Tensor] | None = None,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    conditional_weight: float = 0.0,
    anchor_weight: float = 0.0,
    anchor_delta: float = 0.0,
    conditional_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The loss and its named parts, from summed log-probabilities per row.

    `policy` / `reference`: {"chosen", "rejected"} (and "conditional": the chosen answer under the
    rejected audio, for mDPO), each (batch,). `lengths`: response tokens, same keys (ipo needs it).
    `conditional_mask` (batch,): 1 where the row has a rejected audio for the conditional term
    (the term averages over those rows; 0 rows give 0). "loss" keeps its graph; every other entry
    is a detached scalar for logging.
    """
    lengths = lengths or {}
    chosen = policy["chosen"] - reference["chosen"]  # (batch,)
    rejected = policy["rejected"] - reference["rejected"]
    dpo = pair_loss(chosen, rejected, beta, loss_type, lengths.get("chosen"), lengths.get("rejected")).mean()
    loss = dpo
    logs = {
        "loss/dpo": dpo,
        "rewards/chosen": beta * chosen.mean(),
        "rewards/rejected": beta * rejected.mean(),
        "rewards/margins": beta * (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).float().mean(),
        "logps/chosen": policy["chosen"].mean(),
        "logps/rejected": policy["rejected"].mean(),
    }
    if "conditional" in policy:
        conditional = policy["conditional"] - reference["conditional"]
        mask = torch.ones_like(chosen) if conditional_mask is None else conditional_mask.to(chosen.dtype)
        n = mask.sum().clamp(min=1)

        def masked_mean(x: torch.Tensor) -> torch.Tensor:
            return (x * mask).sum() / n

        cond = masked_mean(pair_loss(chosen, conditional, beta, loss_type, lengths.get("chosen"), lengths.get("conditional")))
        anchor = (-F.logsigmoid(beta * chosen - anchor_delta)).mean()
        loss = loss + conditional_weight * cond + anchor_weight * anchor
        logs.update({
            "loss/conditional": cond,
            "loss/anchor": anchor,
            "rewards/conditional": beta * masked_mean(conditional),
            "rewards/conditional_margins": beta * masked_mean(chosen - conditional),
            "logps/conditional": masked_mean(policy["conditional"]),
        })
    return {"loss": loss, **{k: v.detach() for k, v in logs.items()}}
