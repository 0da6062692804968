"""`clinlm reports`: every record's metadata and labels -> one short clinical report (AcuLa's text side).

    clinlm reports rec/heart rec/lung --out reports/
    clinlm reports rec/heart --out reports/ --llm-url http://127.0.0.1:8080/v1 --llm-model qwen2.5-7b-instruct

A report is written from the same label dict the bench uses (`bench.labels.record_labels` ->
`bench.tasks.reporting` answer) plus demographics (age or age group, sex, pregnancy), the device
and the auscultation site, so it states exactly what the labels support:

- a finding the dataset labels is stated present or absent; one whose label is unknown is said to
  be undeterminable ("cannot be determined from the available information"); one the modality or
  dataset does not annotate is not mentioned at all (no "no crackles" on a heart recording);
- murmur descriptors (grade, timing, shape, pitch, quality) only where the murmur is heard and
  only the known ones; sites and diagnoses only from the labels.

Every templated report is checked with `bench.facts.check_consistency(text, answer, "reporting")`
(a failure is a bug and raises). With `--llm-url` (any OpenAI-compatible chat endpoint, bearer
token from `CLINLM_LLM_API_KEY`, cached in `out/.llm_cache.jsonl` by `bench.paraphrase.Paraphraser`)
the endpoint rewrites each templated report as a coherent paragraph; the rewrite replaces the
template only when the same check finds no contradiction and it states no number the template
does not (ages, rates, grades); otherwise the template stays and the rejection is counted.

Output (atomic): `out/reports.jsonl`, one object a line
`{"record_id", "patient_id", "dataset", "modality", "split", "text", "source": "template" | "llm"}`,
and `out/summary.json` (counts per source and modality, endpoint statistics).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from clinlm.bench.facts import check_consistency
from clinlm.bench.labels import record_labels
from clinlm.bench.tasks import ADVENTITIOUS, reporting
from clinlm.bench.templates import PLAIN, article, cap, dx_name, join, murmur_description, site_phrase
from clinlm.records import Record, atomic_write_text, iter_records

REPORTS_FILE = "reports.jsonl"
SUMMARY_FILE = "summary.json"
AUDIO_MODALITIES = ("heart", "lung", "cough")
UNKNOWN = "cannot be determined from the available information"
KIND = {"heart": "Heart sound recording", "lung": "Lung sound recording", "cough": "Cough recording"}

LLM_SYSTEM = (
    "You write short clinical auscultation reports. Rewrite the draft report below as one coherent paragraph "
    "of two to five sentences, in the style of a clinician's note. Keep every fact exactly as given: findings "
    "present or absent, murmur grade, timing, shape, pitch and quality, sites, counts, heart rate, age, sex, "
    "device and diagnoses. Add no finding, site, number or diagnosis. Where the draft says something cannot be "
    "determined, say that it cannot be determined from the available information. Reply with the report only."
)


def report_answer(record: Record) -> dict[str, Any] | None:
    """The facts a report may state: the bench's reporting answer plus the murmur's audible sites."""
    lab = record_labels(record)
    answers = reporting(lab)
    if not answers:
        return None
    answer = answers[0]
    if lab.get("murmur") == "yes" and lab.get("murmur_sites"):
        answer["sites"] = list(lab["murmur_sites"])
    if lab.get("n_cycles"):
        answer["n_cycles"] = lab["n_cycles"]
        answer["events"] = lab.get("events", [])
    return answer


def _patient(record: Record) -> str:
    """"Patient: 57 years old, female, pregnant." from the demographics that are known ('' if none)."""
    bits = []
    if record.age_years is not None:
        age = float(record.age_years)
        bits.append(f"{age:g} years old" if age >= 2 else f"{round(age * 12)} months old")
    elif record.age_group:
        bits.append(str(record.age_group).lower())
    if record.sex in ("female", "male"):
        bits.append(record.sex)
    if record.metadata.get("pregnant") is True:
        bits.append("pregnant")
    return f"Patient: {', '.join(bits)}." if bits else ""


def _device(record: Record) -> str:
    name = record.metadata.get("device_name") or record.device
    return f" with {article(name)} {name}" if name else ""


def _heart(answer: dict[str, Any]) -> list[str]:
    out = []
    hr = answer.get("heart_rate_bpm")
    if isinstance(hr, int):
        out.append(f"Heart rate about {hr} bpm.")
    m = answer.get("murmur")
    if m == "yes":
        descs = [(ph, answer[ph]) for ph in ("systolic", "diastolic") if answer.get(ph)]
        for ph, d in descs:
            desc = murmur_description(ph, d, None)  # (its rng is unused: one wording)
            out.append(f"{cap(article(desc))} {desc}{',' if ', ' in desc else ''} is heard.")
        if not descs:
            out.append("A murmur is heard; its phase in the cardiac cycle is not labelled.")
        ma = answer.get("most_audible")
        if ma not in (None, "unknown"):
            out.append(f"It is loudest at {site_phrase(ma)}.")
        others = [s for s in answer.get("sites", []) if s != ma]
        if others:
            out.append(f"It is also audible at {join([site_phrase(s) for s in others])}.")
    elif m == "no":
        out.append("No murmur is heard.")
    else:
        out.append(f"Whether a murmur is present {UNKNOWN}.")
    return out


def _lung(answer: dict[str, Any]) -> list[str]:
    out = []
    n_cycles = answer.get("n_cycles")
    if n_cycles:
        out.append(f"{n_cycles} respiratory cycles are annotated.")
    events = answer.get("events", [])
    for t in ADVENTITIOUS:
        label = answer.get(t)
        name = PLAIN[t]
        be = "is" if t == "stridor" else "are"
        if label == "yes":
            cycles = len({(e["start_s"], e["end_s"]) for e in events if e["type"] == t})
            # "in 2 cycles", never "2 of 4": the fact parser reads "N of 4" as a murmur grade
            where = f" in {cycles} cycle{'s' if cycles > 1 else ''}" if n_cycles and 0 < cycles <= n_cycles else ""
            out.append(f"{cap(name)} {be} heard{where}.")
        elif label == "no":
            out.append(f"No {name} {be} heard.")
        elif label == "unknown":
            out.append(f"Whether there {be} {name} {UNKNOWN}.")
    return out


def _cough(record: Record, answer: dict[str, Any]) -> list[str]:
    c = answer.get("covid", "unknown")
    out = [{"yes": "The participant is labelled COVID-19 positive.",
            "no": "The participant is labelled COVID-19 negative.",
            "unknown": f"The COVID-19 status {UNKNOWN}."}[c]]
    if record.cough_status and c != "unknown" and record.cough_status.lower() not in ("healthy", "covid-19", "positive", "negative"):
        out.append(f"Reported status: {record.cough_status.lower()}.")
    if answer.get("wheeze") in ("yes", "no"):
        out.append("Wheezing is reported." if answer["wheeze"] == "yes" else "No wheezing is reported.")
    return out


def template_report(record: Record, answer: dict[str, Any]) -> str:
    """One deterministic report for a record (the answer from `report_answer`)."""
    site = answer.get("site")
    where = f" from {site_phrase(site)}" if site not in (None, "unknown") else ""
    parts = [f"{KIND[record.modality]}{where}{_device(record)}.", _patient(record)]
    if record.modality == "heart":
        parts += _heart(answer)
    elif record.modality == "lung":
        parts += _lung(answer)
    else:
        parts += _cough(record, answer)
    if answer.get("diagnosis"):
        parts.append(f"Diagnosis (label): {join([dx_name(d) for d in answer['diagnosis']])}.")
    if answer.get("abnormal") in ("yes", "no"):
        parts.append(f"The recording is labelled {'abnormal' if answer['abnormal'] == 'yes' else 'normal'}.")
    return " ".join(p for p in parts if p)


_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def _numbers(text: str) -> set[float]:
    return {float(n) for n in _NUMBER_RE.findall(text)}


def llm_problems(text: str, template: str, answer: dict[str, Any]) -> list[str]:
    """Why an endpoint's report cannot replace the template ([] = it can)."""
    problems = check_consistency(text, answer, "reporting")
    extra = _numbers(text) - _numbers(template) - {19.0}  # "COVID-19"
    if extra:
        problems.append(f"states numbers the labels do not give: {sorted(extra)}")
    return problems


