"""Audio files: header info without reading the samples, loading, and resampling.

soundfile (libsndfile) reads wav, flac, ogg/vorbis/opus and mp3; webm and anything else go
through PyAV (FFmpeg libraries shipped in its wheel), which browsers' `audio/webm;codecs=opus`
and COUGHVID's files need. Every failure raises `AudioError` with a reason a person can act on;
adapters turn it into a rejects row.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

SOUNDFILE_FORMATS = {"wav", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif"}


class AudioError(ValueError):
    """A recording that cannot be used, with the reason."""


@dataclass
class AudioInfo:
    sample_rate: int
    num_frames: int
    num_channels: int
    format: str  # "wav", "webm", ...

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sample_rate if self.sample_rate else 0.0


def _fmt(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, length and channels from the header only (fast on thousands of files)."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    fmt = _fmt(path)
    if fmt in SOUNDFILE_FORMATS:
        try:
            info = sf.info(str(path))
        except Exception as exc:  # libsndfile's messages are terse; keep them, add ours
            raise AudioError(f"not a readable {fmt} audio file ({exc})") from exc
        if info.frames <= 0:
            raise AudioError("audio file has no samples (header only or truncated)")
        if fmt == "wav" and info.subtype and info.subtype.startswith("PCM"):
            # A wav header can claim more data than the file holds (a truncated copy). libsndfile
            # silently clamps `frames` to what is there, so ask the stdlib reader what the header
            # declares and compare.
            declared = _declared_wav_frames(path)
            if declared is not None and declared > info.frames:
                raise AudioError(
                    f"truncated wav: header promises {declared} frames but the file holds only "
                    f"{info.frames} ({size} bytes)"
                )
        return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels), fmt)
    return _av_info(path, fmt)


def _declared_wav_frames(path: Path) -> int | None:
    """Frames the wav's data chunk declares (stdlib `wave`, plain PCM only); None when unknown."""
    import wave

    try:
        with wave.open(str(path), "rb") as w:
            frame_bytes = w.getsampwidth() * w.getnchannels()
            declared = w.getnframes()
    except (wave.Error, EOFError, OSError):  # e.g. WAVE_FORMAT_EXTENSIBLE on Python < 3.12
        return None
    # Streaming writers leave a placeholder size (0 or 0xFFFFFFFF): that declares nothing.
    if declared == 0 or declared * frame_bytes >= 0xFFFFFFFF - frame_bytes:
        return None
    return declared


def _av_info(path: Path | io.BytesIO, fmt: str) -> AudioInfo:
    import av

    try:
        with av.open(path if isinstance(path, io.BytesIO) else str(path)) as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise AudioError("file has no audio stream")
            stream = streams[0]
            sr = int(stream.codec_context.sample_rate or stream.rate or 0)
            channels = int(stream.codec_context.channels or 1)
            if stream.duration is not None and stream.time_base is not None:
                frames = int(float(stream.duration * stream.time_base) * sr)
            elif container.duration is not None:
                frames = int(container.duration / 1_000_000 * sr)  # av.time_base is microseconds
            else:
                frames = 0
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"not a decodable {fmt or 'audio'} file ({type(exc).__name__}: {exc})") from exc
    if sr <= 0:
        raise AudioError("audio stream has no sample rate")
    if frames <= 0:
        # webm from browsers often has no duration in the header: decode to count.
        frames = len(_av_decode(path)[0])
    return AudioInfo(sr, frames, channels, fmt)


def _av_decode(source: Path | io.BytesIO) -> tuple[np.ndarray, int]:
    import av

    chunks, sr = [], 0
    try:
        with av.open(source if isinstance(source, io.BytesIO) else str(source)) as container:
            stream = next(s for s in container.streams if s.type == "audio")
            resampler = av.AudioResampler(format="flt", layout="mono")
            for frame in container.decode(stream):
                sr = frame.sample_rate
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
    except StopIteration as exc:
        raise AudioError("file has no audio stream") from exc
    except Exception as exc:
        raise AudioError(f"could not decode audio ({type(exc).__name__}: {exc})") from exc
    if not chunks:
        raise AudioError("audio stream decoded to no samples")
    return np.concatenate(chunks).astype(np.float32), int(sr)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy), exact for integer rate ratios."""
    if orig_sr == target_sr:
        return x
    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(target_sr))
    return resample_poly(x, int(target_sr) // g, int(orig_sr) // g, axis=-1).astype(np.float32)


def load_audio(
    source: str | Path | bytes,
    target_sr: int | None = None,
    fmt: str | None = None,
) -> tuple[np.ndarray, int]:
    """Decode to mono float32 in [-1, 1], shape (samples,), resampled when target_sr is given.

    `source` is a path or the file's bytes (then `fmt` names the container, e.g. "webm").
    """
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise AudioError("empty audio (0 bytes)")
        fmt = (fmt or "").lower()
        if fmt in SOUNDFILE_FORMATS or not fmt:
            try:
                x, sr = sf.read(io.BytesIO(source), dtype="float32", always_2d=True)
                x = x.mean(axis=1)
            except Exception:
                x, sr = _av_decode(io.BytesIO(source))
        else:
            x, sr = _av_decode(io.BytesIO(source))
    else:
        path = Path(source)
        if not path.exists():
            raise AudioError(f"file not found: {path}")
        if _fmt(path) in SOUNDFILE_FORMATS:
            try:
                x, sr = sf.read(str(path), dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"not a readable {_fmt(path)} audio file ({exc})") from exc
            x = x.mean(axis=1)  # (samples,)
        else:
            x, sr = _av_decode(path)
    if x.size == 0:
        raise AudioError("audio has no samples")
    if not np.all(np.isfinite(x)):
        raise AudioError("audio contains NaN or infinite samples")
    if target_sr is not None and sr != target_sr:
        x = resample(x, sr, target_sr)
        sr = target_sr
    return x.astype(np.float32, copy=False), int(sr)
