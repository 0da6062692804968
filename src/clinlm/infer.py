"""Inference on bench-format rows: generated answers, yes/no probabilities, and `clinlm ask`.

    model = clinlm.load("qs/model")
    rows = clinlm.train.data.read_rows("bench/test.jsonl")     # audio paths made absolute
    answers = generate(model, rows)                             # greedy, batched, left-padded
    p_yes = yes_probability(model, [r for r in rows if r["task"] == "binary"])

A row's final assistant turn (the reference answer) is dropped and generated. Rows are sorted by
prompt length into batches (less padding) and answers come back in the input order. A text-only
model (no audio tower) gets the same rows with the `<audio>` placeholders stripped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch

from clinlm.train.collator import encode_prompt


def _batches(model, rows: list[dict[str, Any]], batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(row indices, left-padded batch) in order of prompt length."""
    from clinlm.train.sft import collator_for

    text_only = model.audio_tower is None
    items = [encode_prompt(r, model.tokenizer, model.config.num_audio_tokens, text_only=text_only) for r in rows]
    order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
    collate = collator_for(model, padding_side="left")
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([items[i] for i in idx])
        batch.pop("labels")
        yield idx, {k: v.to(device) for k, v in batch.items()}


def _eos_ids(model) -> list[int]:
    ids = {model.tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model.language_model, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate(model, rows: list[dict[str, Any]], max_new_tokens: int = 128, batch_size: int = 16, temperature: float = 0.0) -> list[str]:
    """One answer per row (greedy when temperature is 0)."""
    model.eval()
    out: list[str] = [""] * len(rows)
    sampling = {"do_sample": True, "temperature": float(temperature)} if temperature > 0 else {"do_sample": False}
    for idx, batch in _batches(model, rows, batch_size):
        mask = batch["attention_mask"]
        embeds = model.embed(batch["input_ids"], batch.get("audio_features"))  # (batch, seq, hidden)
        new = model.language_model.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=model.tokenizer.pad_token_id,
            eos_token_id=_eos_ids(model),
            **sampling,
        )  # (batch, new tokens): with inputs_embeds only the new tokens come back
        for i, text in zip(idx, model.tokenizer.batch_decode(new, skip_special_tokens=True)):
            out[i] = text.strip()
    return out


def answer_token_ids(tokenizer, words: tuple[str, str] = ("Yes", "No")) -> tuple[int, int]:
    """First token of each word as an answer begins (the bench's yes/no answers start with them)."""
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    if ids[0] == ids[1]:
        raise ValueError(f"{words} start with the same token; cannot score yes against no")
    return ids[0], ids[1]


@torch.no_grad()
def yes_probability(model, rows: list[dict[str, Any]], batch_size: int = 16) -> list[float]:
    """P(yes) / (P(yes) + P(no)) at the first answer token, per row (for AUROC)."""
    model.eval()
    yes, no = answer_token_ids(model.tokenizer)
    out = [0.0] * len(rows)
    for idx, batch in _batches(model, rows, batch_size):
        logits = model(**batch).logits[:, -1, [yes, no]].float()  # (batch, 2), left padding: last = next token
        for i, p in zip(idx, torch.softmax(logits, dim=-1)[:, 0].tolist()):
            out[i] = p
    return out


_LOADED: dict[str, Any] = {}


def ask(checkpoint: str | Path, question: str, audios: list[str] | None = None, max_new_tokens: int = 160) -> str:
    """Answer one question about zero or more recordings (one <audio> placeholder added per audio
    when the question has none)."""
    from clinlm.models.checkpoint import load_checkpoint
    from clinlm.models.language_model import AUDIO_TOKEN

    audios = [str(Path(a).resolve()) for a in audios or []]
    for a in audios:
        if not Path(a).exists():
            raise FileNotFoundError(f"audio file not found: {a}")
    key = str(Path(checkpoint).resolve())
    if key not in _LOADED:
        _LOADED[key] = load_checkpoint(checkpoint)
    model = _LOADED[key]
    if audios and model.audio_tower is None:
        raise ValueError(f"{checkpoint} is a text-only model; it cannot listen to {len(audios)} audio file(s)")
    if AUDIO_TOKEN not in question:
        question = AUDIO_TOKEN * len(audios) + question
    row = {"messages": [{"role": "user", "content": question}], "audios": audios, "record_ids": ["ask"]}
    return generate(model, [row], max_new_tokens=max_new_tokens, batch_size=1)[0]
