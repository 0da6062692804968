"""A learned reranker for findings -> impression: choose among the model's impression and retrieved ones.

IU/OpenI impressions are mostly short templates, and which one a radiologist wrote follows the
wording of the findings. A small language model trained on 1,821 reports writes fluent templates,
but the impressions of similar training reports often hold a better one (oracle ROUGE-1 among them
far above either). So the impression clinlm returns is chosen from candidates:

    candidates = the model's greedy impression + the impressions of the K most similar training
                 reports (the checkpoint's `ImpressionIndex`, TF-IDF over findings), distinct texts

and scored by a linear model over features that use only the prompt, the candidates and the model
(never the reference):

    logprob         mean token log-probability of the candidate under the model, given the prompt
    logprob_gap     logprob minus the best candidate's in the row (the model's own ranking)
    generated       1 for the model's greedy impression
    cosine          findings similarity of the most similar training report with that impression
    rank            1 / (1 + position of that report among the K retrieved); 0 when not retrieved
    votes           fraction of the K retrieved reports whose impression is this one (k-NN vote)
    log_frequency   log(1 + how often the impression occurs in the training reports)
    findings_cover  fraction of the candidate's words that occur in the findings (an abnormal
                    impression repeats the abnormal finding's words)
    agree_model     ROUGE-1 F between the candidate and the greedy impression
    consensus       mean ROUGE-1 F between the candidate and the other candidates (an MBR term)
    log_words       log(1 + words)
    knn_rouge_pP    expected ROUGE-1 F of the candidate against the impressions of the 20 most similar
                    training reports, each weighted by cosine^P (P = 4, 16: sharper towards the
                    nearest): minimum-Bayes-risk decoding with the neighbours as the posterior
    knn_vote_pP     the same weights summed over the neighbours whose impression is this one

Fitting (`fit_reranker`): on held-out rows (the validation split: the model did not train on them,
so its log-probabilities there are honest), each candidate's target is its ROUGE-1 F against the
reference; features and targets are centred within each row, so ridge regression learns to rank
candidates of one row against each other (a fixed-effects linear ranker). Saved in the checkpoint
as JSON (`impression_reranker.json`: feature names, standardisation, weights): no pickle.

    clinlm train configs/radiology_impression.yaml   # fits the reranker on val.jsonl after training
    clinlm eval runs/radiology/model bench/iu/test.jsonl --out runs/radiology/eval
    # -> `model` (reranked) beside `model_greedy` and the baselines
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clinlm.bench.dedup import normalise_text
from clinlm.bench.retrieval import INDEX_FILE, ImpressionIndex
from clinlm.records import atomic_write_text

RERANKER_FILE = "impression_reranker.json"
FORMAT = "clinlm-impression-reranker/1"
DEFAULT_CANDIDATES = 20  # retrieved impressions per row (before removing duplicates); 10 gave ROUGE-1 0.626 / 0.397 (all / abnormal), 20 0.632 / 0.403
NEIGHBOURS = 20  # training reports whose impressions weigh the candidates (knn_* features)
POWERS = (4, 16)  # cosine^P weights of the neighbours
FEATURES = ("logprob", "logprob_gap", "generated", "cosine", "rank", "votes", "log_frequency",
            "findings_cover", "agree_model", "consensus", "log_words",
            *(f"knn_{kind}_p{p}" for p in POWERS for kind in ("rouge", "vote")))


# ---------------------------------------------------------------- candidates and features


@dataclass
class Candidates:
    """One row's candidate impressions and the retrieval facts about each (no reference involved)."""

    texts: list[str]
    cosine: list[float]
    rank: list[float]
    votes: list[float]
    generated: list[float]
    neighbours: list[str] = field(default_factory=list)  # impressions of the NEIGHBOURS most similar training reports
    neighbour_cosines: list[float] = field(default_factory=list)


