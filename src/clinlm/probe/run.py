"""`clinlm probe ENCODER... RECORDS... --out DIR`: linear probes on frozen embeddings, AUROC with patient CIs.

    clinlm probe runs/aligned/encoder rec/heart rec/lung --out runs/probe
    clinlm probe builtin:random rec/heart rec/lung --out runs/probe_before
    clinlm probe runs/aligned/encoder builtin:random rec/heart rec/lung --out runs/probe   # both at once
    clinlm probe --merge runs/probe_before --merge runs/probe_after --out runs/probe_both  # join runs

Arguments that are ingest folders (they hold records.parquet) are the data; the others are encoders
(probe/embed.py). For every task the records support (probe/tasks.py):

1. embeddings: each recording's time-mean encoder output; a patient-level task averages its
   patient's recordings;
2. split: the records' own patient-level `split` column (`splits.py`; train + val fit, test scores),
   so no patient is on both sides; or, with `--cv K`, StratifiedGroupKFold over patients (every
   unit scored once, out of fold: for small real samples whose patients the encoder never saw);
3. fit: standardisation + L2 logistic regression (scikit-learn, balanced class weights), C chosen
   from {0.01, 0.1, 1, 10} by AUROC in a 3-fold patient-grouped inner CV on the training units;
4. score: AUROC on the test units with a 95% CI from 1,000 bootstrap draws of test patients
   (`evaluate.bootstrap`, `evaluate.stats.auroc`).

A task with fewer than `--min-train` positives or negatives among the training units, or fewer
than `--min-test` among the test units, is skipped and listed with its counts. The mean AUROC of each
encoder is taken over the tasks every encoder has, with a CI from the same patient draws applied to
all tasks at once; its difference to the baseline encoder (`builtin:random` when present, else the
first) gets a paired CI from those draws, overall and per task.

Output: probe.json (rows `{"encoder", "task", "auroc", "ci_low", "ci_high", "n_train", "n_test"}`),
scores.jsonl (every test unit's score, for merging runs), summary.json (means, differences,
skipped tasks and why, units left out), probe.md (the table) and probe.png (the plot).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from clinlm.probe.tasks import ProbeTask, probe_tasks
from clinlm.records import RECORDS_FILE, Record, iter_records

DEFAULT_CONFIG = "configs/align_default.yaml"
AUDIO_MODALITIES = ("heart", "lung", "cough")
C_GRID = (0.01, 0.1, 1.0, 10.0)
N_BOOT = 1000


def is_records_folder(path: str | Path) -> bool:
    p = Path(path)
    return (p / RECORDS_FILE).is_file() or (p.suffix == ".parquet" and p.is_file())


def probe_records(folders: list[str | Path], seed: int = 0) -> tuple[list[Record], dict[str, int]]:
    """Audio records with media on disk, each with a patient-level split; counts of what was left out."""
    from clinlm.splits import assign_splits

    records, left = [], {"media not on disk": 0, "other modality": 0}
    for folder in folders:
        for r in iter_records(Path(folder)):
            if r.modality not in AUDIO_MODALITIES:
                left["other modality"] += 1
            elif not r.media or not Path(r.media[0]).is_file():
                left["media not on disk"] += 1
            else:
                records.append(r)
    if any(r.split is None for r in records):  # a table written without splits: assign them now
        by_patient = assign_splits(records, seed=seed)
        for r in records:
            r.split = r.split or by_patient[r.patient_id]
    seen: dict[str, str] = {}
    for r in records:
        if seen.setdefault(r.patient_id, r.split) != r.split:
            raise ValueError(f"patient {r.patient_id} has records in the {seen[r.patient_id]} and {r.split} splits: "
                             "re-ingest the folder (splits are by patient)")
    return records, left


def unit_split(task: ProbeTask, split_of: dict[str, str]) -> dict[str, str]:
    """unit -> "train" (train and val: the fitting side) or "test", by the unit's patient."""
    return {u: ("test" if split_of[task.patient[u]] == "test" else "train") for u in task.labels}