def _source_records(inputs: Iterable[str | Path]) -> Iterable[Record]:
    seen: set[str] = set()
    for folder in inputs:
        for record in iter_records(Path(folder)):
            if record.modality not in AUDIO_MODALITIES:
                continue
            if record.record_id in seen:
                raise ValueError(f"record {record.record_id} appears twice in {list(map(str, inputs))}: pass each ingest folder once")
            seen.add(record.record_id)
            yield record


def build_reports(
    inputs: list[str | Path],
    out: str | Path,
    llm_url: str | None = None,
    llm_model: str | None = None,
    console=None,
) -> dict[str, Any]:
    """Write out/reports.jsonl and out/summary.json; returns the summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = Path(out)
    if llm_url and not llm_model:
        raise ValueError("--llm-url needs --llm-model (the model name the endpoint serves)")
    paraphraser = None
    if llm_url:
        from clinlm.bench.paraphrase import Paraphraser

        paraphraser = Paraphraser(llm_url, llm_model, out / ".llm_cache.jsonl")
    lines: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    rejected: list[dict[str, Any]] = []
    skipped = 0
    records = list(_source_records(inputs))
    try:
        with Progress(TextColumn("reports"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, disable=console is None, transient=True) as bar:
            task = bar.add_task("reports", total=len(records))
            for record in records:
                bar.advance(task)
                answer = report_answer(record)
                if answer is None:
                    skipped += 1
                    continue
                text = template_report(record, answer)
                problems = check_consistency(text, answer, "reporting")
                if problems:  # the templates are written to pass; a failure is a bug, not data
                    raise AssertionError(f"templated report of {record.record_id} contradicts its labels: {problems}: {text}")
                source = "template"
                if paraphraser is not None:
                    messages = [{"role": "system", "content": LLM_SYSTEM},
                                {"role": "user", "content": f"Facts (ground truth): {json.dumps(answer, sort_keys=True)}\nDraft report: {text}"}]
                    reply = paraphraser.complete(messages)
                    if reply:
                        why = llm_problems(reply, text, answer)
                        if why:
                            rejected.append({"record_id": record.record_id, "text": reply, "problems": why})
                        else:
                            text, source = reply, "llm"
                counts.setdefault(record.modality, {}).setdefault(source, 0)
                counts[record.modality][source] += 1
                lines.append(json.dumps({
                    "record_id": record.record_id, "patient_id": record.patient_id, "dataset": record.dataset,
                    "modality": record.modality, "split": record.split, "text": text, "source": source,
                }, ensure_ascii=False))
    finally:
        if paraphraser is not None:
            paraphraser.close()
    if not lines:
        raise ValueError(f"no heart, lung or cough records in {', '.join(map(str, inputs))}: nothing to write reports for")
    atomic_write_text("\n".join(lines) + "\n", out / REPORTS_FILE)
    summary = {
        "inputs": [str(p) for p in inputs],
        "reports": len(lines),
        "by_modality_and_source": counts,
        "skipped_no_report_for_modality": skipped,
        "llm": None if paraphraser is None else {**paraphraser.stats(), "rejected": len(rejected), "rejected_examples": rejected[:5]},
    }
    atomic_write_text(json.dumps(summary, indent=1) + "\n", out / SUMMARY_FILE)
    return summary


def read_reports(path: str | Path) -> dict[str, str]:
    """record_id -> report text from a `clinlm reports` folder (or its reports.jsonl)."""
    path = Path(path)
    file = path / REPORTS_FILE if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"no {REPORTS_FILE} in {path}: run `clinlm reports <record folders> --out {path}` first")
    out = {}
    for i, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                out[row["record_id"]] = row["text"]
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{file}:{i}: not a report row ({exc})") from exc
    return out
