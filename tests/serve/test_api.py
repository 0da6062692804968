"""The OpenAI-compatible API, called by the official `openai` client and by raw HTTP with bad input."""

from __future__ import annotations

from serve_fixtures import TEST_LIMITS, live, tiny_ckpt, tiny_model  # noqa: F401  (pytest fixtures)

import io
import struct
import threading

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from openai import OpenAI
from serve_helpers import API_KEY, b64, wav_bytes
from typer.testing import CliRunner

from clinlm.cli import app as cli
from clinlm.serve.run import is_loopback, run_server


def audio_part(raw: bytes, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": b64(raw), "format": fmt}}


def ask_murmur(raw: bytes | None = None) -> list[dict]:
    return [{"role": "user", "content": [audio_part(raw or wav_bytes()), {"type": "text", "text": "Is there a murmur?"}]}]


@pytest.fixture
def client(live):
    return OpenAI(base_url=f"{live.url}/v1", api_key=API_KEY, max_retries=0, timeout=30)


def test_chat_completion_with_audio(client):
    r = client.chat.completions.create(model="tiny", messages=ask_murmur(), max_tokens=16)
    answer = r.choices[0].message.content
    assert r.object == "chat.completion" and r.model == "tiny"
    assert answer.strip(), "the trained toy model answers in words"
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_gives_the_same_answer_in_chunks(client):
    whole = client.chat.completions.create(model="tiny", messages=ask_murmur(), max_tokens=16).choices[0].message.content
    chunks = list(client.chat.completions.create(model="tiny", messages=ask_murmur(), max_tokens=16, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert len(chunks) >= 3


def test_follow_up_conversation_and_text_only_turns(client):
    first = client.chat.completions.create(model="tiny", messages=ask_murmur(), max_tokens=16).choices[0].message.content
    msgs = ask_murmur() + [{"role": "assistant", "content": first}, {"role": "user", "content": "Where is it loudest?"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8)
    assert isinstance(r.choices[0].message.content, str)
    assert r.usage.prompt_tokens > client.chat.completions.create(model="tiny", messages=ask_murmur(), max_tokens=8).usage.prompt_tokens


def test_models_and_health(client, live):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    h = httpx.get(f"{live.url}/health").json()
    assert h["status"] == "ok" and h["audio"] is True and h["vision"] is False and h["auth"] is True


def test_concurrent_requests_are_batched(client, live):
    """Six requests at once: same answers as one at a time, in fewer generate calls than requests."""
    alone = client.chat.completions.create(model="tiny", messages=ask_murmur(), max_tokens=12).choices[0].message.content
    b = live.app.state.batcher
    calls, reqs = b.batches, b.requests
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(
        client.chat.completions.create(model="tiny", messages=ask_murmur(), max_tokens=12).choices[0].message.content)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [alone] * 6
    assert b.requests - reqs == 6 and b.batches - calls < 6


def _wav_header_claiming(seconds: float, sr: int = 4000, actual_seconds: float = 0.5) -> bytes:
    """A PCM16 mono wav whose header declares `seconds` but that carries only `actual_seconds`."""
    data = (0.3 * np.sin(np.arange(int(actual_seconds * sr)) * 0.2) * 32767).astype("<i2").tobytes()
    declared = int(seconds * sr) * 2
    return (b"RIFF" + struct.pack("<I", 36 + declared) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
            + b"data" + struct.pack("<I", declared) + data)


def _float_wav(x: np.ndarray, sr: int = 4000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _nan_wav() -> bytes:
    x = 0.3 * np.sin(np.arange(4000) * 0.2)
    x[100:200] = np.nan
    return _float_wav(x)


def _chat(*parts, **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": list(parts)}], "max_tokens": 8, **extra}


TEXT = {"type": "text", "text": "Is there a murmur?"}
GOOD_B64 = b64(wav_bytes())
PNG = "data:image/png;base64," + b64(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)

# (name, request kwargs for httpx.post, expected status, expected error code or None)
BAD = [
    ("truncated base64", {"json": _chat({"type": "input_audio", "input_audio": {"data": GOOD_B64[:-3], "format": "wav"}}, TEXT)}, 400, "invalid_base64"),
    ("0-byte audio", {"json": _chat({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, TEXT)}, 400, "empty_audio"),
    ("2-hour audio header", {"json": _chat(audio_part(_wav_header_claiming(7200)), TEXT)}, 400, "audio_too_long"),
    ("40 s audio over the 30 s limit", {"json": _chat(audio_part(wav_bytes(seconds=40, sr=1000)), TEXT)}, 400, "audio_too_long"),
    ("not audio", {"json": _chat(audio_part(b"this is not a recording " * 20), TEXT)}, 400, "undecodable_audio"),
    ("silent audio", {"json": _chat(audio_part(wav_bytes(amp=0.0)), TEXT)}, 400, "silent_audio"),
    ("NaN samples", {"json": _chat(audio_part(_nan_wav()), TEXT)}, 400, "nan_audio"),
    ("too many media", {"json": _chat(audio_part(wav_bytes()), audio_part(wav_bytes()), audio_part(wav_bytes()), TEXT)}, 400, "too_many_media"),
    ("placeholder mismatch", {"json": _chat(audio_part(wav_bytes()), {"type": "text", "text": "Compare <audio> with <audio>."})}, 400, "placeholder_mismatch"),
    ("unknown content part", {"json": _chat({"type": "video", "video": {}}, TEXT)}, 400, None),
    ("image without a vision tower", {"json": _chat({"type": "image_url", "image_url": {"url": PNG}}, TEXT)}, 400, "unsupported_media"),
    ("huge image", {"json": _chat({"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 400_000}}, TEXT)}, 413, "image_too_large"),
    ("huge body", {"json": _chat(TEXT, padding="x" * 3_000_000)}, 413, "body_too_large"),
    ("wrong content type", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_content_type"),
    ("not JSON", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
    ("max_tokens over the limit", {"json": _chat(TEXT) | {"max_tokens": 10_000}}, 400, None),
    ("last turn not from the user", {"json": {"model": "tiny", "messages": [{"role": "assistant", "content": "hi"}]}}, 400, None),
    ("no messages", {"json": {"model": "tiny"}}, 400, None),
]


def test_bad_requests_get_the_right_4xx_and_the_server_keeps_answering(client, live):
    url = f"{live.url}/v1/chat/completions"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    wrong = []
    with httpx.Client(timeout=30) as http:
        for name, kw, status, code in BAD:
            r = http.post(url, **{**kw, "headers": {**auth, **kw.get("headers", {})}})
            err = r.json().get("error", {}) if r.headers.get("content-type", "").startswith("application/json") else {}
            if r.status_code != status or not err.get("message") or "type" not in err or (code and err.get("code") != code):
                wrong.append((name, r.status_code, r.text[:200]))
        for name, headers, code in [("missing key", {}, "missing_api_key"), ("wrong key", {"Authorization": "Bearer nope-nope-nope"}, "invalid_api_key")]:
            r = http.post(url, json=_chat(TEXT), headers=headers)
            if r.status_code != 401 or r.json()["error"]["code"] != code:
                wrong.append((name, r.status_code, r.text[:200]))
        if http.get(f"{live.url}/v1/models").status_code != 401:
            wrong.append(("models without key", "not 401", ""))
    assert not wrong, wrong
    # the official client maps them to its typed errors too
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{live.url}/v1", api_key="wrong-key-123", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError, match="silent"):
        client.chat.completions.create(model="tiny", messages=ask_murmur(wav_bytes(amp=0.0)), max_tokens=8)
    # and good requests still work afterwards
    assert client.chat.completions.create(model="tiny", messages=ask_murmur(), max_tokens=8).choices[0].message.content.strip()


def test_server_without_key_and_saved_media_folder(tiny_model, tmp_path):
    from serve_helpers import Server

    from clinlm.serve.api import create_app

    with Server(create_app(tiny_model, media_dir=tmp_path / "uploads")) as s:
        c = OpenAI(base_url=f"{s.url}/v1", api_key="anything", max_retries=0)
        assert c.chat.completions.create(model="x", messages=ask_murmur(), max_tokens=4).choices
    saved = list((tmp_path / "uploads").glob("*.wav"))
    assert len(saved) == 1 and saved[0].read_bytes() == wav_bytes()


def test_refuses_to_listen_beyond_loopback_without_a_key(tiny_ckpt, tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")
    with pytest.raises(ValueError, match="API key"):
        run_server(tiny_ckpt, host="0.0.0.0")
    r = CliRunner().invoke(cli, ["serve", str(tiny_ckpt), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "API key" in r.output
    short = tmp_path / "key.txt"
    short.write_text("abc\n")
    r = CliRunner().invoke(cli, ["serve", str(tiny_ckpt), "--api-key-file", str(short)])
    said = " ".join(r.output.split())  # rich wraps long lines (the tmp path), so compare word by word
    assert r.exit_code == 2 and "shorter than 8" in said and "abc" not in said  # the key itself is never echoed


def test_logs_hold_no_keys_or_content(client, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "secret-question-text"}], max_tokens=4)
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=str(client.base_url), api_key="wrong-key-xyz", max_retries=0).models.list()
    text = caplog.text
    assert "answered" in text  # the server does log, just not content
    assert "secret-question-text" not in text and API_KEY not in text and "wrong-key-xyz" not in text


def test_a_failing_model_gives_a_500_in_the_openai_format(tiny_model):
    from fastapi.testclient import TestClient

    from clinlm.serve.api import create_app

    app = create_app(tiny_model)

    async def broken(*args, **kwargs):
        raise RuntimeError("boom with private text")

    app.state.batcher.submit = broken
    with TestClient(app, raise_server_exceptions=False) as http:
        r = http.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "private text" not in r.text
        assert http.get("/health").status_code == 200
