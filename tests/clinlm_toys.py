"""Tiny inputs for the model and training tests: a toy bench, and local LM / audio-encoder folders.

Imported by tests (tests/ is on sys.path via tests/conftest.py). Everything is random-initialised
and small (hidden 32, 2 layers) so a test trains in seconds on 2 CPU cores.

The toy bench: one-second "heart sounds" at 4 kHz (two 40 Hz bursts per beat); a murmur adds
band-limited noise (300-600 Hz) between the bursts. Answers say "Yes"/"No" first, like the bench.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]


def heart_wav(path: Path, murmur: bool, seed: int, seconds: float = 1.0, sr: int = 4000) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for beat in np.arange(0.05, seconds, 0.5):  # S1 at beat, S2 0.25 s later
        for onset in (beat, beat + 0.25):
            w = (t >= onset) & (t < onset + 0.05)
            x[w] += np.sin(2 * np.pi * 40 * (t[w] - onset)) * np.hanning(w.sum())
        if murmur:
            w = (t >= beat + 0.06) & (t < beat + 0.24)
            noise = rng.standard_normal(w.sum())
            spec = np.fft.rfft(noise)
            f = np.fft.rfftfreq(w.sum(), 1 / sr)
            spec[(f < 300) | (f > 600)] = 0
            x[w] += 0.8 * np.fft.irfft(spec, w.sum()) / (np.std(np.fft.irfft(spec, w.sum())) + 1e-9)
    x += 0.01 * rng.standard_normal(len(x))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.4 * x / np.abs(x).max()).astype(np.float32), sr, subtype="PCM_16")
    return path


def binary_row(pid: str, audio: str, murmur: bool) -> dict:
    answer = "Yes, a murmur is present." if murmur else "No, there is no murmur."
    return {
        "messages": [{"role": "user", "content": "<audio>\nIs there a murmur?"}, {"role": "assistant", "content": answer}],
        "audios": [audio], "task": "binary", "record_ids": [f"toy/{pid}_AV"], "patient_id": f"toy/{pid}",
        "dataset": "toy", "answer": {"murmur": "present" if murmur else "absent"},
    }


def comparison_row(pid: str, audios: list[str], murmurs: list[bool]) -> dict:
    louder = "the first" if murmurs[0] and not murmurs[1] else "the second" if murmurs[1] and not murmurs[0] else "neither"
    return {
        "messages": [
            {"role": "user", "content": "Compare <audio> with <audio>. Which one has a murmur?"},
            {"role": "assistant", "content": f"The murmur is in {louder} recording."},
        ],
        "audios": audios, "task": "comparison", "record_ids": [f"toy/{pid}_AV", f"toy/{pid}_MV"],
        "patient_id": f"toy/{pid}", "dataset": "toy", "answer": {"which": louder},
    }


def impression_row(pid: str, murmur: bool) -> dict:
    """A text-only row (the radiology recipe's task)."""
    findings = "The heart is enlarged." if murmur else "The heart is normal in size."
    return {
        "messages": [{"role": "user", "content": f"FINDINGS: {findings} The lungs are clear.\nWrite the impression."},
                     {"role": "assistant", "content": "Cardiomegaly." if murmur else "No acute disease."}],
        "audios": [], "task": "impression", "record_ids": [f"toy/{pid}_report"], "patient_id": f"toy/{pid}", "dataset": "toy",
    }


def write_toy_bench(root: Path, n_patients: int = 24, seed: int = 0, comparison: bool = True, impression: bool = False) -> dict[str, Path]:
    """root/{train,val,test}.jsonl + root/audio/*.wav (relative paths, as the bench writes them)."""
    rng = np.random.default_rng(seed)
    splits = {"train": [], "val": [], "test": []}
    for p in range(n_patients):
        pid = f"p{p:03d}"
        split = "train" if p % 6 < 4 else ("val" if p % 6 == 4 else "test")
        murmur = bool(p % 2)
        a = f"audio/{pid}_AV.wav"
        heart_wav(root / a, murmur, seed=int(rng.integers(1 << 30)))
        rows = [binary_row(pid, a, murmur)]
        if comparison:
            b = f"audio/{pid}_MV.wav"
            other = bool(rng.integers(2))
            heart_wav(root / b, other, seed=int(rng.integers(1 << 30)))
            rows.append(comparison_row(pid, [a, b], [murmur, other]))
        if impression:
            rows.append(impression_row(pid, murmur))
        for row in rows:
            splits[split].append({**row, "split": split})
    out = {}
    for split, rows in splits.items():
        out[split] = root / f"{split}.jsonl"
        out[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def tiny_overrides(bench: dict[str, Path], out: Path, val: bool = False, recipe: dict | None = None) -> list[str]:
    """Overrides that make a shipped recipe run in seconds on the toy bench (with `recipe`: only
    the keys that recipe has, e.g. no feature settings for a text-only recipe)."""
    over = [
        f"data.train={bench['train']}",
        f"data.val={bench['val'] if val else 'null'}",
        "features.max_seconds=1",
        "model.language_model=tiny",
        "model.tower_size=tiny",
        "model.num_audio_tokens=2",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.logging_steps=1",
        f"train.output_dir={out}",
    ]
    if recipe is None:
        return over

    def has(key: str) -> bool:
        node = recipe
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return [o for o in over if has(o.split("=", 1)[0])]


# ---- local model folders -----------------------------------------------------------------------

CHATML = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3ISH = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CORPUS = [
    "Is there a murmur? Yes, a murmur is present. No, there is no murmur.",
    "Compare the recordings. Which one has a murmur? The murmur is in the first recording, the second, or neither.",
    "You are a helpful assistant. The heart sounds are normal. Crackles and wheezes are heard over the lungs.",
] * 20


def _tokenizer(specials: list[str], template: str, eos: str, pad: str | None, bos: str | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad, bos_token=bos)
    fast.chat_template = template
    return fast


def make_qwen2_folder(path: Path, tie: bool = True) -> Path:
    """A tiny random Qwen2 causal LM + ChatML tokenizer (with a default system prompt), no pad token."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], CHATML, eos="<|im_end|>", pad=None)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tie, eos_token_id=tok.eos_token_id)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_llama_folder(path: Path) -> Path:
    """A tiny random Llama causal LM + a Llama-3-like template with a BOS token in it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|pad|>"]
    tok = _tokenizer(specials, LLAMA3ISH, eos="<|eot_id|>", pad="<|pad|>", bos="<|begin_of_text|>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_whisper_encoder_folder(path: Path) -> Path:
    """A tiny random Whisper (its encoder is used) with 1-s windows (100 frames), + its feature extractor."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    fe = WhisperFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, chunk_length=1, n_fft=400)
    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=64, num_mel_bins=16, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=50,
                        max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(cfg).save_pretrained(path)
    fe.save_pretrained(path)
    return path


def tiny_model_cfg(**over) -> dict:
    cfg = {"audio_tower": "builtin", "tower_size": "tiny", "projector": "mlp", "num_audio_tokens": 2,
           "language_model": "tiny", "lora": None, "freeze": {}}
    cfg.update(over)
    return cfg


TINY_FEATURES = {"sample_rate": 4000, "band_hz": [25, 1800], "max_seconds": 1.0, "n_fft": 256, "hop": 80, "n_mels": 16, "fmin": 25, "fmax": 1800}


def shipped_configs() -> list[Path]:
    return sorted((REPO / "configs").glob("*.yaml"))


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


IMPRESSION_FINDINGS = [
    ("The heart is normal in size. The lungs are clear.", "No acute cardiopulmonary abnormality."),
    ("Large right pleural effusion. The heart is normal.", "Right pleural effusion."),
    ("The heart is enlarged. Mild pulmonary edema.", "Cardiomegaly with mild edema."),
    ("Left lower lobe opacity, likely pneumonia.", "Left lower lobe pneumonia."),
]


def write_impression_bench(folder: Path) -> dict[str, Path]:
    """A toy findings -> impression bench: root/{train,val,test}.jsonl, test findings copied from training."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        rows = []
        for i in range(n):
            f, imp = IMPRESSION_FINDINGS[i % len(IMPRESSION_FINDINGS)]
            rows.append({"messages": [{"role": "user", "content": f"Summarise the findings into an impression.\n\nFINDINGS: {f}"},
                                      {"role": "assistant", "content": imp}],
                         "audios": [], "task": "impression", "record_ids": [f"toy/{split}{i}"], "patient_id": f"toy/{split}{i}",
                         "dataset": "toy", "split": split, "answer": {"impression": imp}})
        out[split] = folder / f"{split}.jsonl"
        out[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
