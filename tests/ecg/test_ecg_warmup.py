"""Tower warm-up before SFT: only the tower learns, from training labels, unknown labels masked."""

from __future__ import annotations

import numpy as np
import torch
from ecg_model_toys import TINY_ECG, write_ecg
from sklearn.linear_model import LogisticRegression

from clinlm.models.build import build_model
from clinlm.train.media_warmup import item_targets, warm_up_towers


def _rows(root, n=24):
    rows = []
    for i in range(n):
        af = i % 2 == 1
        path = write_ecg(root / f"{i:03d}", af=af, seed=i)
        findings = {"af": "yes" if af else "no", "sr": "no" if af else "yes", "norm": "unknown"}
        rows.append({"messages": [{"role": "user", "content": "<ecg>\nIs it AF?"}, {"role": "assistant", "content": "Yes." if af else "No."}],
                     "ecgs": [path], "task": "ecg_closed", "record_ids": [f"t/{i}"], "answer": {"finding": "af", "label": findings["af"], "findings": findings}})
    return rows


def test_targets_keep_yes_and_no_and_drop_unknown(tmp_path):
    rows = _rows(tmp_path, 4)
    rows.append({"messages": [], "audios": ["/a.wav"], "task": "binary", "answer": {"finding": "murmur", "label": "unknown"}})
    targets = item_targets(rows, "ecgs")
    assert targets[rows[1]["ecgs"][0]] == {"af": 1.0, "sr": 0.0} and "norm" not in targets[rows[0]["ecgs"][0]]
    assert item_targets(rows, "audios") == {}  # an unknown binary label is no target


def _pooled(model, paths):
    with torch.no_grad():
        h = model.ecg_tower(torch.stack([model.media_features["ecg"](p) for p in paths]))
    return torch.cat([h.mean(1), h.amax(1)], 1).numpy()


def test_warm_up_teaches_the_tower_and_leaves_the_rest(tmp_path):
    rows = _rows(tmp_path)
    torch.manual_seed(0)
    # frozen for SFT ("warm up, then freeze"): the warm-up still trains it, and it stays frozen after
    model = build_model({"audio_tower": "none", "ecg_tower": "builtin", "ecg_tower_size": "tiny", "language_model": "tiny",
                         "freeze": {"ecg_tower": True}}, {"ecg": TINY_ECG}, rows)
    train, test = rows[:16], rows[16:]
    y = lambda rs: np.array([r["answer"]["label"] == "yes" for r in rs])  # noqa: E731
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = warm_up_towers(model, train, epochs=30, lr=3e-3, batch_size=8)
    assert summary["ecg"]["items"] == 16 and summary["ecg"]["findings"] == ["af", "sr"]
    assert summary["ecg"]["last_batch_loss"] < 0.2  # the tower (with its throw-away head) fits the labels
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("ecg_tower.") for k in changed)  # projector and LM untouched
    assert not any(p.requires_grad for p in model.ecg_tower.parameters())
    probe = LogisticRegression(max_iter=1000).fit(_pooled(model, [r["ecgs"][0] for r in train]), y(train))
    assert probe.score(_pooled(model, [r["ecgs"][0] for r in test]), y(test)) >= 0.875  # held-out items
