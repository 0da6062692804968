"""Exact and near-duplicate texts, found with TF-IDF cosine similarity.

Radiology reports are templated: in the IU/OpenI reports about one findings text in four is an
exact duplicate of another once case, punctuation and `XXXX` marks are ignored, and many more
differ by a word. If such twins land in train and test, a model (or a retrieval baseline) is
scored on text it has already seen. `duplicate_groups` links every pair of texts whose TF-IDF
cosine similarity is at least `threshold` (exact duplicates have similarity 1) and returns the
connected components (union-find over those links, done by scipy), so the bench builder can keep a
whole group in one split.

Cost: the radius search is brute force over sparse vectors, O(n^2) dot products done in chunks by
scikit-learn: about a second for 3,000 reports; expect minutes at MIMIC-CXR's 200,000.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_NON_WORD = re.compile(r"[^a-z0-9]+")
_DEID = re.compile(r"x{4,}|_{3,}")  # OpenI "XXXX", MIMIC-CXR "___" (after lower-casing)
_ENUMERATOR = re.compile(r"(?:^|(?<=\s))\d{1,2}[.)](?=\s|$)")  # list numbers: "1. No acute disease. 2. ..."

DEFAULT_THRESHOLD = 0.9


def normalise_text(text: str | None) -> str:
    """Lower-case, drop de-identification marks, list numbers and punctuation, collapse whitespace.

    "1. No acute cardiopulmonary abnormality. ." and "No acute cardiopulmonary abnormality" become the
    same string; used for duplicate detection and for "most frequent impression" counting only,
    never for the text a model sees.
    """
    text = _ENUMERATOR.sub(" ", _DEID.sub(" ", (text or "").lower()))
    return " ".join(_NON_WORD.sub(" ", text).split())


def duplicate_groups(
    texts: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
    links: Sequence[tuple[int, int]] = (),
) -> tuple[np.ndarray, dict]:
    """Group indices of `texts` whose normalised TF-IDF cosine similarity is >= threshold.

    `links` adds pairs that must share a group whatever their text (e.g. two reports of one
    patient). Returns (group label per text, shape (n,)), and counts: exact-duplicate rows and
    groups, near-duplicate rows and groups (similar but not identical), the largest group.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"near-duplicate threshold is a cosine similarity in (0, 1], got {threshold}")
    n = len(texts)
    norm = [normalise_text(t) for t in texts]
    rows: list[np.ndarray] = [np.arange(n)]
    cols: list[np.ndarray] = [np.arange(n)]
    if n > 1 and any(norm):
        # Empty normalised texts get a zero vector (cosine distance 1 to everything): never linked.
        vectors = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+").fit_transform(norm)
        graph = NearestNeighbors(radius=1.0 - threshold + 1e-9, metric="cosine").fit(vectors).radius_neighbors_graph(vectors, mode="connectivity").tocoo()
        rows.append(graph.row)
        cols.append(graph.col)
    # Identical normalised texts always link, even where TF-IDF vectors are empty.
    first: dict[str, int] = {}
    for i, t in enumerate(norm):
        if t:
            j = first.setdefault(t, i)
            if j != i:
                rows.append(np.array([i]))
                cols.append(np.array([j]))
    text_graph = coo_matrix((np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    _, text_labels = connected_components(text_graph, directed=False)

    if links:
        a, b = np.array(links, dtype=np.int64).T
        rows.append(a)
        cols.append(b)
    graph = coo_matrix((np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    _, labels = connected_components(graph, directed=False)

    exact = Counter(t for t in norm if t)
    text_sizes = Counter(text_labels.tolist())
    sizes = Counter(labels.tolist())
    near_groups = [g for g, s in text_sizes.items() if s > 1]
    stats = {
        "texts": n,
        "unique_normalised_texts": len(exact) + sum(1 for t in norm if not t),
        "exact_duplicate_rows": sum(c for c in exact.values() if c > 1),  # rows whose text occurs more than once
        "exact_duplicate_groups": sum(1 for c in exact.values() if c > 1),
        "near_duplicate_threshold": threshold,
        "near_duplicate_groups": len(near_groups),  # groups of >= 2 texts, exact or near duplicates
        "near_duplicate_rows": sum(text_sizes[g] for g in near_groups),
        "largest_text_group": max(text_sizes.values()) if n else 0,
        "split_groups": len(sizes),  # units the splitter assigns (text groups joined by `links`)
        "largest_split_group": max(sizes.values()) if n else 0,
    }
    return labels.astype(np.int64), stats
