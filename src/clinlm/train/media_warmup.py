"""Media tower warm-up inside `clinlm train`: a short supervised stage for a random tower before SFT.

(`train/tower_warmup.py` is the audio counterpart that works from record tables, with per-frame
targets, and writes an encoder folder; this one works in-run, for any media kind, from the labels
in the instruction rows' `answer`s: the ECG recipe uses it.)

Why: a language model trained from scratch and a random tower learn together poorly. Early on
the tower's features carry little, the LM learns to answer from the text alone, and the gradient
that reaches the tower through the LM's attention is too weak to teach it, e.g. to tell atrial
fibrillation from sinus rhythm: on 160 simulated training ECGs the SFT-trained tower's pooled
features separated AF with a linear-probe AUROC of 0.71, while the same tower trained directly on
the labels reached 0.99 in ten epochs (16 s of CPU). Worse, when SFT may change the tower it
collapses: the LM treats the still-unreadable ECG tokens as noise and the tower learns to emit a
near-constant output (across-ECG spread 10% of its size, 76% for a random tower), after which
nothing can be learned from it. Pretrained encoders avoid this (PULSE uses a frozen CLIP); the
built-in towers get the same treatment here: warm up, then freeze (`model.freeze.ecg_tower:
true`), and SFT trains the projector and the LM to read features that already mean something.

What it trains: for each media kind the model takes, the tower plus a throw-away linear head on
the projector's pooling (mean and max over the tower's frames, `models/projector.py`), with a
masked binary cross-entropy over the labels the *training* rows state about each item:
- ECG rows (`bench/ecg_facts.py`): `answer["findings"]`, every finding labelled yes or no;
- auscultation binary rows (`bench/facts.py`): `answer["finding"]` -> `answer["label"]`.
Unknown labels are masked out (never treated as "no"); only training rows are read, so nothing
about validation or test items is seen. The head is discarded; the tower keeps its weights.

    train:
      tower_warmup_epochs: 10     # 0 = off (the default)
      tower_warmup_lr: 1.0e-3
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from clinlm.models.media import model_kinds


def item_targets(rows: list[dict[str, Any]], rows_key: str) -> dict[str, dict[str, float]]:
    """{media path: {finding: 1.0 (yes) | 0.0 (no)}} from the rows' structured answers."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        answer = row.get("answer") or {}
        labels = dict(answer.get("findings") or {}) if isinstance(answer.get("findings"), dict) else {}
        if row.get("task") == "binary" and "finding" in answer:
            labels[answer["finding"]] = answer.get("label")
        for path in row.get(rows_key) or []:
            for finding, label in labels.items():
                if label in ("yes", "no"):
                    out.setdefault(path, {})[finding] = 1.0 if label == "yes" else 0.0
    return out


def _pooled(hidden: torch.Tensor) -> torch.Tensor:
    """(batch, frames, d) -> (batch, 2d): mean and max over frames, as the projector pools."""
    return torch.cat([hidden.mean(1), hidden.amax(1)], dim=1)


def fit_tower_on_labels(tower: nn.Module, featurise, targets: dict[str, dict[str, float]], epochs: int, lr: float = 1e-3,
                        batch_size: int = 32, seed: int = 0) -> tuple[nn.Linear, list[str], float]:
    """Train `tower` plus a new linear head on {item: {finding: 0/1}} (missing labels masked out).

    `featurise`: item path -> input tensor. Returns (head, findings in head order, last batch loss).
    The tower is trained even when its parameters are frozen for SFT; their flags are restored.
    """
    findings = sorted({f for labels in targets.values() for f in labels})
    paths = sorted(targets)
    y = torch.tensor([[targets[p].get(f, 0.0) for f in findings] for p in paths])  # (items, findings)
    mask = torch.tensor([[float(f in targets[p]) for f in findings] for p in paths])
    generator = torch.Generator().manual_seed(seed)
    device = next(tower.parameters()).device
    head = nn.Linear(2 * tower.hidden_size, len(findings)).to(device)
    # "Warm up, then freeze" keeps the learned features from drifting while the LM learns.
    grads = {p: p.requires_grad for p in tower.parameters()}
    for p in grads:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(list(tower.parameters()) + list(head.parameters()), lr=lr)
    was_training = tower.training
    tower.train()
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        order = torch.randperm(len(paths), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = torch.stack([featurise(paths[i]) for i in idx.tolist()]).to(device)  # (batch, *feature shape)
            logits = head(_pooled(tower(x)))
            m = mask[idx].to(device)
            loss = (nn.functional.binary_cross_entropy_with_logits(logits, y[idx].to(device), reduction="none") * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    tower.train(was_training)
    for p, flag in grads.items():
        p.requires_grad_(flag)
    return head, findings, float(loss.item())


def warm_up_towers(model, rows: list[dict[str, Any]], epochs: int, lr: float = 1e-3, batch_size: int = 32,
                   seed: int = 0, console=None) -> dict[str, Any]:
    """Train each tower of `model` on the labels of its items in `rows` (see the module doc); returns a summary."""
    summary: dict[str, Any] = {}
    features = getattr(model, "media_features", None) or {}
    for kind in model_kinds(model):
        targets = item_targets(rows, kind.rows_key)
        if not targets or not any(targets.values()) or kind.name not in features:
            summary[kind.name] = "no labelled items: not warmed up"
            continue
        # The head is thrown away; the tower keeps its weights.
        _, findings, loss = fit_tower_on_labels(getattr(model, kind.tower), features[kind.name], targets, epochs, lr,
                                                batch_size, seed)
        summary[kind.name] = {"items": len(targets), "findings": findings, "epochs": epochs, "last_batch_loss": round(loss, 4)}
        if console is not None:
            console.print(f"  {kind.tower} warm-up: {len(targets)} items, {len(findings)} labels, {epochs} epochs, last loss {loss:.3f}")
    return summary
