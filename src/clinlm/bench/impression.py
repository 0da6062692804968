"""Findings -> impression instruction rows (the Radiology-Llama2 task) from report records.

    clinlm bench build rec/iu --task impression --out bench/iu

One row per report, in the same convention as the audio bench, with no media:

    {"messages": [{"role": "user", "content": "Summarise the findings into an impression.\\n\\nFINDINGS: ..."},
                  {"role": "assistant", "content": "<the report's impression, verbatim>"}],
     "audios": [], "task": "impression", "record_ids": ["openi/1"], "patient_id": "openi/1",
     "dataset": "openi", "split": "train", "answer": {"impression": "..."}}

The instruction is drawn (seeded) from `PHRASINGS`, one of which is the bare "FINDINGS: ..." so
that a user who pastes findings with no question gets an impression too.

Retrieval-augmented prompts (`retrieval_k`, default 3): after the findings, the user turn lists the
impressions of the k training reports with the most similar findings (`clinlm.bench.retrieval`):

    FINDINGS: ...

    IMPRESSIONS OF SIMILAR REPORTS:
    - No acute cardiopulmonary abnormality.
    - ...

so the model learns when to copy one of them and when to write from the findings. The index is
fitted on the training split only and written beside the rows (`impression_index.json`, copied
into the checkpoint by `clinlm train` for `clinlm ask`). A training row never retrieves from its
own split unit (itself, its patient, its near-duplicate findings): that is exactly what a val or
test row can see, since split units never straddle splits. `retrieval_k=0` gives bare prompts.

Splits are decided here, not taken from the ingest split, because two things must hold together:
all reports of one patient share a split (IU/OpenI has no patient ids, so there it is one study per
"patient": a split by study), and reports with near-duplicate findings share a split (templated
normal reports would otherwise put test findings, nearly verbatim, into training). Reports are
linked by patient and by findings similarity (`clinlm.bench.dedup`), and each connected group goes
whole to one split, filling train/val/test towards 70/10/20 % of rows within each label stratum.
How many duplicates and groups there are is written to `stats.json` and `card.md`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from clinlm.bench.dedup import DEFAULT_THRESHOLD, duplicate_groups, normalise_text
from clinlm.bench.retrieval import INDEX_FILE, ImpressionIndex, file_sha256
from clinlm.records import SPLITS, Record, atomic_write_text, iter_records
from clinlm.splits import DEFAULT_FRACTIONS, main_label

TASK = "impression"
PHRASINGS = (
    "",  # the bare findings: what a radiologist pastes
    "Summarise the findings into an impression.",
    "Summarize these radiology findings as a concise impression.",
    "Write the impression section of this chest X-ray report.",
    "Based on the findings below, what is the impression?",
    "You are a radiologist. Give the impression for these findings.",
)


SIMILAR_HEADER = "IMPRESSIONS OF SIMILAR REPORTS:"
DEFAULT_K = 3


def similar_block(similar: Sequence[str]) -> str:
    """The retrieved impressions as they follow the findings ("" when there are none)."""
    return f"\n\n{SIMILAR_HEADER}\n" + "\n".join(f"- {s.strip()}" for s in similar) if similar else ""


def listed_similar(question: str) -> list[str]:
    """The impressions of similar reports a prompt lists (what `similar_block` wrote), in order."""
    if SIMILAR_HEADER not in question:
        return []
    tail = question.partition(SIMILAR_HEADER)[2]
    return [line[2:].strip() for line in tail.strip().splitlines() if line.startswith("- ") and line[2:].strip()]


def user_prompt(findings: str, phrasing: str = "", similar: Sequence[str] = ()) -> str:
    """The user turn: an optional instruction, "FINDINGS: <text>" (what `clinlm ask` also accepts),
    then the impressions of similar training reports when given."""
    body = f"FINDINGS: {findings}" + similar_block(similar)
    return f"{phrasing}\n\n{body}" if phrasing else body


def add_similar(question: str, index: ImpressionIndex) -> str:
    """A question holding "FINDINGS: ..." with the index's k most similar training impressions added.

    Questions without "FINDINGS:", or that already list similar reports, come back unchanged.
    """
    if SIMILAR_HEADER in question or "FINDINGS:" not in question:
        return question
    findings = question.rpartition("FINDINGS:")[2].strip()
    return question.rstrip() + similar_block([imp for imp, _ in index.query([findings], index.k)[0]])


def augment_question(checkpoint: str | Path, question: str) -> str:
    """`add_similar` with the index saved in a checkpoint folder; unchanged when it has none."""
    path = Path(checkpoint) / INDEX_FILE
    return add_similar(question, _load_index(str(path.resolve()))) if path.exists() else question


@lru_cache(maxsize=4)
def _load_index(path: str) -> ImpressionIndex:
    return ImpressionIndex.load(path)


def impression_row(record: Record, split: str, phrasing: str, similar: Sequence[str] = ()) -> dict:
    return {
        "messages": [
            {"role": "user", "content": user_prompt(record.findings or "", phrasing, similar)},
            {"role": "assistant", "content": record.impression or ""},
        ],
        "audios": [],
        "task": TASK,
        "record_ids": [record.record_id],
        "patient_id": record.patient_id,
        "dataset": record.dataset,
        "split": split,
        "answer": {"impression": record.impression or ""},
    }


def assign_group_splits(
    groups: np.ndarray,
    strata: list[str],
    seed: int = 0,
    fractions: dict[str, float] | None = None,
) -> list[str]:
    """Split per row such that every group is in one split, rows near `fractions` in each stratum.

    A group's stratum is the most common stratum of its rows. Within a stratum, groups are shuffled
    (seeded), then placed largest first, each into the split furthest below its target row count,
    so big groups cannot overshoot a small split at the end.
    """
    fractions = fractions or DEFAULT_FRACTIONS
    names = list(fractions)
    target = np.array([fractions[k] for k in names], dtype=float)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups.tolist()):
        members[g].append(i)
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for g, rows in members.items():
        by_stratum[Counter(strata[i] for i in rows).most_common(1)[0][0]].append(g)
    rng = np.random.default_rng(seed)
    out = [""] * len(groups)
    for stratum in sorted(by_stratum):
        gs = sorted(by_stratum[stratum])
        rng.shuffle(gs)
        gs.sort(key=lambda g: -len(members[g]))  # stable: equal sizes keep the shuffled order
        total = sum(len(members[g]) for g in gs)
        counts = np.zeros(len(names))
        for g in gs:
            k = int(np.argmax(target * total - counts))  # largest deficit; ties -> the first (train)
            counts[k] += len(members[g])
            for i in members[g]:
                out[i] = names[k]
    return out


def _stratum(record: Record) -> str:
    return main_label(record)


def build_impression_bench(
    inputs: Iterable[Path],
    out: Path,
    seed: int = 0,
    console=None,
    split_all: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    retrieval_k: int = DEFAULT_K,
) -> dict:
    """Write out/{train,val,test}.jsonl, impression_index.json, stats.json and card.md; return the stats.

    `inputs` are ingest folders of report records; records of other modalities, or without
    findings/impression, are counted and skipped. `split_all` puts every row into one split
    (e.g. "test" for an out-of-distribution set) and skips the group split; with no training rows
    there is no index, and the rows carry no similar reports (the evaluator adds them from the
    checkpoint's index). `retrieval_k` impressions of similar training reports go into each prompt.
    """
    out = Path(out)
    inputs = [Path(p) for p in inputs]
    records: list[Record] = []
    skipped: Counter = Counter()
    for path in inputs:
        for r in iter_records(path):
            if r.modality != "report":
                skipped[f"modality {r.modality}"] += 1
            elif not r.findings or not r.impression:
                skipped["no findings or impression"] += 1
            else:
                records.append(r)
    if not records:
        raise ValueError(
            f"no report records with findings and impression in {', '.join(map(str, inputs))}: "
            "ingest reports first, e.g. `clinlm ingest openi-csv ../shared/data/iu_xray_openi_reports --out rec/iu`"
        )
    if split_all is not None and split_all not in SPLITS:
        raise ValueError(f"--split-all must be one of {', '.join(SPLITS)}, got {split_all!r}")

    # Rows of one patient are linked to that patient's first row, so they share a group.
    first_of: dict[str, int] = {}
    links: list[tuple[int, int]] = []
    for i, r in enumerate(records):
        j = first_of.setdefault(r.patient_id, i)
        if j != i:
            links.append((i, j))
    groups, dup = duplicate_groups([r.findings for r in records], threshold=threshold, links=links)
    splits = [split_all] * len(records) if split_all else assign_group_splits(groups, [_stratum(r) for r in records], seed)

    rng = np.random.default_rng(seed)
    phrasing_idx = rng.integers(len(PHRASINGS), size=len(records))
    train = [i for i, s in enumerate(splits) if s == "train"]
    index, similar = None, [[] for _ in records]
    if retrieval_k > 0 and train:
        index = ImpressionIndex.fit([records[i].findings for i in train], [records[i].impression for i in train],
                                    [int(groups[i]) for i in train], k=retrieval_k)
        # Excluding each row's own group only changes training rows: other groups have no training reports.
        similar = [[imp for imp, _ in c] for c in index.query([r.findings for r in records], retrieval_k, exclude=groups.tolist())]
    rows_by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r, s, k, sim in zip(records, splits, phrasing_idx, similar):
        rows_by_split[s].append(impression_row(r, s, PHRASINGS[k], sim))
    for s, rows in rows_by_split.items():
        atomic_write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), out / f"{s}.jsonl")
    if index is not None:
        index.train_sha256 = file_sha256(out / "train.jsonl")
        index.save(out / INDEX_FILE)
    elif (out / INDEX_FILE).exists():
        (out / INDEX_FILE).unlink()  # a stale index from an earlier build of this folder

    group_splits: dict[int, set] = defaultdict(set)
    for g, s in zip(groups.tolist(), splits):
        group_splits[g].add(s)
    impressions = Counter(normalise_text(r.impression) for r in records)
    stats = {
        "task": TASK,
        "inputs": [str(p) for p in inputs],
        "seed": seed,
        "rows": len(records),
        "rows_per_split": {s: len(v) for s, v in rows_by_split.items()},
        "patients_per_split": {s: len({row["patient_id"] for row in v}) for s, v in rows_by_split.items()},
        "datasets": dict(Counter(r.dataset for r in records)),
        "split_unit": "patient + near-duplicate findings group" if not split_all else f"all rows in {split_all}",
        "patients_equal_studies": all(r.patient_id == r.record_id for r in records),
        "skipped_records": dict(skipped),
        "duplicates": dup,
        "groups_in_several_splits": sum(1 for v in group_splits.values() if len(v) > 1),  # 0 unless --split-all
        "phrasings": {p or "(bare findings)": int(c) for p, c in zip(PHRASINGS, np.bincount(phrasing_idx, minlength=len(PHRASINGS)))},
        "retrieval": _retrieval_stats(records, splits, similar, retrieval_k if index is not None else 0),
        "distinct_impressions_normalised": len(impressions),
        "most_common_impressions": [{"impression": t, "count": c} for t, c in impressions.most_common(5)],
    }
    atomic_write_text(json.dumps(stats, indent=2), out / "stats.json")
    atomic_write_text(_card(stats), out / "card.md")
    if console is not None:
        console.print(
            f"[green]impression bench[/]: {stats['rows']} rows "
            + ", ".join(f"{s} {n}" for s, n in stats["rows_per_split"].items())
            + f"; {dup['exact_duplicate_rows']} rows with an exact-duplicate findings text, "
            f"{dup['near_duplicate_groups']} duplicate groups ({dup['near_duplicate_rows']} rows) kept within one split -> {out}"
        )
    return stats


def _retrieval_stats(records: list[Record], splits: list[str], similar: list[list[str]], k: int) -> dict:
    """How often the reference impression is the first / any retrieved impression, per split."""
    out: dict = {"k": k, "index": INDEX_FILE if k else None}
    if k:
        for s in SPLITS:
            pairs = [(normalise_text(r.impression), [normalise_text(c) for c in sim]) for r, sp, sim in zip(records, splits, similar) if sp == s]
            if pairs:
                out[s] = {"reference_is_first": round(sum(ref == c[0] for ref, c in pairs if c) / len(pairs), 4),
                          "reference_retrieved": round(sum(ref in c for ref, c in pairs) / len(pairs), 4)}
    return out


def _card(stats: dict) -> str:
    d = stats["duplicates"]
    split_rows = "\n".join(f"| {s} | {n} | {stats['patients_per_split'][s]} |" for s, n in stats["rows_per_split"].items())
    common = "\n".join(f"| {c['count']} | {c['impression']} |" for c in stats["most_common_impressions"])
    by_study = (
        "\nThese reports carry no patient ids (IU/OpenI), so each study is its own \"patient\": the split is by study.\n"
        if stats["patients_equal_studies"]
        else ""
    )
    return f"""# Findings -> impression bench

Task `impression`: the user turn gives a report's FINDINGS (with one of {len(stats['phrasings'])} instruction phrasings, one of
them none), the assistant answers with the report's IMPRESSION verbatim. Inputs: {', '.join(stats['inputs'])}; seed {stats['seed']}.

