"""The language model and its tokenizer: a local causal LM folder, or the embedded default.

- A local folder: `AutoModelForCausalLM` + `AutoTokenizer` + the tokenizer's own chat template
  (Llama, Qwen2, Mistral, Phi, ... anything transformers loads). Nothing is downloaded.
- A preset name (`tiny`, `small`, see presets.py): a Llama-architecture model initialised from
  scratch, with a byte-level BPE tokenizer trained on the bench text with the `tokenizers`
  library and a minimal chat template.

Either way the media placeholders `<audio>` (and `<ecg>`, `<image>`, reserved for the ECG and
image towers) are added as special tokens so that they are never split, and the embedding matrix
is resized to match when needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from clinlm.models.presets import LM_PRESETS, lm_preset

AUDIO_TOKEN = "<audio>"
MEDIA_TOKENS = ["<audio>", "<ecg>", "<image>"]

# The embedded tokenizer's chat template. Each turn is `<|role|>\n{content}<|end|>\n`; `<|end|>`
# is the EOS token, so the model learns to stop where an assistant turn ends.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
PAD, EOS = "<|pad|>", "<|end|>"


def is_preset(spec: str) -> bool:
    return str(spec) in LM_PRESETS


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts` (any byte sequence stays encodable), with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = [PAD, EOS, *ROLE_TOKENS, *MEDIA_TOKENS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        additional_special_tokens=[*ROLE_TOKENS, *MEDIA_TOKENS],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_preset_lm(name: str, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A randomly initialised Llama of the named size, with the tokenizer's vocabulary."""
    cfg = lm_preset(name)
    cfg.pop("vocab_size")  # the trained tokenizer decides (BPE stops early on little text)
    config = LlamaConfig(
        **cfg,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def load_local_lm(folder: str | Path) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """A causal LM and its tokenizer from a local folder, float32, media tokens added."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"model.language_model={folder} is neither a preset ({', '.join(LM_PRESETS)}) nor a local "
            "model folder with config.json (save one with save_pretrained; nothing is downloaded)"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"the tokenizer in {folder} is not a fast (tokenizers-backed) tokenizer; save a tokenizer.json")
    if not tokenizer.chat_template:
        raise ValueError(
            f"the tokenizer in {folder} has no chat template: pick an instruction/chat model, or set "
            "tokenizer.chat_template and save it back to the folder"
        )
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model, tokenizer


def add_media_tokens(model: torch.nn.Module, tokenizer) -> None:
    """Add <audio>/<ecg>/<image> as special tokens (and a pad token), resizing embeddings if needed."""
    missing = [t for t in MEDIA_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # padded positions are masked out of attention and loss
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        # The new rows are never looked up for media tokens (their embeddings are replaced by the
        # projected media features), so no clever initialisation is needed.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)


def build_language_model(spec: str, texts: Iterable[str] | None = None, tokenizer=None):
    """(model, tokenizer) for a preset name or a local folder.

    For a preset, `tokenizer` (a previously trained one, e.g. when resuming) is reused; otherwise a
    new one is trained on `texts` (the training rows' messages).
    """
    if is_preset(spec):
        if tokenizer is None:
            if texts is None:
                raise ValueError(f"the embedded '{spec}' LM needs training text to train its tokenizer")
            tokenizer = train_tokenizer(texts, lm_preset(spec)["vocab_size"])
        model = build_preset_lm(spec, tokenizer)
    else:
        model, tokenizer = load_local_lm(spec)
    add_media_tokens(model, tokenizer)
    return model, tokenizer
