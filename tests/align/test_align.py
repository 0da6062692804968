"""`clinlm align`: config overrides, what trains and what does not, the loss falls, the encoder folder
loads as the audio tower of `clinlm train` (built-in and transformers encoders)."""

from __future__ import annotations

import json

import pytest
import torch
from align_fixtures import ALIGN_CONFIG, TINY_ALIGN, tiny_teacher, toy_recs  # noqa: F401  (pytest fixtures)
from clinlm_toys import make_whisper_encoder_folder, tiny_overrides, write_toy_bench
from typer.testing import CliRunner

from clinlm.align.objective import cka_loss, info_nce
from clinlm.align.run import align, load_align_config
from clinlm.align.teacher import load_teacher
from clinlm.cli import app
from clinlm.models.encoder_folder import is_encoder_folder, load_encoder_folder


def config(recs, out, *extra):
    return load_align_config(ALIGN_CONFIG, [f"data.records=[{recs['circor']},{recs['icbhi']}]", *TINY_ALIGN,
                                            f"train.output_dir={out}", *extra])


def test_bare_overrides_name_their_one_section():
    cfg = load_align_config(ALIGN_CONFIG, ["encoder=/some/folder", "teacher=minilm", "alignment=infonce", "train.epochs=2"])
    assert cfg["model"]["encoder"] == "/some/folder" and cfg["train"]["alignment"] == "infonce" and cfg["train"]["epochs"] == 2
    with pytest.raises(KeyError, match="no section"):
        load_align_config(ALIGN_CONFIG, ["encodr=builtin"])
    with pytest.raises(KeyError, match="no key"):
        load_align_config(ALIGN_CONFIG, ["train.alignmnet=cka"])


def _eval_align_loss(result, kind: str) -> float:
    """The alignment term over each dataset's recordings at once (eval mode: no masking), averaged
    over datasets as the dataset-pure batches see it: for before/after checks."""
    model, items = result["model"], result["items"]
    model.eval()
    losses = []
    for name in sorted(set(result["datasets"])):
        idx = torch.tensor([i for i, d in enumerate(result["datasets"]) if d == name])
        with torch.no_grad():
            audio = model.audio_head(model.embed(items.features[idx]))
            target = items.targets[idx]
            losses.append(cka_loss(audio, target).item() if kind == "cka"
                          else info_nce(audio, target, model.logit_scale.clamp(max=4.6052)).item())
    return sum(losses) / len(losses)


@pytest.mark.parametrize("kind", ["cka", "infonce"])
def test_teacher_frozen_encoder_trains_and_the_alignment_loss_falls(toy_recs, tiny_teacher, tmp_path, kind):
    teacher = load_teacher(str(tiny_teacher))  # a local transformers LM: mean-pooled last hidden layer
    before_teacher = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    cfg = config(toy_recs, tmp_path / "run", f"train.alignment={kind}", "train.max_steps=40", "train.lr=5e-3", "train.batch_size=16")
    start = align(config(toy_recs, tmp_path / "start", f"train.alignment={kind}", "train.lr=0"), teacher=teacher, progress=False)
    result = align(cfg, teacher=teacher, progress=False)
    # The teacher: not among the trained parameters, and its weights are exactly as loaded.
    trained = {id(p) for p in result["model"].parameters()}
    assert not any(id(p) in trained for p in teacher.module.parameters())
    assert all(torch.equal(v, teacher.module.state_dict()[k]) for k, v in before_teacher.items())
    # The encoder moved away from its (seed-identical) start; lr=0 leaves it where it began.
    tower0, *_ = load_encoder_folder(start["encoder"])
    tower1, *_ = load_encoder_folder(result["encoder"])
    s0, s1 = tower0.state_dict(), tower1.state_dict()
    assert all(torch.equal(s0[k], v) for k, v in result["start_state"].items())
    assert any(not torch.equal(s0[k], s1[k]) for k in s0)
    assert _eval_align_loss(result, kind) < 0.9 * _eval_align_loss(start, kind)  # 0.37 -> 0.25 (cka), 3.1 -> 2.5 (infonce)
    log = json.loads((tmp_path / "run" / "losses.json").read_text())
    assert any(f"align_{kind}" in h and "ssl_masked_patch" in h for h in log)  # losses logged by name


