"""clinlm's DPO loss agrees with TRL's DPOTrainer on a text-only tiny model (same rows, same weights).

TRL cannot take the composite model's audio (clinlm/train/dpo.py says why), so clinlm computes
the loss itself; on text, where TRL can run, the two must give the same numbers.
"""

from __future__ import annotations

import copy

import pytest
import torch
from clinlm_toys import make_llama_folder, tiny_model_cfg

from clinlm.models.build import build_model
from clinlm.train.dpo import PreferenceTrainer
from clinlm.train.preference_data import GROUPS, PreferenceCollator, encode_preference_rows
from clinlm.train.sft import collator_for, training_arguments

ROWS = [
    {"prompt": [{"role": "user", "content": "Is there a murmur?"}],
     "chosen": [{"role": "assistant", "content": "Yes, a murmur is present."}],
     "rejected": [{"role": "assistant", "content": "No, there is no murmur."}], "record_ids": ["r0"]},
    {"prompt": [{"role": "user", "content": "Are the heart sounds normal?"}],
     "chosen": [{"role": "assistant", "content": "The heart sounds are normal."}],
     "rejected": [{"role": "assistant", "content": "Crackles and wheezes are heard over the lungs."}], "record_ids": ["r1"]},
    {"prompt": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Which one has a murmur?"}],
     "chosen": [{"role": "assistant", "content": "The murmur is in the first recording."}],
     "rejected": [{"role": "assistant", "content": "Neither."}], "record_ids": ["r2"]},
    {"prompt": [{"role": "user", "content": "Compare the recordings."}],
     "chosen": [{"role": "assistant", "content": "The second recording has a murmur."}],
     "rejected": [{"role": "assistant", "content": "Yes."}], "record_ids": ["r3"]},
]


def _text_model(kind: str, tmp_path):
    torch.manual_seed(0)
    texts = [m["content"] for r in ROWS for k in ("prompt", "chosen", "rejected") for m in r[k]] * 20
    lm = "tiny" if kind == "embedded" else str(make_llama_folder(tmp_path / "llama"))
    rows = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": t}]} for t in texts]
    return build_model(tiny_model_cfg(audio_tower="none", language_model=lm), {}, rows)


def _perturbed(model):
    """A policy that differs from the reference, so the log-ratios are not all zero."""
    policy = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.language_model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    policy.tokenizer = model.tokenizer
    return policy


@pytest.mark.parametrize("kind", ["embedded", "llama_folder"])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_loss_and_rewards_match_trl(kind, loss_type, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    ref = _text_model(kind, tmp_path)
    policy = _perturbed(ref)
    beta = 0.3
    tok = ref.tokenizer

    # TRL on the plain language models (copies: TRL patches their forward with its fused head)
    trl_args = DPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, beta=beta, loss_type=[loss_type],
                         report_to="none", per_device_train_batch_size=len(ROWS), max_length=None)
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in ROWS])
    trl = DPOTrainer(model=copy.deepcopy(policy.language_model), ref_model=copy.deepcopy(ref.language_model),
                     args=trl_args, train_dataset=data, processing_class=tok)
    trl_batch = trl.data_collator([trl.train_dataset[i] for i in range(len(ROWS))])
    trl.model.train()  # TRL logs under "train" only in training mode (a from_pretrained LM starts in eval mode)
    trl_loss = trl.compute_loss(trl.model, trl_batch)
    trl_logs = {k: v[-1] for k, v in trl._metrics["train"].items()}

    # clinlm on the composite (text-only) models
    ds, skipped = encode_preference_rows(ROWS, policy, "dpo", max_length=512, degraded_dir=tmp_path / "deg")
    assert not skipped
    ours = PreferenceTrainer(model=policy, ref_model=ref, stage="dpo", dpo={"beta": beta, "loss_type": loss_type},
                             args=training_arguments({"batch_size": len(ROWS)}, tmp_path / "ours", has_val=False),
                             train_dataset=ds, data_collator=PreferenceCollator(collator_for(policy), GROUPS["dpo"]))
    batch = ours.data_collator(ds.items)
    # both score exactly the same tokens: prompt + response, response tokens only
    trl_seqs = [ids[mask.bool()].tolist() for ids, mask in zip(trl_batch["input_ids"], trl_batch["completion_mask"])]
    our_seqs = [ids[labels != -100].tolist() for ids, labels in zip(batch["input_ids"], batch["labels"])]
    assert trl_seqs == our_seqs
    policy.train()
    loss = ours.compute_loss(policy, batch)
    logs = {k: v[-1] for k, v in ours._metrics["train"].items()}

    assert abs(trl_logs["rewards/margins"]) > 0.01  # the policy really differs from the reference
    assert loss.item() == pytest.approx(trl_loss.item(), rel=1e-4, abs=1e-5)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"):
        assert logs[key] == pytest.approx(trl_logs[key], rel=1e-4, abs=1e-5), key
