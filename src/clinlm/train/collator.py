"""Rows -> token ids with assistant-only labels -> padded batches with their audio features.

Tokenisation uses the LM's own chat template. For every assistant turn i the template is
rendered twice: the conversation up to turn i with the generation prompt, and up to and including
turn i; the difference is exactly the assistant's text plus the template's end-of-turn marker.
Each piece is tokenised on its own, so the prompt tokens a model trains on are the very tokens
`clinlm.infer` gives it at inference. Labels are -100 everywhere except assistant pieces, so
prompts, system text, padding and `<audio>` slots never carry a loss.

Each `<audio>` placeholder is expanded to `num_audio_tokens` `<audio>` tokens (the model fills
them with the projected recording). Text-only models strip the placeholders instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from clinlm.models.language_model import AUDIO_TOKEN
from clinlm.train.data import check_row, row_name

IGNORE = -100
_STRIP = re.compile(r"[ \t]*" + re.escape(AUDIO_TOKEN) + r"[ \t]*\n?")


def prepare_messages(messages: list[dict[str, Any]], num_audio_tokens: int, text_only: bool) -> list[dict[str, str]]:
    """Expand (or, text-only, remove) the <audio> placeholders in every message."""
    out = []
    for m in messages:
        content = m["content"]
        if text_only:
            content = re.sub(r" +([.,;:?!])", r"\1", re.sub(r" {2,}", " ", _STRIP.sub(" ", content))).strip()
        else:
            content = content.replace(AUDIO_TOKEN, AUDIO_TOKEN * num_audio_tokens)
        out.append({"role": m["role"], "content": content})
    return out


def _render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_row(row: dict[str, Any], tokenizer, num_audio_tokens: int, text_only: bool = False) -> dict[str, Any]:
    """Token ids and labels of a whole conversation: {"input_ids", "labels", "audios", "row"}."""
    check_row(row)
    msgs = prepare_messages(row["messages"], num_audio_tokens, text_only)
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError(f"{row_name(row)}: no assistant message to train on")
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, msgs[:i], add_generation_prompt=True)
        full = _render(tokenizer, msgs[: i + 1], add_generation_prompt=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise ValueError(
                f"{row_name(row)}: the chat template does not render conversations as growing prefixes "
                "(it rewrites earlier turns), so assistant tokens cannot be located; use a template without that"
            )
        for text, is_answer in ((prompt[len(done) :], False), (full[len(prompt) :], True)):
            piece = _ids(tokenizer, text)
            ids += piece
            labels += piece if is_answer else [IGNORE] * len(piece)
        done = full
    tail = _ids(tokenizer, _render(tokenizer, msgs, add_generation_prompt=False)[len(done) :])
    ids += tail
    labels += [IGNORE] * len(tail)
    return {"input_ids": ids, "labels": labels, "audios": [] if text_only else list(row.get("audios") or []), "row": row_name(row)}


def encode_prompt(row: dict[str, Any], tokenizer, num_audio_tokens: int, text_only: bool = False) -> dict[str, Any]:
    """Token ids of the prompt for generation: the conversation minus its final assistant turn."""
    msgs = row["messages"][:-1] if row["messages"] and row["messages"][-1]["role"] == "assistant" else row["messages"]
    prompt_row = {**row, "messages": msgs}
    check_row(prompt_row)
    text = _render(tokenizer, prepare_messages(msgs, num_audio_tokens, text_only), add_generation_prompt=True)
    ids = _ids(tokenizer, text)
    return {"input_ids": ids, "labels": [IGNORE] * len(ids), "audios": [] if text_only else list(row.get("audios") or []), "row": row_name(row)}


@dataclass
class Collator:
    """Pads encoded rows and stacks their audio features (in row, then placeholder, order).

    Batch: input_ids/attention_mask/labels (batch, seq); audio_features (n_audios, *feature shape)
    or absent when the batch has no audio. Right padding for training, left for generation.
    """

    pad_token_id: int
    audio_token_id: int | None = None
    num_audio_tokens: int = 0
    features: Any = None  # AudioFeatures, None for text-only models
    padding_side: str = "right"

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), longest), dtype=torch.long)
        for b, it in enumerate(items):
            n = len(it["input_ids"])
            span = slice(0, n) if self.padding_side == "right" else slice(longest - n, longest)
            ids[b, span] = torch.tensor(it["input_ids"], dtype=torch.long)
            labels[b, span] = torch.tensor(it["labels"], dtype=torch.long)
            mask[b, span] = 1
            if self.audio_token_id is not None:
                slots = sum(1 for t in it["input_ids"] if t == self.audio_token_id)
                if slots != len(it["audios"]) * self.num_audio_tokens:
                    raise ValueError(
                        f"{it['row']}: {slots} <audio> tokens for {len(it['audios'])} audio(s) x "
                        f"{self.num_audio_tokens} tokens each (does the tokenizer split '<audio>'?)"
                    )
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        paths = [p for it in items for p in it["audios"]]
        if paths:
            if self.features is None:
                raise ValueError(f"{items[0]['row']}: rows have audio but this model has no audio features (text-only?)")
            batch["audio_features"] = torch.stack([self.features(p) for p in paths])  # (n_audios, *feature shape)
        return batch
