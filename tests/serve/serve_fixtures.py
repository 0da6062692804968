"""Serve-test fixtures: one tiny trained checkpoint per session, loaded once.

A plain module, not a conftest.py: a second conftest module would shadow the top-level one that
other tests import helpers from. Test files import these fixtures by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clinlm_toys import tiny_overrides, write_toy_bench


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny audio model trained on the toy bench until it answers in words (40 steps, ~4 s)."""
    from clinlm.train.run import train_from_config

    root = tmp_path_factory.mktemp("serve_ckpt")
    bench = write_toy_bench(root / "bench", n_patients=6, comparison=False)
    return Path(train_from_config("configs/stetholm_tiny.yaml", tiny_overrides(bench, root / "run") + ["train.max_steps=40", "train.lr=0.01"]))


@pytest.fixture(scope="session")
def tiny_model(tiny_ckpt):
    import clinlm

    return clinlm.load(tiny_ckpt)


# Small limits so the bad-request corpus stays small and fast.
TEST_LIMITS = dict(max_body_bytes=2_000_000, max_audio_seconds=30.0, max_media=2, max_image_bytes=100_000, max_tokens=32)


@pytest.fixture(scope="session")
def live(tiny_model):
    """The app (with an API key) served by uvicorn on 127.0.0.1:<free port> for the whole session."""
    from serve_helpers import API_KEY, Server

    from clinlm.serve.api import create_app
    from clinlm.serve.media import Limits

    app = create_app(tiny_model, api_key=API_KEY, limits=Limits(**TEST_LIMITS), model_name="tiny")
    with Server(app) as server:
        server.app = app
        yield server
