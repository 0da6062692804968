"""`clinlm serve`: read the key, refuse unsafe setups, load the model once, run uvicorn.

A server that listens beyond loopback must have an API key (there is no such thing as a safe
open clinical endpoint). The key is read from a file so it never appears in shell history or
`ps`; it is never logged.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from clinlm.serve.media import Limits


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond this machine


def read_key(path: str | Path | None) -> str | None:
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"API key file not found: {path}")
    key = path.read_text().strip()
    if len(key) < 8:
        raise ValueError(f"the API key in {path} is shorter than 8 characters; use e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > {path}`")
    return key


def run_server(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key_file: str | Path | None = None,
               media_dir: str | Path | None = None, limits: Limits = Limits()) -> None:
    import uvicorn

    from clinlm.serve.api import create_app

    key = read_key(api_key_file)
    if key is None and not is_loopback(host):
        raise ValueError(f"refusing to listen on {host} without an API key: pass --api-key-file (or use --host 127.0.0.1)")
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint} (train one with `clinlm train`)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(checkpoint, api_key=key, limits=limits, media_dir=media_dir)
    uvicorn.run(app, host=host, port=port, log_level="info")
