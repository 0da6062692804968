"""Rows -> token ids with assistant-only labels -> padded batches with their media features.

Tokenisation uses the LM's own chat template. For every assistant turn i the template is
rendered twice: the conversation up to turn i with the generation prompt, and up to and including
turn i; the difference is exactly the assistant's text plus the template's end-of-turn marker.
Each piece is tokenised on its own, so the prompt tokens a model trains on are the very tokens
`clinlm.infer` gives it at inference. Labels are -100 everywhere except assistant pieces, so
prompts, system text, padding and `<audio>` slots never carry a loss.

Each `<audio>` placeholder is expanded to `num_audio_tokens` `<audio>` tokens (the model fills
them with the projected recording), and likewise `<ecg>` and `<image>` with their own counts
(`num_tokens` maps each kind the model takes to its count; a plain int means audio only). A row
with a kind the model does not take is an error naming the row. Text-only models strip every
placeholder instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from clinlm.models.media import MEDIA, placeholder_count, row_media
from clinlm.train.data import check_row, row_name

IGNORE = -100
_STRIP = re.compile(r"[ \t]*(?:" + "|".join(re.escape(k.token) for k in MEDIA.values()) + r")[ \t]*\n?")


def _counts(num_tokens: int | dict[str, int]) -> dict[str, int]:
    """{kind: prefix tokens per item}; an int is the audio count (the audio-only interface)."""
    return {"audio": int(num_tokens)} if isinstance(num_tokens, int) else {k: int(v) for k, v in num_tokens.items()}


def prepare_messages(messages: list[dict[str, Any]], num_tokens: int | dict[str, int], text_only: bool) -> list[dict[str, str]]:
    """Expand (or, text-only, remove) the media placeholders in every message."""
    counts = _counts(num_tokens)
    out = []
    for m in messages:
        content = m["content"]
        if text_only:
            content = re.sub(r" +([.,;:?!])", r"\1", re.sub(r" {2,}", " ", _STRIP.sub(" ", content))).strip()
        else:
            for kind, n in counts.items():
                content = content.replace(MEDIA[kind].token, MEDIA[kind].token * n)
        out.append({"role": m["role"], "content": content})
    return out


def _check_kinds(row: dict[str, Any], counts: dict[str, int], text_only: bool) -> None:
    """A row with media of a kind the model does not take cannot be encoded: say which."""
    if text_only:
        return
    for kind in MEDIA.values():
        if kind.name not in counts and (row_media(row, kind) or placeholder_count(row, kind)):
            takes = ", ".join(MEDIA[k].token for k in counts) or "text only"
            raise ValueError(
                f"{row_name(row)}: the row has {kind.noun} input ({kind.token}) but this model has no {kind.tower}; "
                f"it takes {takes}"
            )


def _media_lists(row: dict[str, Any], text_only: bool) -> dict[str, list[str]]:
    return {k.rows_key: [] if text_only else row_media(row, k) for k in MEDIA.values()}


def _render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_row(row: dict[str, Any], tokenizer, num_audio_tokens: int | dict[str, int], text_only: bool = False) -> dict[str, Any]:
    """Token ids and labels of a whole conversation: {"input_ids", "labels", "audios", "ecgs", "images", "row"}.

    `num_audio_tokens`: prefix tokens per item, an int (audio) or {kind: count} for every kind the model takes.
    """
    check_row(row)
    _check_kinds(row, _counts(num_audio_tokens), text_only)
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
    return {"input_ids": ids, "labels": labels, **_media_lists(row, text_only), "row": row_name(row)}


def encode_prompt(row: dict[str, Any], tokenizer, num_audio_tokens: int | dict[str, int], text_only: bool = False) -> dict[str, Any]:
    """Token ids of the prompt for generation: the conversation minus its final assistant turn."""
    msgs = row["messages"][:-1] if row["messages"] and row["messages"][-1]["role"] == "assistant" else row["messages"]
    prompt_row = {**row, "messages": msgs}
    check_row(prompt_row)
    _check_kinds(prompt_row, _counts(num_audio_tokens), text_only)
    text = _render(tokenizer, prepare_messages(msgs, num_audio_tokens, text_only), add_generation_prompt=True)
    ids = _ids(tokenizer, text)
    return {"input_ids": ids, "labels": [IGNORE] * len(ids), **_media_lists(prompt_row, text_only), "row": row_name(row)}


@dataclass
class MediaSlot:
    """How the collator handles one media kind: its token id, tokens per item, features (path -> tensor)."""

    token_id: int
    num_tokens: int
    features: Any


@dataclass
class Collator:
    """Pads encoded rows and stacks their media features (per kind, in row, then placeholder, order).

    Batch: input_ids/attention_mask/labels (batch, seq); audio_features (n_audios, *feature shape),
    ecg_features (n_ecgs, samples, leads), pixel_values (n_images, 3, H, W), each absent when the
    batch has none; loss_weights (batch,) when the items carry "loss_weight". Right padding for
    training, left for generation. The audio fields are the audio-only interface; `media` holds
    the other kinds ({"ecg": MediaSlot, "image": MediaSlot}).
    """

    pad_token_id: int
    audio_token_id: int | None = None
    num_audio_tokens: int = 0
    features: Any = None  # AudioFeatures, None for text-only models
    padding_side: str = "right"
    media: dict[str, MediaSlot] = field(default_factory=dict)

    def _slots(self) -> dict[str, MediaSlot]:
        slots = dict(self.media)
        if self.audio_token_id is not None:
            slots["audio"] = MediaSlot(self.audio_token_id, self.num_audio_tokens, self.features)
        return slots

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        slots = self._slots()
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
            for name, slot in slots.items():
                kind = MEDIA[name]
                n_items = len(it.get(kind.rows_key) or [])
                found = sum(1 for t in it["input_ids"] if t == slot.token_id)
                if found != n_items * slot.num_tokens:
                    raise ValueError(
                        f"{it['row']}: {found} {kind.token} tokens for {n_items} {kind.noun} input(s) x "
                        f"{slot.num_tokens} tokens each (does the tokenizer split '{kind.token}'?)"
                    )
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if any("loss_weight" in it for it in items):  # train.task_loss_weights: (batch,) per-row weights
            batch["loss_weights"] = torch.tensor([float(it.get("loss_weight", 1.0)) for it in items])
        for kind in MEDIA.values():
            paths = [p for it in items for p in it.get(kind.rows_key) or []]
            if not paths:
                continue
            slot = slots.get(kind.name)
            if slot is None or slot.features is None:
                raise ValueError(f"{items[0]['row']}: rows have {kind.noun} input but this model has no {kind.noun} features "
                                 f"(no {kind.tower}, or text-only)")
            batch[kind.batch_key] = torch.stack([slot.features(p) for p in paths])  # (n_items, *feature shape)
        return batch
