"""ECG and vision towers in the composite model: tiny random configs, placeholders per kind,
save -> load identical outputs, old audio-only configs, `clinlm ask --ecg/--image`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ecg_model_toys import TINY_ECG, TINY_IMAGE, tiny_ecg_overrides, write_ecg
from typer.testing import CliRunner

import clinlm
from clinlm.cli import app
from clinlm.models.build import build_model
from clinlm.models.checkpoint import load_checkpoint
from clinlm.models.composite import ClinConfig, ClinModel
from clinlm.models.ecg_tower import ConvEcgEncoder
from clinlm.models.vision_tower import ConvImageEncoder
from clinlm.train.collator import IGNORE, encode_row
from clinlm.train.data import check_row, read_rows
from clinlm.train.run import train_from_config
from clinlm.train.sft import collator_for, encode_rows


def _png(path, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
    return str(path)


def _row(i, media, af):
    q = "Does this ECG show atrial fibrillation?"
    a = "Yes, atrial fibrillation is present." if af else "No, there is no atrial fibrillation."
    kind, token = ("ecgs", "<ecg>") if media.endswith(tuple("0123456789")) else ("images", "<image>")
    return {"messages": [{"role": "user", "content": f"{token}\n{q}"}, {"role": "assistant", "content": a}], kind: [media],
            "task": "ecg_closed", "record_ids": [f"toy/{i}"], "patient_id": f"toy/p{i}",
            "answer": {"finding": "af", "label": "yes" if af else "no", "findings": {}}}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """train/val/test.jsonl mixing signal rows, image rows and one row with both."""
    root = tmp_path_factory.mktemp("ecgbench")
    splits = {"train": [], "val": [], "test": []}
    for i in range(12):
        split = "train" if i % 6 < 4 else ("val" if i % 6 == 4 else "test")
        ecg = write_ecg(root / "wfdb" / f"{i:03d}", af=bool(i % 2), seed=i)
        img = _png(root / "img" / f"{i:03d}.png", seed=i)
        splits[split] += [_row(i, ecg, bool(i % 2)), _row(i, img, bool(i % 2))]
        if i == 0 or split == "test":
            both = _row(i, ecg, bool(i % 2))
            both["messages"][0]["content"] = "<ecg> and its printout <image>: is it AF?"
            both["images"] = [img]
            splits[split].append({**both, "split": split})
    for split, rows in splits.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps({**r, "split": split}) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def ckpt(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train_from_config("configs/ecg_tiny.yaml", tiny_ecg_overrides(bench, out, vision=True))


def test_builtin_towers_give_sequences_of_the_documented_length():
    ecg = ConvEcgEncoder(leads=12, channels=8, layers=3)
    assert ecg(torch.zeros(2, 200, 12)).shape == (2, 25, 8)  # 200 / 2**3 frames
    vision = ConvImageEncoder([4, 8], layers=2)
    assert vision(torch.zeros(2, 3, 32, 48)).shape == (2, 8 * 12, 8)  # (32/4) x (48/4) cells


def _patchtst_folder(path, leads=12, samples=200):
    from transformers import PatchTSTConfig, PatchTSTModel

    torch.manual_seed(0)
    cfg = PatchTSTConfig(num_input_channels=leads, context_length=samples, patch_length=20, patch_stride=20, d_model=8,
                         num_hidden_layers=1, num_attention_heads=2, ffn_dim=16)
    PatchTSTModel(cfg).save_pretrained(path)
    return path


def _vision_folder(path, kind):
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTImageProcessorPil, ViTModel

    torch.manual_seed(0)
    if kind == "vit":
        ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32)).save_pretrained(path)
    else:
        Dinov2Model(Dinov2Config(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 mlp_ratio=2)).save_pretrained(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_transformers_ecg_tower_from_a_folder(bench, tmp_path):
    rows = read_rows(bench / "train.jsonl")
    folder = _patchtst_folder(tmp_path / "patchtst")
    cfg = {"audio_tower": "none", "ecg_tower": str(folder), "language_model": "tiny", "num_ecg_tokens": 2}
    model = build_model(cfg, {"ecg": TINY_ECG}, rows)
    assert model.ecg_tower.hidden_size == 12 * 8  # leads side by side per patch
    sig = [r for r in rows if r.get("ecgs") and not r.get("images")]
    batch = collator_for(model)([encode_rows(sig[:2], model, 512)[0][i] for i in range(2)])
    assert batch["ecg_features"].shape == (2, 200, 12)
    assert torch.isfinite(model(**batch).loss)
    # a folder whose input geometry is not the features' is refused with what to change
    with pytest.raises(ValueError, match=r"takes 12 channels x 200 samples.*12 leads x 1000 samples"):
        build_model(cfg, {"ecg": {**TINY_ECG, "seconds": 10}}, rows)


@pytest.mark.parametrize("kind", ["vit", "dinov2"])
def test_transformers_vision_tower_from_a_folder(bench, tmp_path, kind):
    rows = [r for r in read_rows(bench / "train.jsonl") if r.get("images") and not r.get("ecgs")]
    folder = _vision_folder(tmp_path / kind, kind)
    model = build_model({"audio_tower": "none", "vision_tower": str(folder), "language_model": "tiny", "num_image_tokens": 2}, {}, rows)
    batch = collator_for(model)([encode_rows(rows[:2], model, 512)[0][i] for i in range(2)])
    assert batch["pixel_values"].shape == (2, 3, 32, 32)  # the folder's image processor decides the size
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.vision_projector.net[0].weight.grad.abs().sum() > 0


def test_each_kind_fills_only_its_own_slots_in_order(ckpt, bench):
    model = clinlm.load(ckpt)
    rows = read_rows(bench / "test.jsonl")
    ds, _ = encode_rows(rows, model, 512)
    batch = collator_for(model)([ds[i] for i in range(len(ds))])
    ids = batch["input_ids"]
    embeds = model.embed(ids, None, batch["ecg_features"], batch["pixel_values"])
    plain = model.get_input_embeddings()(ids)
    ecg_slots, img_slots = ids == model.config.ecg_token_id, ids == model.config.image_token_id
    text = ~(ecg_slots | img_slots)
    assert torch.equal(embeds[text], plain[text])
    ecg = model.encode_media("ecg", batch["ecg_features"])  # (n_ecgs, 2, hidden)
    img = model.encode_media("image", batch["pixel_values"])  # (n_images, 3, hidden)
    assert torch.allclose(embeds[ecg_slots].reshape(ecg.shape), ecg, atol=1e-6)
    assert torch.allclose(embeds[img_slots].reshape(img.shape), img, atol=1e-6)
    assert (batch["labels"][ecg_slots | img_slots] == IGNORE).all()


def test_placeholder_count_mismatches_name_the_row(ckpt, bench):
    model = clinlm.load(ckpt)
    row = read_rows(bench / "test.jsonl")[0]
    kind = "ecgs" if row.get("ecgs") else "images"
    bad = {**row, kind: row[kind] * 2}
    with pytest.raises(ValueError, match=r"toy/\d+.*1 <(ecg|image)> placeholder\(s\).*2 .* file\(s\)"):
        check_row(bad)
    item = encode_row(row, model.tokenizer, {"ecg": 2, "image": 3})
    item[kind] = item[kind] * 2  # tampered after encoding: the collator counts the slots per kind
    with pytest.raises(ValueError, match=r"toy/\d+ .*: \d+ <(ecg|image)> tokens for 2"):
        collator_for(model)([item])
    # the model counts per kind too
    ds, _ = encode_rows([row], model, 512)
    batch = collator_for(model)([ds[0]])
    key = "ecg_features" if kind == "ecgs" else "pixel_values"
    with pytest.raises(ValueError, match=r"token count does not match.*per row \[\d+\]"):
        model(**{**batch, key: torch.cat([batch[key], batch[key]])})
    # a kind the model does not take is refused naming the row and the missing tower
    ecg_only = {**row, "messages": [{"role": "user", "content": "<audio>Is it AF?"}, row["messages"][1]], "audios": ["/x.wav"], kind: []}
    with pytest.raises(ValueError, match=r"toy/\d+.*no audio_tower"):
        encode_row(ecg_only, model.tokenizer, {"ecg": 2, "image": 3})


def test_save_then_load_gives_identical_outputs_with_ecg_and_image_inputs(ckpt, bench):
    rows = read_rows(bench / "test.jsonl")
    assert any(r.get("ecgs") and r.get("images") for r in rows)
    a, b = clinlm.load(ckpt), load_checkpoint(ckpt)

    def logits(m):
        ds, _ = encode_rows(rows, m, 512)
        with torch.no_grad():
            return m(**collator_for(m)([ds[i] for i in range(len(ds))])).logits

    assert torch.equal(logits(a), logits(b))
    fresh = type(a)(a.config).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in a.state_dict().items() if k.startswith(("ecg_", "vision_")))
    # the preprocessing travelled with the model
    saved = json.loads((ckpt / "ecg_features.json").read_text())
    assert saved["sample_rate"] == 100 and saved["seconds"] == 2 and saved["leads"][:3] == ["I", "II", "III"]
    assert len(saved["std"]) == 12 and all(s > 0 for s in saved["std"])
    assert json.loads((ckpt / "image_features.json").read_text())["size"] == TINY_IMAGE["size"]
    assert a.config.audio_tower is None and a.audio_tower is None


def test_an_audio_only_config_from_before_ecg_still_loads(tmp_path):
    from clinlm_toys import TINY_FEATURES, tiny_model_cfg, write_toy_bench

    rows = read_rows(write_toy_bench(tmp_path / "bench", n_patients=6, comparison=False)["train"])
    model = build_model(tiny_model_cfg(), TINY_FEATURES, rows)
    old = {k: v for k, v in model.config.to_dict().items()
           if not k.startswith(("ecg", "vision", "num_ecg", "num_image", "image_token"))}
    config = ClinConfig.from_dict(old)
    rebuilt = ClinModel(config)
    assert rebuilt.ecg_tower is None and rebuilt.vision_tower is None and rebuilt.audio_tower is not None
    missing, unexpected = rebuilt.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and set(missing) <= set(rebuilt.all_tied_weights_keys)


def test_ask_with_an_ecg_record_and_an_image(ckpt, bench):
    rows = read_rows(bench / "test.jsonl")
    ecg = next(r["ecgs"][0] for r in rows if r.get("ecgs"))
    img = next(r["images"][0] for r in rows if r.get("images"))
    runner = CliRunner()
    for args in (["--ecg", ecg + ".hea"], ["--image", img], ["--ecg", ecg, "--image", img]):
        res = runner.invoke(app, ["ask", str(ckpt), *args, "Is this atrial fibrillation?", "--max-new-tokens", "3"])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["ask", str(ckpt), "--audio", img, "Is this AF?"])
    assert res.exit_code == 2 and "no audio_tower" in res.output
    res = runner.invoke(app, ["ask", str(ckpt), "--ecg", str(bench / "missing"), "Is this AF?"])
    assert res.exit_code == 2 and "not found" in res.output


def test_columns_vision_tower_and_min_filter_train_and_travel_with_the_checkpoint(bench, tmp_path):
    from clinlm.models.vision_tower import ConvColumnEncoder

    over = tiny_ecg_overrides(bench, tmp_path / "run", vision=True) + [
        "model.vision_tower_size=columns", "features.image.size=[32, 64]", "features.image.min_filter=3"]
    ckpt = train_from_config("configs/ecg_tiny.yaml", over)
    model = clinlm.load(ckpt)
    assert isinstance(model.vision_tower, ConvColumnEncoder)
    assert json.loads((ckpt / "image_features.json").read_text())["min_filter"] == 3
    rows = [r for r in read_rows(bench / "test.jsonl") if r.get("images")]
    ds, _ = encode_rows(rows, model, 512)
    batch = collator_for(model)([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, load_checkpoint(ckpt)(**batch).logits)