def candidates_for(index: ImpressionIndex, findings: Sequence[str], generated: Sequence[str],
                   k: int = DEFAULT_CANDIDATES) -> list[Candidates]:
    """Per row: the greedy impression first, then the distinct impressions of the k nearest training reports."""
    sims = index.similarities(findings)  # (n, n_train)
    wide = index.neighbours(findings, max(k, NEIGHBOURS))  # (n, max(k, NEIGHBOURS)), most similar first
    neighbours = wide[:, :k]
    out = []
    for i, gen in enumerate(generated):
        keys = [normalise_text(index.impressions[j]) for j in neighbours[i]]
        seen: dict[str, int] = {}
        texts, cosine, rank, votes, is_gen = [], [], [], [], []

        def add(text: str, cos: float, r: float, v: float, g: float) -> None:
            key = normalise_text(text)
            if key in seen:  # the same impression again: keep the first spelling, mark it generated too
                is_gen[seen[key]] = max(is_gen[seen[key]], g)
                return
            seen[key] = len(texts)
            texts.append(text)
            cosine.append(cos)
            rank.append(r)
            votes.append(v)
            is_gen.append(g)

        gen_key = normalise_text(gen)
        hits = [p for p, key in enumerate(keys) if key == gen_key]
        first = hits[0] if hits else None
        add(gen, float(sims[i, neighbours[i][first]]) if first is not None else 0.0,
            1.0 / (1 + first) if first is not None else 0.0, len(hits) / max(len(keys), 1), 1.0)
        for p, j in enumerate(neighbours[i]):
            add(index.impressions[j], float(sims[i, j]), 1.0 / (1 + p), keys.count(keys[p]) / len(keys), 0.0)
        out.append(Candidates(texts, cosine, rank, votes, is_gen, [index.impressions[j] for j in wide[i, :NEIGHBOURS]],
                              [float(sims[i, j]) for j in wide[i, :NEIGHBOURS]]))
    return out


def _words(text: str) -> list[str]:
    return normalise_text(text).split()


def _rouge1(scorer, a: str, b: str) -> float:
    return scorer.score(a, b)["rouge1"].fmeasure


def feature_matrix(cands: Sequence[Candidates], findings: Sequence[str], generated: Sequence[str],
                   logprobs: Sequence[Sequence[float]], train_frequency: Mapping[str, int]) -> list[np.ndarray]:
    """One (n_candidates, len(FEATURES)) array per row, columns in FEATURES order."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    out = []
    for c, f, g, lp in zip(cands, findings, generated, logprobs):
        finding_words = set(_words(f))
        n = len(c.texts)
        pair = np.eye(n)
        for a in range(n):
            for b in range(a + 1, n):
                pair[a, b] = pair[b, a] = _rouge1(scorer, c.texts[a], c.texts[b])
        best = max(lp)
        knn = _knn_features(scorer, c)  # (n, 2 * len(POWERS))
        rows = []
        for j, text in enumerate(c.texts):
            words = _words(text)
            rows.append([
                lp[j], lp[j] - best, c.generated[j], c.cosine[j], c.rank[j], c.votes[j],
                math.log1p(train_frequency.get(normalise_text(text), 0)),
                sum(w in finding_words for w in words) / max(len(words), 1),
                _rouge1(scorer, text, g),
                (pair[j].sum() - 1) / (n - 1) if n > 1 else 0.0,
                math.log1p(len(words)),
                *knn[j],
            ])
        out.append(np.asarray(rows, dtype=np.float64))
    return out


def _knn_features(scorer, c: Candidates) -> np.ndarray:
    """Per candidate, for each P: (sum_j w_j ROUGE-1(candidate, neighbour_j), sum_j w_j [same impression]),
    with w_j = cosine_j^P normalised over the neighbours: (n_candidates, 2 * len(POWERS))."""
    if not c.neighbours:
        return np.zeros((len(c.texts), 2 * len(POWERS)))
    cos = np.maximum(np.asarray(c.neighbour_cosines), 1e-6)
    overlap = np.array([[_rouge1(scorer, t, imp) for imp in c.neighbours] for t in c.texts])  # (n_candidates, NEIGHBOURS)
    keys = [normalise_text(imp) for imp in c.neighbours]
    same = np.array([[normalise_text(t) == key for key in keys] for t in c.texts], dtype=np.float64)
    cols = []
    for p in POWERS:
        w = cos**p / (cos**p).sum()
        cols += [overlap @ w, same @ w]
    return np.stack(cols, axis=1)


# ---------------------------------------------------------------- the linear ranker


@dataclass
class Reranker:
    """score = ((x - mean) / scale) @ weights; the highest-scoring candidate of a row is chosen."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    k: int = DEFAULT_CANDIDATES
    fitted_on: dict = field(default_factory=dict)  # rows, candidates, alpha, held-out figures

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(n_candidates, n_features) -> (n_candidates,)."""
        if x.shape[1] != len(self.features):
            raise ValueError(f"reranker expects {len(self.features)} features ({', '.join(self.features)}), got {x.shape[1]}")
        return ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.weights)

    def choose(self, per_row: Sequence[np.ndarray]) -> list[int]:
        """Index of the chosen candidate per row (ties: the earlier candidate, i.e. the model's own)."""
        return [int(np.argmax(self.scores(x))) for x in per_row]

    def save(self, path: str | Path) -> Path:
        doc = {"format": FORMAT, "features": self.features, "mean": self.mean, "scale": self.scale,
               "weights": self.weights, "k": self.k, "fitted_on": self.fitted_on}
        atomic_write_text(json.dumps(doc, indent=2), Path(path))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Reranker":
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"{path} is not an impression reranker of format {FORMAT} (got {doc.get('format')!r})")
        if list(doc["features"]) != list(FEATURES):
            raise ValueError(f"{path} was fitted on features {doc['features']}; this clinlm computes {list(FEATURES)}: refit it "
                             "(`clinlm rerank-fit CKPT bench/iu/val.jsonl`)")
        return cls(list(doc["features"]), doc["mean"], doc["scale"], doc["weights"], int(doc.get("k", DEFAULT_CANDIDATES)),
                   doc.get("fitted_on", {}))


