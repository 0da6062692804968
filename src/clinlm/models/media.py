"""The media kinds a clinlm model can take: one placeholder, one row field, one tower and projector each.

    kind    placeholder  row field  tower          projector              batch key        prefix tokens     token id
    audio   <audio>      audios     audio_tower    multi_modal_projector  audio_features   num_audio_tokens  audio_token_id
    ecg     <ecg>        ecgs       ecg_tower      ecg_projector          ecg_features     num_ecg_tokens    ecg_token_id
    image   <image>      images     vision_tower   vision_projector       pixel_values     num_image_tokens  image_token_id

Every layer that handles media (row checks, the collator, the composite model, inference,
the checkpoint) loops over this one table, so a row may mix kinds (an ECG and its printout) and
each kind is counted on its own. The audio names are those of the first, audio-only version
(its checkpoints load unchanged); `pixel_values` is the name transformers' vision models use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MediaKind:
    name: str  # "audio" | "ecg" | "image"
    token: str  # placeholder in the message text
    rows_key: str  # list of media paths in a bench row
    tower: str  # ClinModel attribute (None when the model does not take this kind)
    projector: str  # ClinModel attribute
    batch_key: str  # forward() argument: (n_items, *feature shape)
    noun: str  # how errors name one item

    @property
    def num_tokens_key(self) -> str:
        return f"num_{self.name}_tokens"

    @property
    def token_id_key(self) -> str:
        return f"{self.name}_token_id"


AUDIO = MediaKind("audio", "<audio>", "audios", "audio_tower", "multi_modal_projector", "audio_features", "audio")
ECG = MediaKind("ecg", "<ecg>", "ecgs", "ecg_tower", "ecg_projector", "ecg_features", "ECG signal")
IMAGE = MediaKind("image", "<image>", "images", "vision_tower", "vision_projector", "pixel_values", "image")
MEDIA: dict[str, MediaKind] = {k.name: k for k in (AUDIO, ECG, IMAGE)}


def placeholder_count(row: dict[str, Any], kind: MediaKind) -> int:
    """How many times the kind's placeholder appears in the row's messages."""
    return sum(str(m.get("content", "")).count(kind.token) for m in row["messages"] if isinstance(m, dict))


def row_media(row: dict[str, Any], kind: MediaKind) -> list[str]:
    return list(row.get(kind.rows_key) or [])


def model_kinds(model: Any) -> list[MediaKind]:
    """The kinds a model takes (those with a tower); [] for a text-only model."""
    return [k for k in MEDIA.values() if getattr(model, k.tower, None) is not None]


def tokens_per_item(model: Any) -> dict[str, int]:
    """{kind: prefix tokens per item} for the kinds the model takes."""
    return {k.name: int(getattr(model.config, k.num_tokens_key)) for k in model_kinds(model)}