| split | rows | patients |
|---|---|---|
{split_rows}

Split unit: {stats['split_unit']}.{by_study}

## Duplicates

Findings texts are compared after lower-casing and removing punctuation and de-identification marks
(`XXXX`, `___`).

- {d['exact_duplicate_rows']} of {d['texts']} rows have a findings text that occurs more than once
  ({d['exact_duplicate_groups']} distinct repeated texts; {d['unique_normalised_texts']} distinct texts in all).
- {d['near_duplicate_groups']} groups of exact or near-duplicate findings (TF-IDF cosine >= {d['near_duplicate_threshold']}),
  {d['near_duplicate_rows']} rows, the largest {d['largest_text_group']} rows.
- Every group (joined with all reports of the same patient) is kept in one split: {d['split_groups']} split units,
  the largest {d['largest_split_group']} rows; groups found in several splits: {stats['groups_in_several_splits']}.

## Similar reports in the prompt

{_retrieval_card(stats["retrieval"])}

## Most common impressions (normalised)

{stats['distinct_impressions_normalised']} distinct impressions. Templated normal impressions dominate, which is why
`clinlm eval` reports most-frequent and nearest-neighbour baselines, and an abnormal subset.

| reports | impression |
|---|---|
{common}
"""



def _retrieval_card(r: dict) -> str:
    if not r["k"]:
        return "None: the prompts hold the findings only (no training split to retrieve from, or `retrieval_k=0`)."
    lines = "\n".join(f"| {s} | {v['reference_is_first']:.2f} | {v['reference_retrieved']:.2f} |" for s, v in r.items() if isinstance(v, dict))
    return f"""Each prompt lists, after the findings, the impressions of the {r['k']} training reports with the most
similar findings (TF-IDF cosine; index fitted on the training split, saved as `{r['index']}`). Training
rows never retrieve from their own split unit (patient or near-duplicate group), as val/test rows cannot.
How often the reference impression (normalised) is the first, or any, retrieved impression:

| split | first | any of {r['k']} |
|---|---|---|
{lines}
"""
