"""Uploaded media: strict decoding, limits, and in-memory features identical to the on-disk path."""

from __future__ import annotations

from serve_fixtures import TEST_LIMITS, live, tiny_ckpt, tiny_model  # noqa: F401  (pytest fixtures)

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from serve_helpers import b64, wav_bytes

from clinlm.serve.api import build_row
from clinlm.serve.media import Limits, MediaError, decode_audio, decode_base64, decode_image_url
from clinlm.serve.memory_features import view_with_waves
from clinlm.signals.audio import resample

LIMITS = Limits(max_audio_seconds=10, max_media=2, max_image_bytes=1000)


def webm_opus_bytes(seconds: float = 1.0, sr: int = 48000) -> bytes:
    """What a browser's MediaRecorder sends: opus in a webm container (encoded with PyAV)."""
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=sr, layout="mono")
        t = np.arange(int(seconds * sr)) / sr
        x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        for start in range(0, len(x), 960):
            frame = av.AudioFrame.from_ndarray(x[None, start : start + 960], format="flt", layout="mono")
            frame.sample_rate = sr
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
    return buf.getvalue()


def test_decode_audio_keeps_samples_and_rate():
    x, sr, raw = decode_audio(b64(wav_bytes(seconds=1.0, sr=8000)), "wav", LIMITS)
    assert sr == 8000 and x.shape == (8000,) and x.dtype == np.float32
    assert abs(float(np.abs(x).max()) - 0.3) < 0.01 and raw == wav_bytes(seconds=1.0, sr=8000)


def test_webm_opus_from_a_browser_decodes_in_memory():
    x, sr, _ = decode_audio(b64(webm_opus_bytes()), "webm", LIMITS)
    assert sr == 48000 and 0.9 < len(x) / sr < 1.1
    spectrum = np.abs(np.fft.rfft(x[: sr // 2]))
    assert abs(np.argmax(spectrum) * 2 - 220) <= 4  # the 220 Hz tone survives the codec (2 Hz bins)


@pytest.mark.parametrize("data, code", [
    ("abc", "invalid_base64"),                     # length not a multiple of 4
    ("@@@@", "invalid_base64"),                    # outside the alphabet
    ("", "empty_audio"),
    (None, "invalid_base64"),
])
def test_bad_base64_is_refused(data, code):
    with pytest.raises(MediaError) as e:
        decode_audio(data, "wav", LIMITS)
    assert e.value.status == 400 and e.value.code == code


def test_duration_limit_checked_from_the_header_and_after_decoding():
    with pytest.raises(MediaError, match="limit is 10 s") as e:
        decode_audio(b64(wav_bytes(seconds=12, sr=1000)), "wav", LIMITS)
    assert e.value.code == "audio_too_long"
    # webm declares no frame count in a header: the decoded length is checked instead
    with pytest.raises(MediaError, match="limit is 1 s"):
        decode_audio(b64(webm_opus_bytes(seconds=2.0)), "webm", Limits(max_audio_seconds=1))


def test_silence_and_format_names():
    with pytest.raises(MediaError, match="silent"):
        decode_audio(b64(wav_bytes(amp=1e-6)), "wav", LIMITS)
    with pytest.raises(MediaError, match="not an audio format"):
        decode_audio(b64(wav_bytes()), "../etc", LIMITS)
    assert decode_base64(b64(b"\x00\x01"), "p") == b"\x00\x01"


def test_image_data_urls():
    mime, raw = decode_image_url("data:image/png;base64," + b64(b"png-bytes"), LIMITS)
    assert mime == "image/png" and raw == b"png-bytes"
    for url, status in [("https://example.org/x.png", 400), ("data:text/plain;base64,aGk=", 400),
                        ("data:image/png;base64," + "A" * 4000, 413)]:
        with pytest.raises(MediaError) as e:
            decode_image_url(url, LIMITS)
        assert e.value.status == status


def test_in_memory_features_equal_features_of_the_same_file(tiny_model, tmp_path):
    """An upload gets exactly the features its file would get through the model's own extractor."""
    path = tmp_path / "x.wav"
    path.write_bytes(wav_bytes(seconds=1.5, sr=8000, freq=90))  # 8 kHz: resampled to the model's rate
    x, sr = sf.read(path, dtype="float32")
    view = view_with_waves(tiny_model, {"mem:a": (x, sr)})
    assert view.features is not tiny_model.features and view.config is tiny_model.config
    mem = view.features("mem:a")
    assert torch.equal(mem, tiny_model.features(path))
    other = view_with_waves(tiny_model, {"mem:b": (resample(x, 8000, 4000) * 0.1, 4000)}).features("mem:b")
    assert mem.shape == other.shape and not torch.equal(mem, other)
    assert view_with_waves(tiny_model, {}) is tiny_model


def test_build_row_places_placeholders_and_checks_counts(tiny_model):
    audio = {"type": "input_audio", "input_audio": {"data": b64(wav_bytes()), "format": "wav"}}
    row, waves = build_row([{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": [audio, {"type": "text", "text": "Is there a murmur?"}]}], tiny_model, LIMITS)
    assert row["messages"][1]["content"] == "<audio>\nIs there a murmur?"
    assert row["audios"] == list(waves) and all(k.startswith("mem:") for k in waves)
    row, _ = build_row([{"role": "user", "content": [audio, audio, {"type": "text", "text": "Compare <audio> with <audio>."}]}], tiny_model, LIMITS)
    assert row["messages"][0]["content"] == "Compare <audio> with <audio>." and len(row["audios"]) == 2
    with pytest.raises(MediaError, match="placeholder"):
        build_row([{"role": "user", "content": [audio, {"type": "text", "text": "<audio> and <audio>?"}]}], tiny_model, LIMITS)
    with pytest.raises(MediaError, match="more than 2 media"):
        build_row([{"role": "user", "content": [audio, audio, audio]}], tiny_model, LIMITS)


def test_audio_for_a_text_only_model_is_refused():
    from types import SimpleNamespace

    audio = {"type": "input_audio", "input_audio": {"data": b64(wav_bytes()), "format": "wav"}}
    with pytest.raises(MediaError, match="text-only") as e:
        build_row([{"role": "user", "content": [audio, {"type": "text", "text": "Murmur?"}]}], SimpleNamespace(audio_tower=None), LIMITS)
    assert e.value.code == "unsupported_media"
