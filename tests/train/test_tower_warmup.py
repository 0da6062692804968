"""Tower warm-up: frame targets follow the labels, the tower learns, the folder loads as audio_tower."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clinlm_toys import heart_wav

from clinlm.models.encoder_folder import ENCODER_FILE, load_encoder_folder
from clinlm.records import Record, atomic_write_table, records_to_table
from clinlm.train.tower_warmup import TARGETS, frame_targets, warm_up_tower

FEATURES = {"max_seconds": 1.0, "extras": ["transient", "tonality"], "n_mels": 16}


def test_frame_targets_follow_the_labels():
    heart = {"modality": "heart", "murmur": "present", "abnormal": True}
    y = frame_targets(heart, frames=10, seconds_per_frame=0.5)
    assert (y[:, TARGETS.index("murmur")] == 1).all() and (y[:, TARGETS.index("abnormal")] == 1).all()
    assert np.isnan(y[:, TARGETS.index("crackle")]).all()  # does not apply to a heart recording
    assert (y[:, TARGETS.index("murmur_unknown")] == 0).all()  # the annotator could call it
    # a murmur patient's recording at a site where the murmur is not listed: "no" here, as the bench asks
    elsewhere = frame_targets({"modality": "heart", "murmur": "present", "murmur_here": "no", "abnormal": True}, 10, 0.5)
    assert (elsewhere[:, TARGETS.index("murmur")] == 0).all()
    unknown = frame_targets({"modality": "heart", "murmur": "unknown", "abnormal": None}, 10, 0.5)
    # unknown stays unknown (no murmur target, no loss), and "the annotator could not call it" is its own target
    assert (unknown[:, TARGETS.index("murmur_unknown")] == 1).all()
    assert np.isnan(np.delete(unknown, TARGETS.index("murmur_unknown"), axis=1)).all()
    lung = {"modality": "lung", "abnormal": True, "events": [
        {"kind": "resp_cycle", "start_s": 0.0, "end_s": 2.0, "label": "normal"},
        {"kind": "resp_cycle", "start_s": 2.0, "end_s": 4.0, "label": "crackle"},
    ]}
    y = frame_targets(lung, frames=10, seconds_per_frame=0.5)  # frame centres 0.25 .. 4.75 s
    crackle = y[:, TARGETS.index("crackle")]
    assert (crackle[:4] == 0).all() and (crackle[4:8] == 1).all()
    assert (y[:, TARGETS.index("wheeze")][:8] == 0).all()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    recs = []
    for p in range(16):
        murmur = p % 2 == 0
        wav = heart_wav(root / "audio" / f"p{p}.wav", murmur=murmur, seed=p)
        recs.append(Record(
            record_id=f"toy/p{p}_AV", patient_id=f"toy/p{p}", dataset="toy", modality="heart", media=[str(wav)],
            murmur="present" if murmur else "absent", abnormal=murmur, split="train" if p < 12 else "test",
        ))
    atomic_write_table(records_to_table(recs), root / "rec" / "records.parquet")
    return root


def test_warm_up_learns_murmurs_and_writes_an_encoder_folder(records, tmp_path):
    out = warm_up_tower([records / "rec"], FEATURES, tmp_path / "enc", tower_size="tiny", steps=60, batch_size=8, lr=5e-3)
    meta = json.loads((out / ENCODER_FILE).read_text())
    assert meta["info"]["records"] == 12  # the training split only
    assert meta["info"]["loss_last_10"] < 0.7 * meta["info"]["loss_first_10"]
    tower, _, spec, fc = load_encoder_folder(out)
    assert fc.fitted and fc.extras == FEATURES["extras"] and spec["n_mels"] == 16 + 2
    # the trained tower separates murmur from no murmur on held-out patients better than chance:
    # a linear read-out of its time-pooled output ranks them
    from clinlm.signals.features import AudioFeatures

    feats = AudioFeatures(fc)
    held = [(records / "audio" / f"p{p}.wav", p % 2 == 0) for p in range(12, 16)]
    with torch.no_grad():
        pooled = torch.stack([tower(feats(str(w))[None]).amax(1)[0] for w, _ in held])  # (4, hidden)
    yes = pooled[[i for i, (_, m) in enumerate(held) if m]].mean(0)
    no = pooled[[i for i, (_, m) in enumerate(held) if not m]].mean(0)
    assert (yes - no).abs().max() > 0.1
    # the findings head is part of the saved tower: its probabilities are the last output channels
    assert spec["findings"] == list(TARGETS) and tower.hidden_size == tower.findings_head.in_features + len(TARGETS)
    with torch.no_grad():
        probs = torch.stack([tower(feats(str(w))[None])[0, :, -len(TARGETS):].mean(0) for w, _ in held])  # (4, targets)
    assert ((probs >= 0) & (probs <= 1)).all()
    murmur = probs[:, TARGETS.index("murmur")]
    assert min(murmur[i] for i, (_, m) in enumerate(held) if m) > max(murmur[i] for i, (_, m) in enumerate(held) if not m)


def test_warm_up_refuses_folders_without_training_audio(tmp_path):
    with pytest.raises(FileNotFoundError, match="clinlm ingest"):
        warm_up_tower([tmp_path / "nothing"], FEATURES, tmp_path / "enc")