def fit_reranker(per_row: Sequence[np.ndarray], targets: Sequence[np.ndarray], alpha: float = 1.0,
                 k: int = DEFAULT_CANDIDATES) -> Reranker:
    """Ridge regression of within-row-centred targets on within-row-centred standardised features.

    per_row[i]: (n_i, F) features of row i's candidates; targets[i]: (n_i,) their ROUGE-1 against the
    reference. Rows with one candidate carry no ranking information and are skipped."""
    from sklearn.linear_model import Ridge

    keep = [i for i, x in enumerate(per_row) if len(x) > 1]
    if not keep:
        raise ValueError("no row has two or more candidates: nothing to learn a ranking from")
    x_all = np.concatenate([per_row[i] for i in keep])
    mean = x_all.mean(0)
    scale = x_all.std(0)
    scale[scale == 0] = 1.0
    xc = np.concatenate([(per_row[i] - mean) / scale - ((per_row[i] - mean) / scale).mean(0) for i in keep])
    yc = np.concatenate([np.asarray(targets[i]) - np.mean(targets[i]) for i in keep])
    ridge = Ridge(alpha=alpha, fit_intercept=False).fit(xc, yc)
    return Reranker(list(FEATURES), mean.tolist(), scale.tolist(), ridge.coef_.tolist(), k,
                    {"rows": len(keep), "candidates": int(len(x_all)), "alpha": alpha})


# ---------------------------------------------------------------- with a checkpoint


def score_candidates(model, rows: Sequence[dict[str, Any]], cands: Sequence[Candidates], batch_size: int = 16) -> list[list[float]]:
    """The model's mean token log-probability of every candidate as the reply to its row's prompt."""
    from clinlm.infer import answer_logprob

    flat = [(i, t) for i, c in enumerate(cands) for t in c.texts]
    scores = answer_logprob(model, [rows[i] for i, _ in flat], [t for _, t in flat], batch_size=batch_size)
    out: list[list[float]] = [[] for _ in cands]
    for (i, _), s in zip(flat, scores):
        out[i].append(float(s))
    return out


