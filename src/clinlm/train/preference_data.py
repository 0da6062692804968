"""Preference rows -> token ids for chosen, rejected (and, for mDPO, chosen-under-rejected-audio).

A row (written by `clinlm bench build` to bench/preference/*.jsonl; `clinlm.bench.preference`):
    {"prompt": [{"role": "user", "content": "<audio>..."}],
     "chosen": [{"role": "assistant", ...}], "rejected": [{"role": "assistant", ...}],
     "audios": [path, ...], "rejected_audios": [path | {"path": p, "degrade": name, ...}, ...], ...}
Relative paths resolve against the JSONL file's folder (as for instruction rows).

Each sequence is tokenised exactly like an SFT row (`clinlm.train.collator.encode_row`: the LM's
chat template, assistant-only labels, `<audio>` expanded to the prefix tokens), so the responses
DPO scores are the tokens SFT trained on and inference generates. A degradation spec in
`rejected_audios` becomes a float WAV in `degraded_dir` (`clinlm.signals.degrade.degraded_copy`),
written once and then read like any recording.

A batch is one padded tensor of 2B sequences (DPO: B chosen, then B rejected) or 3B (mDPO:
+ B chosen answers under the rejected audio), so one forward pass scores all of them. For mDPO,
`conditional_mask` (B,) marks the rows that have a rejected audio for the conditional term; a row
without one (no audio, no `rejected_audios`, or a degradation listed in `conditional_exclude`)
keeps its DPO and anchor terms and repeats its chosen sequence in the conditional slot, masked.

`augment` (degradations, e.g. noise at 0-20 dB) replaces the real audio of a share
(`augment_fraction`) of the rows by a degraded copy, chosen per row from the seed, so the
preferences are also learnt on noisy recordings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clinlm.train.collator import Collator, encode_row
from clinlm.train.data import check_row, row_name
from clinlm.train.sft import EncodedRows

STAGES = ("dpo", "mdpo")
GROUPS = {"dpo": ("chosen", "rejected"), "mdpo": ("chosen", "rejected", "conditional")}


def _resolve(base: Path, p: str) -> str:
    return p if Path(p).is_absolute() else str((base / p).resolve())


def _messages(row: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = row.get(key)
    if isinstance(value, str):  # TRL also accepts a plain string response
        value = [{"role": "assistant", "content": value}]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: '{key}' must be a non-empty list of messages (TRL's conversational preference format)")
    return value


def read_preference_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a preference JSONL, paths made absolute, shapes checked (errors name file:line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"preference file not found: {path} (`clinlm bench build` writes bench/preference/train.jsonl)")
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where} is not valid JSON ({exc})") from exc
            prompt = _messages(row, "prompt", where)
            chosen, rejected = _messages(row, "chosen", where), _messages(row, "rejected", where)
            row["prompt"], row["chosen"], row["rejected"] = prompt, chosen, rejected
            row["_source"] = f"{path.name}:{lineno}"
            row["audios"] = [_resolve(path.parent, a) for a in row.get("audios") or []]
            bad = []
            for a in row.get("rejected_audios") or []:
                bad.append({**a, "path": _resolve(path.parent, a["path"])} if isinstance(a, dict) else _resolve(path.parent, a))
            row["rejected_audios"] = bad
            for key in ("chosen", "rejected"):
                check_row({**row, "messages": prompt + row[key]})  # roles, content, placeholders == audios
            if bad and len(bad) != len(row["audios"]):
                raise ValueError(f"{row_name(row)}: {len(bad)} rejected_audios for {len(row['audios'])} audios; give one per audio")
            rows.append(row)
    return rows


def rejected_audio_paths(row: dict[str, Any], degraded_dir: Path, seed: int) -> list[str]:
    """The row's rejected audio as files: paths as they are, degradation specs written once."""
    from clinlm.signals.degrade import degraded_copy, from_dict

    out = []
    for a in row["rejected_audios"]:
        out.append(str(degraded_copy(a["path"], from_dict(a), degraded_dir, seed=seed)) if isinstance(a, dict) else a)
    return out


def _conditional_audio(row: dict[str, Any], exclude: set[str], degraded_dir: Path, seed: int) -> list[str] | None:
    """The rejected audio for the conditional term, or None when the row has none to use."""
    from clinlm.signals.degrade import from_dict

    bad = row.get("rejected_audios") or []
    if not row.get("audios") or not bad or any(isinstance(a, dict) and from_dict(a).name in exclude for a in bad):
        return None
    return rejected_audio_paths(row, degraded_dir, seed)


def _augmented(row: dict[str, Any], augment: list, fraction: float, degraded_dir: Path, seed: int) -> list[str]:
    """The row's audio, or (for `fraction` of the rows, picked by the seed) a degraded copy of it."""
    import random

    from clinlm.signals.degrade import degraded_copy, seed_for

    rng = random.Random(seed_for(seed, row_name(row), "augment"))
    audios = list(row.get("audios") or [])
    if not augment or not audios or rng.random() >= fraction:
        return audios
    d = rng.choice(augment)
    return [str(degraded_copy(a, d, degraded_dir, seed=seed)) for a in audios]


# Encoded preference rows: {"input_ids" (the chosen sequence's, for length grouping), "chosen",
# "rejected", ["conditional", "conditional_mask"], "row"}, each group an `encode_row` item; held
# like SFT's encoded rows.
PreferenceRows = EncodedRows


def encode_preference_rows(rows: list[dict[str, Any]], model, stage: str, max_length: int, degraded_dir: Path,
                           seed: int = 0, conditional_exclude: tuple[str, ...] = (), augment: list | None = None,
                           augment_fraction: float = 0.0) -> tuple[PreferenceRows, list[str]]:
    """(dataset, skipped): skipped names each row left out and why (longer than max_length).

    `conditional_exclude`: degradation names (e.g. "noise") whose rejected audio does not feed the
    conditional term; `augment`: `clinlm.signals.degrade.Degradation`s for the real audio."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    text_only = model.audio_tower is None
    if stage == "mdpo" and text_only:
        raise ValueError("mdpo needs an audio model (its conditional term compares real with rejected audio); use stage: dpo")
    n_tokens = model.config.num_audio_tokens
    items, skipped = [], []
    exclude = set(conditional_exclude)
    for row in rows:
        name = row_name(row)
        audios = _augmented(row, augment or [], augment_fraction, degraded_dir, seed)
        seqs = {key: {**row, "messages": row["prompt"] + row[key], "audios": audios} for key in ("chosen", "rejected")}
        extra = {}
        if stage == "mdpo":
            bad = _conditional_audio(row, exclude, degraded_dir, seed)
            seqs["conditional"] = {**seqs["chosen"], "audios": bad if bad is not None else audios}
            extra["conditional_mask"] = float(bad is not None)
        enc = {key: encode_row(r, model.tokenizer, n_tokens, text_only=text_only) for key, r in seqs.items()}
        longest = max(len(e["input_ids"]) for e in enc.values())
        if longest > max_length:
            skipped.append(f"{name}: {longest} tokens > train.max_length={max_length}")
            continue
        items.append({"input_ids": enc["chosen"]["input_ids"], **enc, **extra, "row": name})
    return PreferenceRows(items), skipped


@dataclass
class PreferenceCollator:
    """Stacks the groups of B rows into one batch of len(groups) x B sequences (chosen first),
    padded and with audio features by the SFT `Collator`."""

    base: Collator
    groups: tuple[str, ...]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.base([it[g] for g in self.groups for it in items])
        if "conditional" in self.groups:
            batch["conditional_mask"] = torch.tensor([it["conditional_mask"] for it in items])  # (B,)
        return batch
