"""ECGBench's four tasks from an ECG Record: labels -> answers -> instruction rows, signal or image.

`ecg_labels(record)` turns a Record into {finding: yes/no/unknown} over `bench.ecg_facts`'s
vocabulary (the rules below); each task is a function `labels -> list[answer]`; `ecg_rows` makes
the rows, asking the same questions about the signal (`<ecg>`, "ecgs": the WFDB record) or a
picture of it (`<image>`, "images"). Rows per record (kept small, the quickstart trains on a CPU):

- ecg_closed (abnormality detection, closed questions): every diagnostic class and rhythm the labels
  decide, present or absent (ECGBench asks each label of an ECG; the rows are short, and the same
  ECG asked about five rhythms is what teaches a small LM to read both the question and the
  signal), one statement labelled present and one absent, and one finding the labels leave
  unknown ("cannot be determined");
- ecg_report: one English report written from the labelled statements only;
- ecg_mcq: one four-option question (rhythm, else diagnostic class, else a finding): the right
  option and three the labels say are absent (never an unknown one, which might be true);
- ecg_conversation: the rhythm, then two closed follow-ups about other findings, in one dialogue.

Label rules (clinical honesty: unknown stays unknown):
- superclasses (PTB-XL NORM/MI/STTC/CD/HYP): yes/no when the record has any superclass, unknown
  when it has none (PTB-XL rows without a diagnostic statement, other datasets);
- rhythm: the record's rhythm names one of sr/af/afl/stach/sbrad -> that one yes, the others no
  (one rhythm per ECG); another named rhythm (sinus arrhythmia, paced, ...) -> all five no;
  PhysioNet 2017 "other" -> af and sr no, the rest unknown; CPSC 2021 "persistent/paroxysmal af"
  -> af yes, "non af" -> af no, the rest unknown; "noisy" or no rhythm -> unknown;
- statements (pvc, lbbb, rbbb, ste, std): yes/no only where the code system annotates them for
  every ECG (`COMPLETE`): all five for PTB-XL's SCP statements, pvc/lbbb/rbbb for PhysioNet
  2021's scored SNOMED codes; unknown elsewhere;
- whatever a record's statements name is yes (so a report never contradicts its own statements).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from clinlm.bench import ecg_templates as T
from clinlm.bench.ecg_facts import (
    ECG_FINDINGS,
    LETTERS,
    RHYTHM_KEYS,
    SUPERCLASS_KEYS,
    findings_in,
    group_of,
    in_group,
)
from clinlm.bench.tasks import row_rng

Answer = dict[str, Any]
COMPLETE = {"scp": set(in_group("statement")), "snomed": {"pvc", "lbbb", "rbbb"}}
AF_PRESENT = {"persistent af", "paroxysmal af"}
MEDIA_KEYS = {"signal": "ecgs", "image": "images"}


def ecg_labels(record) -> dict[str, Any]:
    """{"record_id", "patient_id", "dataset", "split", "findings": {F: L}, "other_statements": [...]}."""
    f = {k: "unknown" for k in ECG_FINDINGS}
    if record.superclasses:
        for sc, key in SUPERCLASS_KEYS.items():
            f[key] = "yes" if sc in record.superclasses else "no"
    rhythm = (record.rhythm or "").strip().lower()
    rhythms = in_group("rhythm")
    if rhythm in RHYTHM_KEYS:
        f.update({k: "yes" if k == RHYTHM_KEYS[rhythm] else "no" for k in rhythms})
    elif rhythm in AF_PRESENT:
        f["af"] = "yes"
    elif rhythm == "non af":
        f["af"] = "no"
    elif rhythm == "other":
        f.update(af="no", sr="no")
    elif rhythm and rhythm != "noisy":
        f.update({k: "no" for k in rhythms})
    for key in COMPLETE.get(record.code_system or "", ()):
        f[key] = "no"
    other = []
    for statement in record.statements:
        named = findings_in(statement)
        for key in named:
            f[key] = "yes"
        if not named:
            other.append(statement)
    return {"record_id": record.record_id, "patient_id": record.patient_id, "dataset": record.dataset,
            "split": record.split, "findings": f, "other_statements": other}


def _keys(f: dict[str, str], label: str, group: str | None = None) -> list[str]:
    return [k for k, v in f.items() if v == label and (group is None or ECG_FINDINGS[k][0] == group)]


# ----------------------------------------------------------------------------------- answers

def closed(lab: dict[str, Any], rng: random.Random) -> list[Answer]:
    """Every diagnostic class and rhythm the labels decide (atrial fibrillation first), one statement
    labelled present and one absent, and one finding the labels leave unknown."""
    f = lab["findings"]
    chosen = (["af"] if f["af"] != "unknown" else []) + [k for k in f if f[k] != "unknown" and k != "af" and group_of(k) != "statement"]
    for label in ("yes", "no"):
        pool = _keys(f, label, "statement")
        if pool:
            chosen.append(rng.choice(pool))
    unknown = _keys(f, "unknown")
    if unknown:
        chosen.append(rng.choice(unknown))
    return [{"finding": k, "label": f[k], "findings": dict(f)} for k in chosen]


def report(lab: dict[str, Any], rng: random.Random) -> list[Answer]:
    return [{"findings": dict(lab["findings"]), "other_statements": list(lab["other_statements"])}]


def mcq(lab: dict[str, Any], rng: random.Random) -> list[Answer]:
    f = lab["findings"]
    for question, group in (("rhythm", "rhythm"), ("class", "class"), ("finding", "statement")):
        right, wrong = _keys(f, "yes", group), _keys(f, "no", group)
        if right and len(wrong) >= 3:
            answer = rng.choice(right)
            options = [answer, *rng.sample(wrong, 3)]
            rng.shuffle(options)
            return [{"question": question, "options": options, "correct": LETTERS[options.index(answer)],
                     "finding": answer, "findings": dict(f)}]
    return []


def conversation(lab: dict[str, Any], rng: random.Random) -> list[Answer]:
    f = lab["findings"]
    known = [k for k in f if f[k] != "unknown" and ECG_FINDINGS[k][0] != "rhythm"]
    if len(known) < 2:
        return []
    present = [k for k in known if f[k] == "yes"]
    first = rng.choice(present) if present else rng.choice(known)
    second = rng.choice([k for k in known if k != first])
    turns = [{"kind": "rhythm"}] + [{"kind": "closed", "finding": k, "label": f[k]} for k in (first, second)]
    return [{"findings": dict(f), "turns": turns}]


ECG_TASK_FUNCS = {"ecg_closed": closed, "ecg_report": report, "ecg_mcq": mcq, "ecg_conversation": conversation}


# ----------------------------------------------------------------------------------- rows

def _messages(task: str, answer: Answer, media: str, rng: random.Random, response_rng: random.Random) -> list[dict[str, str]]:
    if task == "ecg_conversation":
        msgs = []
        for i, turn in enumerate(answer["turns"]):
            q = T.turn_question(turn, rng, first=i == 0)
            msgs += [{"role": "user", "content": T.frame(rng, media, q) if i == 0 else q},
                     {"role": "assistant", "content": T.turn_response(turn, answer["findings"], response_rng)}]
        return msgs
    question = {"ecg_closed": T.closed_question, "ecg_report": T.report_question, "ecg_mcq": T.mcq_question}[task](answer, rng)
    if task == "ecg_closed":
        response = T.closed_response(answer["finding"], answer["label"], response_rng)
    elif task == "ecg_report":
        response = T.report_response(answer, response_rng)
    else:
        response = T.mcq_response(answer, response_rng)
    return [{"role": "user", "content": T.frame(rng, media, question)}, {"role": "assistant", "content": response}]


def _source_id(record_id: str) -> str:
    """"ptbxl/00001@photo" (a render-ecg image of ptbxl/00001) -> "ptbxl/00001"."""
    return record_id.split("@")[0]


def make_ecg_row(task: str, answer: Answer, lab: dict[str, Any], media: str, path: str, seed: int, index: int = 0) -> dict[str, Any]:
    """One instruction row; `media` "signal" (path: the WFDB record) or "image" (path: the picture)."""
    rid = lab["record_id"]
    # Phrasing seeded by the source ECG: its signal row and the rows of its pictures read alike.
    rng = row_rng(seed, _source_id(rid), task, index)
    msgs = _messages(task, answer, media, rng, row_rng(seed, _source_id(rid), task, index, "response"))
    return {"messages": msgs, MEDIA_KEYS[media]: [path], "task": task, "record_ids": [rid], "patient_id": lab["patient_id"],
            "dataset": lab["dataset"], "split": lab["split"], "media": media, "answer": answer}


IMAGE_FORMATS = {"png", "jpeg", "jpg", "bmp", "gif", "tiff", "webp"}


def media_path(record, media: str, image_dir: Path | None) -> str:
    """The file a row about `record` points at: its WFDB record (signal), its picture, or a clean
    printout drawn now into `image_dir/<dataset>/<name>.png` (+ .json settings) for a signal record
    asked about as an image (drawn once: an existing printout is reused). ValueError/OSError on failure."""
    import json

    is_image = (record.media_format or "").lower() in IMAGE_FORMATS
    if media == "signal":
        if is_image:
            raise ValueError("an ECG picture has no signal: build image rows (--media image) from it")
        return record.media[0]
    if is_image:
        return record.media[0]
    from clinlm.signals.ecg import load_ecg
    from clinlm.signals.ecg_image import image_seed, render_record_image

    name = record.record_id.split("/", 1)[-1]
    target = Path(image_dir) / record.dataset / name
    done = target.with_suffix(".png")
    if done.exists() and target.with_suffix(".json").exists():
        return str(done.resolve())
    x, fs, leads = load_ecg(record, duration_s=10.0)
    path, settings = render_record_image(x, fs, leads, target, 100, "paper", "none", image_seed(0, record.record_id))
    settings.update(source_record_id=record.record_id, source_media=list(record.media))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(settings, indent=1))
    tmp.replace(path.with_suffix(".json"))
    return str(path.resolve())


def knows_anything(lab: dict[str, Any]) -> bool:
    return any(v != "unknown" for v in lab["findings"].values())


def ecg_rows(lab: dict[str, Any], tasks: tuple[str, ...], seed: int, media: str, path: str) -> list[tuple[int, dict[str, Any]]]:
    """All rows of one ECG for the requested tasks, as (index, row); same answers for either medium."""
    allowed = tasks if knows_anything(lab) else tuple(t for t in tasks if t in ("ecg_closed", "ecg_report"))
    rows = []
    for task in allowed:
        if task not in ECG_TASK_FUNCS:
            continue
        # Answers (which findings are asked) depend on the record, not the medium: a signal row and
        # its image row ask the same question.
        for i, answer in enumerate(ECG_TASK_FUNCS[task](lab, row_rng(seed, lab["record_id"].split("@")[0], task, "choose"))):
            rows.append((i, make_ecg_row(task, answer, lab, media, path, seed, i)))
    return rows