def test_builtin_random_probe_encoder_is_the_align_start(toy_recs, tiny_teacher, tmp_path):
    from clinlm.probe.embed import load_probe_encoder

    result = align(config(toy_recs, tmp_path / "run", f"model.teacher={tiny_teacher}"), progress=False)
    from clinlm.records import iter_records

    paths = [r.media[0] for r in iter_records(toy_recs["circor"])]
    enc = load_probe_encoder("builtin:random", config(toy_recs, tmp_path / "x"), paths)
    state = enc["tower"].state_dict()
    assert all(torch.equal(state[k], v) for k, v in result["start_state"].items())


def test_builtin_encoder_folder_is_an_audio_tower_for_clinlm_train(toy_recs, tiny_teacher, tmp_path):
    import clinlm
    from clinlm.train.run import train_from_config

    result = align(config(toy_recs, tmp_path / "run", f"model.teacher={tiny_teacher}"), progress=False)
    folder = result["encoder"]
    assert is_encoder_folder(folder)
    tower, _, spec, fc = load_encoder_folder(folder)
    assert fc.n_mels == 16 and fc.mean is not None  # the align run's features, fitted there
    bench = write_toy_bench(tmp_path / "bench", n_patients=6, comparison=False)
    recipe = ALIGN_CONFIG.parent / "stetholm_tiny.yaml"
    ckpt = train_from_config(recipe, tiny_overrides(bench, tmp_path / "sft") + [f"model.audio_tower={folder}", "train.lr=0"])
    model = clinlm.load(ckpt)
    assert model.features.cfg.n_mels == 16 and model.features.cfg.mean == fc.mean  # not the recipe's 64 bands, not re-fitted
    got = model.audio_tower.state_dict()
    assert all(torch.equal(got[k], v) for k, v in tower.state_dict().items())  # lr=0: the aligned weights went in


def test_transformers_encoder_aligns_and_loads_in_clinlm_train(toy_recs, tiny_teacher, tmp_path):
    import clinlm
    from transformers import AutoModel

    from clinlm.train.run import train_from_config

    whisper = make_whisper_encoder_folder(tmp_path / "whisper")
    result = align(config(toy_recs, tmp_path / "run", f"model.encoder={whisper}", f"model.teacher={tiny_teacher}"), progress=False)
    folder = result["encoder"]
    assert (folder / "config.json").exists() and (folder / "preprocessor_config.json").exists()
    before = AutoModel.from_pretrained(whisper).encoder.state_dict()
    after = AutoModel.from_pretrained(folder).encoder.state_dict()  # a normal transformers folder
    assert any(not torch.equal(before[k], after[k]) for k in before)
    bench = write_toy_bench(tmp_path / "bench", n_patients=6, comparison=False)
    ckpt = train_from_config(ALIGN_CONFIG.parent / "stetholm_tiny.yaml",
                             tiny_overrides(bench, tmp_path / "sft") + [f"model.audio_tower={folder}", "train.lr=0"])
    model = clinlm.load(ckpt)
    got = model.audio_tower.encoder.state_dict()
    assert all(torch.equal(got[k], v) for k, v in after.items())


def test_cli_align_and_its_errors(toy_recs, tiny_teacher, tmp_path):
    args = ["align", str(ALIGN_CONFIG), f"records=[{toy_recs['circor']}]", *TINY_ALIGN, f"teacher={tiny_teacher}",
            "--out", str(tmp_path / "run")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert is_encoder_folder(tmp_path / "run" / "encoder")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["records"] > 0 and summary["steps"] == 6 and summary["left_out"]["other split"] > 0  # train split only
    res = CliRunner().invoke(app, ["align", str(ALIGN_CONFIG), "encoder=/no/such/model", f"records=[{toy_recs['circor']}]", "reports=null",
                                   "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "encoder" in res.output
    res = CliRunner().invoke(app, ["align", str(ALIGN_CONFIG), f"records=[{toy_recs['circor']}]", "reports=/no/reports",
                                   "--out", str(tmp_path / "bad2")])
    assert res.exit_code == 2 and "clinlm reports" in res.output


def test_default_teacher_is_the_packaged_minilm_frozen_and_offline():
    import numpy as np

    from clinlm.align.teacher import minilm_path

    teacher = load_teacher(str(minilm_path()))  # a sentence-transformers folder: what `teacher=minilm` loads
    assert teacher.dim == 384 and not any(p.requires_grad for p in teacher.module.parameters())
    emb = teacher.encode(["No murmur is heard.", "A grade 3/6 holosystolic murmur is heard.", "No murmur is heard."])
    assert emb.shape == (3, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert np.allclose(emb[0], emb[2]) and not np.allclose(emb[0], emb[1])
