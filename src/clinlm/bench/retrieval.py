"""Similar-report retrieval for retrieval-augmented impression prompts.

Radiology impressions are largely templated, and which template a report uses follows the
findings' wording (the radiologist's own phrasing): the impressions of the training reports whose
findings are most similar are strong evidence for the impression. Retrieval-augmented generation
(RAG: Lewis et al. 2020) puts those impressions into the prompt, so the language model learns when
to copy one of them and when to write from the findings instead.

    index = ImpressionIndex.fit(train_findings, train_impressions, groups)
    index.query(["The heart is normal ..."], k=3)                    # [[(impression, cosine), ...]]
    index.query(train_findings, k=3, exclude=groups)                 # leave-group-out, for training rows
    index.save(path); ImpressionIndex.load(path)
    attach_index("bench/iu/train.jsonl", "runs/radiology/model")     # the index travels with the checkpoint

Similarity: cosine between TF-IDF vectors (word 1-2 grams, sublinear tf) of the normalised
findings (`clinlm.bench.dedup.normalise_text`): the same representation as the `tfidf_nn`
baseline, so the top candidate is that baseline's answer. The index is fitted on the training
split only. Saved as JSON (the texts and settings; the vectoriser is refitted on load, which is
deterministic and takes well under a second for IU's 1,821 reports): no pickle in a checkpoint.

`clinlm bench build --task impression` writes the index beside train.jsonl (with the SHA-256 of
that file); `clinlm train` copies it into the checkpoint (`attach_index`) when it still matches the
training file, so `clinlm ask CKPT "FINDINGS: ..."` retrieves offline, from the training split.

Leakage: for a training row the candidates must come from reports that a test row could see, i.e.
not from the row itself nor from its split unit (the same patient or a near-duplicate findings
text: `clinlm.bench.impression` keeps each such group in one split). `exclude` takes that group id.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from clinlm.bench.dedup import normalise_text
from clinlm.records import atomic_write_text

INDEX_FILE = "impression_index.json"
FORMAT = "clinlm-impression-index/1"


def _vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)


@dataclass
class ImpressionIndex:
    """Training findings -> impressions, searchable by findings similarity."""

    findings: list[str]
    impressions: list[str]
    groups: list[int] = field(default_factory=list)  # split unit of each training report (leave-group-out)
    k: int = 3  # candidates per prompt, as the bench built them (ask and eval use the same)
    train_sha256: str = ""  # of the train.jsonl the index was fitted with
    _vec: object = field(default=None, repr=False)
    _matrix: object = field(default=None, repr=False)  # (n_train, vocabulary) sparse, rows of unit length
    _keys: object = field(default=None, repr=False)

    @classmethod
    def fit(cls, findings: Sequence[str], impressions: Sequence[str], groups: Sequence[int] | None = None, k: int = 3,
            train_sha256: str = "") -> "ImpressionIndex":
        if len(findings) != len(impressions) or not findings:
            raise ValueError(f"an impression index needs one impression per findings text, got {len(findings)} and {len(impressions)}")
        groups = list(range(len(findings))) if groups is None else [int(g) for g in groups]
        if len(groups) != len(findings):
            raise ValueError(f"{len(groups)} group ids for {len(findings)} findings")
        index = cls(list(findings), list(impressions), groups, int(k), train_sha256)
        index._vec = _vectorizer()
        index._matrix = index._vec.fit_transform([normalise_text(f) for f in index.findings])
        return index

    def __len__(self) -> int:
        return len(self.findings)

    def similarities(self, queries: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each query's findings to every training findings text: (n_queries, n_train)."""
        q = self._vec.transform([normalise_text(t) for t in queries])
        return (q @ self._matrix.T).toarray()

    def neighbours(self, queries: Sequence[str], k: int, exclude: Sequence[int] | None = None) -> np.ndarray:
        """Indices of the k most similar training reports per query, most similar first: (n_queries, k).

        `exclude[i]` is a group id whose reports query i may not retrieve (its own split unit).
        Equally similar reports (IU has many identical findings texts with different impressions)
        are ordered by how many of them share an impression, the k-nearest-neighbour vote, then by
        training order, so results do not depend on the platform's sort.
        """
        sims = self.similarities(queries)
        if exclude is not None:
            groups = np.asarray(self.groups)
            sims[np.asarray(exclude)[:, None] == groups[None, :]] = -np.inf
        k = min(k, sims.shape[1])
        keys = self._impression_keys()
        out = np.zeros((len(sims), k), dtype=np.int64)
        for i, row in enumerate(np.round(sims, 9)):  # rounding: equal texts give equal cosines to the last bits
            kth = np.partition(row, -k)[-k]
            cand = np.flatnonzero(row >= kth)  # the k best and everything tied with the k-th
            votes = Counter(zip(row[cand].tolist(), keys[cand].tolist()))
            cand = sorted(cand.tolist(), key=lambda j: (-row[j], -votes[(row[j], keys[j])], j))
            out[i] = cand[:k]
        return out

    def _impression_keys(self) -> np.ndarray:
        """An integer per training report: equal for equal normalised impressions."""
        if getattr(self, "_keys", None) is None:
            ids: dict[str, int] = {}
            self._keys = np.array([ids.setdefault(normalise_text(t), len(ids)) for t in self.impressions], dtype=np.int64)
        return self._keys

    def query(self, queries: Sequence[str], k: int, exclude: Sequence[int] | None = None) -> list[list[tuple[str, float]]]:
        """[(impression, cosine), ...] of the k most similar training reports, per query."""
        sims = self.similarities(queries)
        idx = self.neighbours(queries, k, exclude)
        return [[(self.impressions[j], float(sims[i, j])) for j in row] for i, row in enumerate(idx)]

    # ------------------------------------------------------------ storage

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        doc = {"format": FORMAT, "k": self.k, "train_sha256": self.train_sha256, "findings": self.findings,
               "impressions": self.impressions, "groups": self.groups}
        atomic_write_text(json.dumps(doc, ensure_ascii=False), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ImpressionIndex":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no impression index at {path}; `clinlm bench build --task impression` writes one")
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"{path} is not an impression index of format {FORMAT} (got {doc.get('format')!r})")
        return cls.fit(doc["findings"], doc["impressions"], doc["groups"], doc["k"], doc.get("train_sha256", ""))


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def attach_index(train_file: str | Path, checkpoint: str | Path) -> Path | None:
    """Copy the impression index beside `train_file` into `checkpoint`, if there is one fitted on that file.

    Returns the copied path, or None when the training data has no index (not impression rows) or
    the index was fitted on another version of the file (a stale index would retrieve from reports
    the model was not trained with; rebuild the bench to refresh it).
    """
    source = Path(train_file).parent / INDEX_FILE
    if not source.exists():
        return None
    doc = json.loads(source.read_text())
    if doc.get("train_sha256") != file_sha256(train_file):
        warnings.warn(
            f"{source} was fitted on another version of {train_file}; not copied into {checkpoint}, so "
            "`clinlm ask` will prompt without similar reports. Rebuild the bench (`clinlm bench build ... --task impression`).",
            stacklevel=2,
        )
        return None
    target = Path(checkpoint) / INDEX_FILE
    shutil.copyfile(source, target)
    return target
