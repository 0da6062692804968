"""Small helpers the lung and cough adapters share: missing values, numbers, flags, audio fields.

Crowd-sourced and clinical metadata write "unknown" in many ways (`NA`, `nan`, empty, `None`);
all of them mean *unknown* here and become None, never 0 or False. A value that is present but
cannot be understood (an age of "abc", a sex of "X") is kept verbatim in `source_labels` by the
adapter, becomes None in the shared vocabulary, and is listed in `metadata["unrecognised_labels"]`
through `Unrecognised`, so nothing is guessed and nothing is lost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clinlm.signals.audio import audio_info

MISSING = {"", "na", "n/a", "nan", "none", "null", "-"}
TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN from pandas or json
        return True
    return str(value).strip().lower() in MISSING


def text(value: Any) -> str | None:
    """The value as stripped text, or None when it is one of the spellings of 'unknown'."""
    return None if is_missing(value) else str(value).strip()


class Unrecognised:
    """Collects label values an adapter could not map, for `metadata["unrecognised_labels"]`."""

    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {}

    def add(self, field: str, value: Any) -> None:
        seen = self.values.setdefault(field, [])
        if str(value) not in seen:
            seen.append(str(value))

    def number(self, field: str, value: Any) -> float | None:
        """A float, None when missing; an unparseable value is recorded and becomes None."""
        if is_missing(value):
            return None
        try:
            out = float(str(value).strip())
        except ValueError:
            self.add(field, value)
            return None
        if out != out or out in (float("inf"), float("-inf")):
            self.add(field, value)
            return None
        return out

    def flag(self, field: str, value: Any) -> bool | None:
        """True/False from the spellings datasets use (True/False, y/n, 1/0); else None."""
        if isinstance(value, bool):
            return value
        if is_missing(value):
            return None
        v = str(value).strip().lower()
        if v in TRUE:
            return True
        if v in FALSE:
            return False
        self.add(field, value)
        return None

    def choice(self, field: str, value: Any, mapping: dict[str, Any]) -> Any:
        """mapping[value.lower()], None when missing; an unknown value is recorded and becomes None."""
        if is_missing(value):
            return None
        key = str(value).strip().lower()
        if key in mapping:
            return mapping[key]
        self.add(field, value)
        return None

    def into(self, metadata: dict[str, Any]) -> dict[str, Any]:
        if self.values:
            metadata["unrecognised_labels"] = self.values
        return metadata


def abspath(path: str | Path) -> str:
    """Absolute, normalised path text without touching the disk (resolve() stats every part)."""
    return os.path.abspath(path)


SEX = {"m": "male", "male": "male", "f": "female", "female": "female"}


def media_fields(path: Path) -> dict[str, Any]:
    """Record fields for one audio file, from its header only (raises AudioError when unusable)."""
    info = audio_info(path)
    return {
        "media": [abspath(path)],
        "media_format": info.format,
        "sample_rate": float(info.sample_rate),
        "num_frames": info.num_frames,
        "duration_s": round(info.duration_s, 6),
        "num_channels": info.num_channels,
    }


def relative_parts(path: Path, root: Path) -> tuple[str, ...]:
    """Folder names between `root` and `path` (lower-case), so the root's own name never matters."""
    try:
        rel = Path(abspath(path)).relative_to(abspath(root))
    except ValueError:
        return ()
    return tuple(p.lower() for p in rel.parts[:-1])
