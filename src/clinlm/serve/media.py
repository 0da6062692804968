"""Uploaded media: base64 -> bytes -> checked waveform, with the limits a server needs.

    x, sr = decode_audio(part["input_audio"]["data"], part["input_audio"].get("format"), limits)

Everything stays in memory (the waveform is handed to the model through
`clinlm.serve.memory_features`); nothing is written to disk unless the server was started with a
media folder. Every problem raises `MediaError` carrying the HTTP status and the OpenAI error
fields, with a message that tells the caller what to change.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import wave
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from clinlm.signals.audio import SOUNDFILE_FORMATS, AudioError, load_audio

# Formats a browser or an OpenAI client sends; the rest of PyAV's containers are accepted too
# but these are the names we document.
AUDIO_FORMATS = sorted(SOUNDFILE_FORMATS | {"webm", "mp4", "m4a", "aac"})
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.-]+)*?;base64,(?P<data>.*)$", re.S)


@dataclass(frozen=True)
class Limits:
    """Per-request limits (bytes, seconds, counts, tokens)."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_audio_seconds: float = 120.0
    max_media: int = 4
    max_image_bytes: int = 8 * 1024 * 1024
    max_tokens: int = 512
    max_prompt_chars: int = 20_000
    silence_peak: float = 1e-4  # peak |x| below this (full scale 1.0) counts as silence


class MediaError(ValueError):
    """A request the server refuses; `status` is the HTTP code, the rest the OpenAI error fields."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code or "invalid_request"


def decode_base64(data: object, param: str) -> bytes:
    """Strict base64 (standard alphabet, padding required) -> bytes."""
    if not isinstance(data, str):
        raise MediaError(f"{param} must be a base64 string", param=param, code="invalid_base64")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"{param} is not valid base64 ({exc}); was it truncated?", param=param, code="invalid_base64") from exc


def _declared_seconds(raw: bytes, fmt: str) -> float | None:
    """Duration the file's header declares (before decoding anything), None when unknown."""
    if fmt == "wav" or raw[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(raw)) as w:  # the stdlib reports the header's frame count as is
                return w.getnframes() / float(w.getframerate())
        except (wave.Error, EOFError, ZeroDivisionError):
            pass
    if fmt in SOUNDFILE_FORMATS:
        try:
            info = sf.info(io.BytesIO(raw))
            return info.frames / float(info.samplerate)
        except Exception:  # not readable by libsndfile: PyAV gets its turn in load_audio
            return None
    return None


def decode_audio(data: object, fmt: object, limits: Limits, param: str = "input_audio") -> tuple[np.ndarray, int, bytes]:
    """(mono float32 (samples,), sample rate Hz, the raw bytes) of one input_audio part."""
    fmt = (fmt or "wav") if isinstance(fmt, (str, type(None))) else None
    if fmt is None:
        raise MediaError(f"{param}.format must be a string such as 'wav' or 'webm'", param=f"{param}.format")
    fmt = fmt.lower().lstrip(".")
    if not re.fullmatch(r"[a-z0-9]{1,8}", fmt):
        raise MediaError(f"{param}.format {fmt!r} is not an audio format; use one of {', '.join(AUDIO_FORMATS)}", param=f"{param}.format")
    raw = decode_base64(data, f"{param}.data")
    if not raw:
        raise MediaError(f"{param}.data is empty (0 bytes of audio)", param=f"{param}.data", code="empty_audio")
    declared = _declared_seconds(raw, fmt)
    if declared is not None and declared > limits.max_audio_seconds:
        raise MediaError(
            f"{param} is {declared:.0f} s long (from its header); the limit is {limits.max_audio_seconds:g} s: send a shorter excerpt",
            param=f"{param}.data", code="audio_too_long",
        )
    try:
        x, sr = load_audio(raw, fmt=fmt)
    except AudioError as exc:
        if "nan" in str(exc).lower():  # load_audio checks finiteness itself
            raise MediaError(f"{param} contains NaN or infinite samples", param=f"{param}.data", code="nan_audio") from exc
        raise MediaError(f"{param} could not be decoded as {fmt} audio ({exc})", param=f"{param}.data", code="undecodable_audio") from exc
    except Exception as exc:  # decoders raise their own types on garbage input
        raise MediaError(f"{param} could not be decoded as {fmt} audio ({type(exc).__name__})", param=f"{param}.data", code="undecodable_audio") from exc
    check_waveform(x, sr, limits, param)
    return x, sr, raw


def check_waveform(x: np.ndarray, sr: int, limits: Limits, param: str = "input_audio") -> None:
    if sr <= 0 or x.size == 0:
        raise MediaError(f"{param} holds no samples", param=f"{param}.data", code="empty_audio")
    seconds = x.size / sr
    if seconds > limits.max_audio_seconds:
        raise MediaError(f"{param} is {seconds:.0f} s long; the limit is {limits.max_audio_seconds:g} s: send a shorter excerpt", param=f"{param}.data", code="audio_too_long")
    if not np.isfinite(x).all():
        raise MediaError(f"{param} contains NaN or infinite samples", param=f"{param}.data", code="nan_audio")
    if float(np.abs(x).max()) < limits.silence_peak:
        raise MediaError(f"{param} is silent (peak below {limits.silence_peak:g} of full scale): check the microphone or the file", param=f"{param}.data", code="silent_audio")


def decode_image_url(url: object, limits: Limits, param: str = "image_url") -> tuple[str, bytes]:
    """(mime type, bytes) of a data: URL image; remote URLs are refused (the server fetches nothing)."""
    if not isinstance(url, str):
        raise MediaError(f"{param}.url must be a string", param=f"{param}.url")
    m = _DATA_URL.match(url)
    if not m:
        raise MediaError(f"{param}.url must be a base64 data URL (data:image/png;base64,...); the server does not fetch remote URLs", param=f"{param}.url")
    mime = (m["mime"] or "").lower()
    if not mime.startswith("image/"):
        raise MediaError(f"{param}.url has media type {mime or 'none'!r}, not an image", param=f"{param}.url")
    if len(m["data"]) * 3 // 4 > limits.max_image_bytes:
        raise MediaError(f"{param} is larger than {limits.max_image_bytes} bytes", status=413, param=f"{param}.url", code="image_too_large")
    raw = decode_base64(m["data"], f"{param}.url")
    if not raw:
        raise MediaError(f"{param}.url holds an empty image", param=f"{param}.url")
    return mime, raw
