"""clinlm: from labelled clinical recordings to an instruction-following clinical model.

`clinlm.load(path)` loads a checkpoint folder written by `clinlm train`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(path, **kwargs):
    """Load a self-describing checkpoint folder (model, tokenizer, preprocessing) in one call."""
    from clinlm.models.checkpoint import load_checkpoint

    return load_checkpoint(path, **kwargs)