def fit_scores(x_train: np.ndarray, y_train: np.ndarray, groups: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    """P(positive) for x_test from a logistic regression fitted on x_train (C by grouped inner CV)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced"))
    n_groups_per_class = min(len(set(groups[y_train])), len(set(groups[~y_train])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on tiny folds; the test AUROC is what counts
        if n_groups_per_class >= 3:
            search = GridSearchCV(pipe, {"logisticregression__C": list(C_GRID)}, scoring="roc_auc",
                                  cv=StratifiedGroupKFold(3, shuffle=True, random_state=seed), error_score=np.nan)
            search.fit(x_train, y_train, groups=groups)
            model = search.best_estimator_
        else:
            model = pipe.set_params(logisticregression__C=1.0).fit(x_train, y_train)
    return model.predict_proba(x_test)[:, 1]


def _counts(y: np.ndarray) -> tuple[int, int]:
    return int(y.sum()), int((~y).sum())


def evaluate_task(task: ProbeTask, emb: dict[str, np.ndarray], split_of: dict[str, str], *, cv: int | None,
                  min_train: int, min_test: int, seed: int) -> dict[str, Any]:
    """{"status": "ok", "units", "patients", "labels", "scores", "n_train", "n_test"} or {"status": "skipped", "reason"}."""
    units, vecs = [], []
    missing = 0
    for u in sorted(task.labels):
        rows = [emb[r] for r in task.records[u] if r in emb and np.isfinite(emb[r]).all()]
        if not rows:
            missing += 1
            continue
        units.append(u)
        vecs.append(np.mean(rows, axis=0))
    if len(units) < 2:
        return {"status": "skipped", "reason": f"{len(units)} units with embeddings"}
    x = np.stack(vecs)
    y = np.array([task.labels[u] for u in units])
    patients = np.array([task.patient[u] for u in units])
    if cv:
        from sklearn.model_selection import StratifiedGroupKFold

        pos, neg = _counts(y)
        if min(len(set(patients[y])), len(set(patients[~y]))) < cv:
            return {"status": "skipped", "reason": f"{cv}-fold CV needs {cv} patients of each class; has {pos} positive / {neg} negative units"}
        scores = np.full(len(units), np.nan)
        n_train = len(units)
        for tr, te in StratifiedGroupKFold(cv, shuffle=True, random_state=seed).split(x, y, patients):
            if y[tr].all() or not y[tr].any():
                return {"status": "skipped", "reason": "a CV fold's training side has one class only"}
            scores[te] = fit_scores(x[tr], y[tr], patients[tr], x[te], seed)
            n_train = min(n_train, len(tr))
        test = np.arange(len(units))
    else:
        side = unit_split(task, split_of)
        is_test = np.array([side[u] == "test" for u in units])
        train, test = np.where(~is_test)[0], np.where(is_test)[0]
        (tp, tn), (sp, sn) = _counts(y[train]), _counts(y[test])
        if min(tp, tn) < min_train or min(sp, sn) < min_test:
            return {"status": "skipped",
                    "reason": f"too few units per class: train {tp} positive / {tn} negative (need {min_train}), "
                              f"test {sp} positive / {sn} negative (need {min_test})"}
        scores = fit_scores(x[train], y[train], patients[train], x[test], seed)
        n_train = len(train)
    return {"status": "ok", "units": [units[i] for i in test], "patients": patients[test].tolist(),
            "labels": y[test].tolist(), "scores": [float(s) for s in scores], "n_train": int(n_train),
            "n_test": int(len(test)), "missing_embeddings": missing}


def auroc_ci(labels: list[bool], scores: list[float], patients: list[str], seed: int = 0, n_boot: int = N_BOOT):
    from clinlm.evaluate.bootstrap import bootstrap_ci
    from clinlm.evaluate.stats import auroc

    y = np.where(np.asarray(labels, bool), "yes", "no")
    return bootstrap_ci(auroc, y, np.zeros(len(y)), np.asarray(scores, float), patients=patients, n_boot=n_boot, seed=seed)


def _align_config(config: str | Path | None) -> dict[str, Any]:
    from clinlm.align.run import load_align_config

    path = Path(config or DEFAULT_CONFIG)
    if not path.exists() and config is None:
        path = Path(__file__).resolve().parents[3] / DEFAULT_CONFIG  # a source checkout's configs/
    return load_align_config(path)


def read_run(folder: str | Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(probe.json rows, scores.jsonl rows, skipped) of an earlier probe run, for --merge."""
    folder = Path(folder)
    if not (folder / "probe.json").exists():
        raise FileNotFoundError(f"no probe.json in {folder}: not a `clinlm probe` output folder")
    rows = json.loads((folder / "probe.json").read_text())
    scores = [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines() if line.strip()] \
        if (folder / "scores.jsonl").exists() else []
    skipped = json.loads((folder / "summary.json").read_text()).get("skipped", []) if (folder / "summary.json").exists() else []
    return rows, scores, skipped


def run_probe(
    inputs: list[str],
    out: str | Path,
    config: str | Path | None = None,
    merge: list[str | Path] | None = None,
    cv: int | None = None,
    min_train: int = 5,
    min_test: int = 3,
    baseline: str | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
    batch_size: int = 32,
    console=None,
    progress: bool = True,
) -> dict[str, Any]:
    """Probe every encoder on every supported task; write the outputs; return the summary."""
    from clinlm.probe.embed import embed_paths, load_probe_encoder
    from clinlm.probe.report import summarise, write_outputs

    out = Path(out)
    folders = [p for p in inputs if is_records_folder(p)]
    encoders = [p for p in inputs if not is_records_folder(p)]
    if encoders and not folders:
        raise ValueError(f"no ingest folder (with {RECORDS_FILE}) among {inputs}: give the records to probe on")
    if folders and not encoders:
        raise ValueError(f"no encoder among {inputs}: give an encoder folder, a transformers audio folder or builtin:random")
    if not encoders and not merge:
        raise ValueError("nothing to probe: give encoders and ingest folders, or --merge earlier probe runs")
    if len(set(encoders)) != len(encoders):
        raise ValueError(f"an encoder is named twice: {encoders}")

    rows: list[dict] = []
    scores: list[dict] = []
    skipped: list[dict] = []
    left_out: dict[str, Any] = {}
    for folder in merge or []:
        r, s, k = read_run(folder)
        rows, scores, skipped = rows + r, scores + s, skipped + k
    clash = sorted({r["encoder"] for r in rows} & set(encoders))
    if clash:
        raise ValueError(f"encoder {clash[0]} is both in a merged run and on the command line")

    if encoders:
        records, left_out = probe_records(folders, seed)
        if not records:
            raise ValueError(f"no heart, lung or cough records with audio on disk in {folders}")
        tasks = probe_tasks(records)
        split_of = {r.patient_id: r.split for r in records}
        fit_paths = sorted({r.media[0] for r in records if r.split == "train"}) or sorted({r.media[0] for r in records})
        align_cfg = _align_config(config)
        paths = [r.media[0] for r in records]
        for name in encoders:
            enc = load_probe_encoder(name, align_cfg, fit_paths, cache_dir=out / "feature_cache")
            vectors, rejects = embed_paths(enc, paths, batch_size=batch_size, progress=progress, desc=f"embed {name}")
            if rejects:
                left_out.setdefault("unreadable audio", {})[name] = rejects[:20]
            emb = {r.record_id: vectors[i] for i, r in enumerate(records)}
            for task in tasks:
                res = evaluate_task(task, emb, split_of, cv=cv, min_train=min_train, min_test=min_test, seed=seed)
                if task.left_out:
                    left_out.setdefault("units", {})[task.name] = task.left_out
                if res["status"] != "ok":
                    skipped.append({"encoder": name, "task": task.name, "reason": res["reason"]})
                    continue
                ci = auroc_ci(res["labels"], res["scores"], res["patients"], seed=seed, n_boot=n_boot)
                rows.append({"encoder": name, "task": task.name, "auroc": _r(ci.value), "ci_low": _r(ci.low),
                             "ci_high": _r(ci.high), "n_train": res["n_train"], "n_test": res["n_test"]})
                scores += [{"encoder": name, "task": task.name, "unit": u, "patient": p, "label": bool(y), "score": s}
                           for u, p, y, s in zip(res["units"], res["patients"], res["labels"], res["scores"])]
            if console is not None:
                mine = [r for r in rows if r["encoder"] == name]
                mean = np.mean([r["auroc"] for r in mine]) if mine else math.nan
                console.print(f"[bold]{name}[/]: {len(mine)} tasks, mean AUROC {mean:.3f}")

    summary = summarise(rows, scores, skipped, baseline=baseline, seed=seed, n_boot=n_boot)
    summary.update({"inputs": [str(p) for p in inputs], "merged": [str(p) for p in merge or []],
                    "protocol": f"{cv}-fold patient-grouped CV" if cv else "records' split column (train+val fit, test scored)",
                    "left_out": left_out})
    write_outputs(out, rows, scores, summary)
    return summary


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)
