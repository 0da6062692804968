"""Helpers for the serve tests: in-memory wav bytes, base64, a live uvicorn server on loopback."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import numpy as np
import soundfile as sf

API_KEY = "test-key-0123456789"


def wav_bytes(seconds: float = 1.0, sr: int = 4000, freq: float = 120.0, amp: float = 0.3, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a daemon thread on 127.0.0.1:<free port>."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
