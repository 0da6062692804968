"""Inference on bench-format rows: generated answers, yes/no probabilities, and `clinlm ask`.

    model = clinlm.load("qs/model")
    rows = clinlm.train.data.read_rows("bench/test.jsonl")     # audio paths made absolute
    answers = generate(model, rows)                             # greedy, batched, left-padded
    p_yes = yes_probability(model, [r for r in rows if r["task"] == "binary"])

A row's final assistant turn (the reference answer) is dropped and generated. Rows are sorted by
prompt length into batches (less padding) and answers come back in the input order. Rows may
carry audio (`<audio>`, "audios"), ECG signals (`<ecg>`, "ecgs") and images (`<image>`, "images");
a text-only model (no tower) gets the same rows with every placeholder stripped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch

from clinlm.models.media import MEDIA, tokens_per_item
from clinlm.train.collator import encode_prompt


def _batches(model, rows: list[dict[str, Any]], batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(row indices, left-padded batch) in order of prompt length."""
    from clinlm.train.sft import collator_for

    counts = tokens_per_item(model)  # {} for a text-only model
    items = [encode_prompt(r, model.tokenizer, counts, text_only=not counts) for r in rows]
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
        embeds = model.embed(batch["input_ids"], batch.get("audio_features"), batch.get("ecg_features"),
                             batch.get("pixel_values"))  # (batch, seq, hidden)
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


@torch.no_grad()
def answer_logprob(model, rows: list[dict[str, Any]], answers: list[str], batch_size: int = 16) -> list[float]:
    """Mean log-probability per token of `answers[i]` as the assistant's reply to `rows[i]`'s prompt.

    The model's own judgement of a candidate answer, e.g. to choose between what it generated and
    the impressions of similar reports (`clinlm.evaluate.impression_run`). Length-normalised, so a
    short answer is not preferred for being short."""
    from clinlm.train.collator import encode_row
    from clinlm.train.sft import collator_for

    if len(rows) != len(answers):
        raise ValueError(f"{len(rows)} rows but {len(answers)} answers")
    model.eval()
    counts = tokens_per_item(model)
    items = []
    for row, answer in zip(rows, answers):
        msgs = [dict(m) for m in row["messages"]]
        if msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        items.append(encode_row({**row, "messages": msgs + [{"role": "assistant", "content": answer}]}, model.tokenizer, counts,
                                text_only=not counts))
    collate = collator_for(model)
    device = next(model.parameters()).device
    out = [0.0] * len(rows)
    for start in range(0, len(items), batch_size):
        batch = {k: v.to(device) for k, v in collate(items[start : start + batch_size]).items()}
        labels = batch.pop("labels")
        logits = model(**batch).logits[:, :-1].float()  # (batch, seq - 1, vocab): position t predicts t + 1
        targets = labels[:, 1:]
        scored = targets != -100
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (batch, seq - 1)
        mean = (logp * scored).sum(1) / scored.sum(1).clamp(min=1)
        for j, value in enumerate(mean.tolist()):
            out[start + j] = value
    return out


_LOADED: dict[str, Any] = {}


def _exists(path: str, kind: str) -> bool:
    if kind == "ecg":  # a WFDB record is named without its extension (rec/00001_lr for 00001_lr.hea)
        from clinlm.signals.ecg import wfdb_base

        base = wfdb_base(path)
        return base.with_name(base.name + ".hea").exists()
    return Path(path).exists()


def ask(
    checkpoint: str | Path,
    question: str,
    audios: list[str] | None = None,
    max_new_tokens: int = 160,
    ecgs: list[str] | None = None,
    images: list[str] | None = None,
) -> str:
    """Answer one question about zero or more recordings, ECG signals and images (one placeholder
    added per item of a kind when the question has none of that kind)."""
    from clinlm.models.checkpoint import load_checkpoint

    given = {"audio": audios, "ecg": ecgs, "image": images}
    media = {name: [str(Path(p).resolve()) for p in paths or []] for name, paths in given.items()}
    for name, paths in media.items():
        for p in paths:
            if not _exists(p, name):
                raise FileNotFoundError(f"{MEDIA[name].noun} file not found: {p}")
    key = str(Path(checkpoint).resolve())
    if key not in _LOADED:
        _LOADED[key] = load_checkpoint(checkpoint)
    model = _LOADED[key]
    prefix = {}
    for name, paths in media.items():
        kind = MEDIA[name]
        if paths and getattr(model, kind.tower, None) is None:
            takes = ", ".join(MEDIA[k].noun for k in tokens_per_item(model))
            what = f"has no {kind.tower} (it takes {takes})" if takes else "is a text-only model"
            raise ValueError(f"{checkpoint} {what}; it cannot take {len(paths)} {kind.noun} file(s)")
        prefix[name] = "" if kind.token in question else kind.token * len(paths)
    # "<ecg>\nquestion" is how the ECG bench frames most prompts; audio keeps its original "<audio>question".
    other = prefix["ecg"] + prefix["image"]
    question = prefix["audio"] + (other + "\n" if other else "") + question
    if not any(media.values()):  # findings -> impression: the similar reports a radiology checkpoint retrieves
        from clinlm.bench.impression import augment_question

        question = augment_question(checkpoint, question)
    row = {"messages": [{"role": "user", "content": question}], "record_ids": ["ask"],
           **{MEDIA[name].rows_key: paths for name, paths in media.items()}}
    answer = generate(model, [row], max_new_tokens=max_new_tokens, batch_size=1)[0]
    if not any(media.values()) and "FINDINGS:" in question:
        from clinlm.evaluate.impression_rerank import rerank

        chosen = rerank(checkpoint, [row], [answer], batch_size=16, model=model)
        answer = chosen[0] if chosen is not None else answer
    return answer
