"""The self-describing checkpoint: save -> load gives identical outputs; export merges LoRA."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from clinlm_toys import make_qwen2_folder, make_whisper_encoder_folder, tiny_overrides, write_toy_bench
from typer.testing import CliRunner

import clinlm
from clinlm.cli import app
from clinlm.models.checkpoint import export_merged, load_checkpoint
from clinlm.train.data import read_rows
from clinlm.train.run import train_from_config
from clinlm.train.sft import collator_for, encode_rows

LORA = "model.lora={r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_toy_bench(tmp_path_factory.mktemp("bench"), n_patients=12)


@pytest.fixture(scope="module")
def embedded_ckpt(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("embedded")
    return train_from_config("configs/stetholm_tiny.yaml", tiny_overrides(bench, out))


@pytest.fixture(scope="module")
def lora_ckpt(bench, tmp_path_factory):
    """Qwen2 LM (tied embeddings) with LoRA, and a Whisper encoder as the tower."""
    tmp = tmp_path_factory.mktemp("lora")
    qwen, whisper = make_qwen2_folder(tmp / "qwen2"), make_whisper_encoder_folder(tmp / "whisper")
    over = tiny_overrides(bench, tmp / "run") + [f"model.language_model={qwen}", f"model.audio_tower={whisper}", LORA, "train.lr=0.05"]
    return train_from_config("configs/stetholm_tiny.yaml", over)


def logits(model, rows):
    ds, _ = encode_rows(rows, model, max_length=512)
    batch = collator_for(model)([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        return model.eval()(**batch).logits


@pytest.mark.parametrize("which", ["embedded_ckpt", "lora_ckpt"])
def test_save_then_load_gives_identical_outputs(which, bench, request):
    ckpt = request.getfixturevalue(which)
    rows = read_rows(bench["test"])
    a = clinlm.load(ckpt)
    b = load_checkpoint(ckpt)
    # the loaded model is a fresh build (new random init) overwritten by the saved weights
    assert torch.equal(logits(a, rows), logits(b, rows))
    # and it is not trivially so: the trained weights differ from a freshly built model's
    fresh = {k: v for k, v in type(a)(a.config).state_dict().items()}
    assert any(not torch.equal(v, fresh[k]) for k, v in a.state_dict().items())


def test_checkpoint_folder_describes_itself(embedded_ckpt, lora_ckpt):
    for ckpt in (embedded_ckpt, lora_ckpt):
        names = {p.name for p in ckpt.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "features.json", "clinlm.yaml", "provenance.json"} <= names
        prov = json.loads((ckpt / "provenance.json").read_text())
        assert {"torch", "transformers", "peft", "clinlm"} <= set(prov["versions"]) and prov["command"]
        recipe = yaml.safe_load((ckpt / "clinlm.yaml").read_text())
        assert recipe["train"]["max_steps"] == 2 and recipe["model"]["num_audio_tokens"] == 2
        assert clinlm.load(ckpt).tokenizer.chat_template
    feats = json.loads((embedded_ckpt / "features.json").read_text())
    assert feats["kind"] == "logmel" and len(feats["mean"]) == feats["n_mels"] + len(feats["extras"]) and feats["band_hz"] == [25.0, 1800.0]
    assert (lora_ckpt / "adapter" / "adapter_config.json").exists() and (lora_ckpt / "feature_extractor" / "preprocessor_config.json").exists()
    assert not (embedded_ckpt / "adapter").exists()  # the embedded LM is trained fully, no LoRA


def test_export_merges_lora_into_a_plain_transformers_folder(lora_ckpt, bench, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = load_checkpoint(lora_ckpt)
    lora_b = [p for n, p in model.language_model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # training moved LoRA off its zero init
    out = export_merged(lora_ckpt, tmp_path / "merged")
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert not any("lora" in k for k in plain.state_dict())
    ids = torch.tensor([tok.apply_chat_template([{"role": "user", "content": "Is there a murmur?"}], add_generation_prompt=True, tokenize=True, return_dict=False)])
    with torch.no_grad():
        ours = model.language_model(input_ids=ids).logits
        theirs = plain(input_ids=ids).logits
        base = model.language_model.get_base_model()
        with model.language_model.disable_adapter():
            without_lora = base(input_ids=ids).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, without_lora, atol=1e-4)  # the merge really carried the adapter


def test_cli_export_and_a_clear_error_for_a_wrong_folder(lora_ckpt, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(lora_ckpt), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "config.json").exists()
    res = runner.invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not a clinlm checkpoint" in " ".join(res.output.split())