def features_for(model, index: ImpressionIndex, rows: Sequence[dict[str, Any]], generated: Sequence[str],
                 k: int, batch_size: int = 16) -> tuple[list[Candidates], list[np.ndarray]]:
    """Candidates and their features for prompted rows (the prompts as the model sees them)."""
    from clinlm.evaluate.impression import findings_of

    findings = [findings_of(r) for r in rows]
    cands = candidates_for(index, findings, generated, k)
    logprobs = score_candidates(model, rows, cands, batch_size)
    frequency = Counter(normalise_text(t) for t in index.impressions)
    return cands, feature_matrix(cands, findings, generated, logprobs, frequency)


def rerank(checkpoint: str | Path, rows: Sequence[dict[str, Any]], generated: Sequence[str], batch_size: int = 16,
           model=None) -> list[str] | None:
    """The reranker's choice per row, or None when the checkpoint has no reranker (or no index)."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / RERANKER_FILE).exists() or not (checkpoint / INDEX_FILE).exists():
        return None
    import clinlm

    from clinlm.bench.impression import _load_index  # cached: `clinlm serve` reranks every request

    reranker = Reranker.load(checkpoint / RERANKER_FILE)
    index = _load_index(str((checkpoint / INDEX_FILE).resolve()))
    model = model if model is not None else clinlm.load(checkpoint)
    cands, feats = features_for(model, index, rows, generated, reranker.k, batch_size)
    return [c.texts[j] for c, j in zip(cands, reranker.choose(feats))]


def fit_for_checkpoint(checkpoint: str | Path, val_rows: Sequence[dict[str, Any]], *, k: int = DEFAULT_CANDIDATES,
                       alpha: float = 1.0, batch_size: int = 16, max_new_tokens: int = 160, console=None) -> Reranker:
    """Fit the reranker on held-out rows with the checkpoint's model and index; saved in the checkpoint."""
    import clinlm
    from clinlm import infer
    from clinlm.evaluate.impression import reference_of, rouge_per_row
    from clinlm.evaluate.impression_run import with_similar
    from clinlm.evaluate.run import prompt_of

    checkpoint = Path(checkpoint)
    if not (checkpoint / INDEX_FILE).exists():
        raise FileNotFoundError(f"{checkpoint} has no {INDEX_FILE}: the reranker chooses among retrieved impressions. "
                                "Train on a bench built by `clinlm bench build ... --task impression` (it writes the index).")
    rows = [r for r in val_rows if r.get("task") == "impression"]
    if not rows:
        raise ValueError("no impression rows to fit the reranker on")
    model = clinlm.load(checkpoint)
    index = ImpressionIndex.load(checkpoint / INDEX_FILE)
    prompted = [{**r, "messages": prompt_of(r)} for r in with_similar(checkpoint, rows)]
    generated = infer.generate(model, prompted, max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=0.0)
    cands, feats = features_for(model, index, prompted, generated, k, batch_size)
    targets = [rouge_per_row(c.texts, [reference_of(r)] * len(c.texts))["rouge1"] for c, r in zip(cands, rows)]
    reranker = fit_reranker(feats, targets, alpha=alpha, k=k)
    chosen = reranker.choose(feats)
    reranker.fitted_on.update({
        "val_rows": len(rows),
        "val_rouge1_greedy": float(np.mean([t[0] for t in targets])),
        "val_rouge1_reranked_in_sample": float(np.mean([t[j] for t, j in zip(targets, chosen)])),
        "val_rouge1_oracle": float(np.mean([t.max() for t in targets])),
        "val_chose_generated": float(np.mean([c.generated[j] > 0 for c, j in zip(cands, chosen)])),
    })
    reranker.save(checkpoint / RERANKER_FILE)
    if console is not None:
        f = reranker.fitted_on
        console.print(f"[green]impression reranker[/] fitted on {len(rows)} validation rows: ROUGE-1 greedy "
                      f"{f['val_rouge1_greedy']:.3f}, reranked {f['val_rouge1_reranked_in_sample']:.3f} (in sample), "
                      f"oracle {f['val_rouge1_oracle']:.3f} -> {checkpoint / RERANKER_FILE}")
    return reranker
