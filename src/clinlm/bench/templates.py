"""Phrasings: questions and responses for each task, written only from an `answer` dict.

Every response is rendered from the structured answer alone (`RESPONSES[task](answer, rng)`), so
a rejected response for preference data is the same renderer applied to a perturbed answer, and
`facts.check_consistency` can verify each text against the answer it came from. Many templates
per task, with slots, varied order and wording, on both the question and the response side; the
caller passes a `random.Random` seeded per row, so the output is deterministic for a seed.

Wording rules that keep the text parseable and honest (the fact parser in `facts.py` reads them):
- the word "normal"/"abnormal" appears only for the labelled normal/abnormal verdict;
- an unknown label is said with "cannot be determined from the available information" or a
  close variant, never guessed;
- sites are always named in full ("the mitral area", "the left posterior chest");
- diagnoses appear only in reporting, reasoning and differential responses, from the answer.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from clinlm.bench.facts import SITE_NAMES

Answer = dict[str, Any]

NOUN = {"murmur": "a murmur", "crackle": "crackles", "wheeze": "wheezes", "rhonchi": "rhonchi",
        "stridor": "stridor", "covid": "COVID-19", "systolic murmur": "a systolic murmur",
        "diastolic murmur": "a diastolic murmur"}
PLAIN = {"murmur": "murmur", "crackle": "crackles", "wheeze": "wheezes", "rhonchi": "rhonchi",
         "stridor": "stridor", "covid": "COVID-19", "systolic murmur": "systolic murmur",
         "diastolic murmur": "diastolic murmur"}
DX_NAMES = {"copd": "COPD", "urti": "URTI", "lrti": "LRTI", "covid-19": "COVID-19",
            "healthy": "healthy (no disease)"}
RECORDING = {"heart": ["heart sound recording", "phonocardiogram", "heart recording", "auscultation recording"],
             "lung": ["lung sound recording", "respiratory sound recording", "chest recording", "auscultation recording"],
             "cough": ["cough recording", "cough sound", "recording of a cough"]}
UNKNOWN = [
    "cannot be determined from the available information",
    "cannot be determined from the labels available",
    "cannot be determined from the information available",
    "is not possible to determine from the available information",
]
UNKNOWN_LEAD = [
    "This cannot be determined from the available information",
    "It is not possible to determine this from the available information",
    "The available information does not allow this to be determined",
]


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def join(items: list[str], conj: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conj} {items[-1]}"


def site_phrase(site: str | None) -> str:
    name = SITE_NAMES.get(site or "", "an unspecified site")
    return name if name.startswith(("a ", "an ")) else f"the {name}"


def dx_name(dx: str) -> str:
    return DX_NAMES.get(dx, dx)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def frame(rng: random.Random, modality: str, question: str, n_audio: int = 1, context: str = "") -> str:
    """Put the `<audio>` placeholder(s), an optional context line and the question together."""
    rec = rng.choice(RECORDING.get(modality, ["recording"]))
    q = f"{context} {question}".strip() if context else question
    if n_audio == 2:
        style = rng.randrange(3)
        if style == 0:
            return f"Recording 1: <audio>\nRecording 2: <audio>\n{q}"
        if style == 1:
            return f"First {rec}: <audio>\nSecond {rec}: <audio>\n{q}"
        return f"<audio><audio>\nTwo {rec}s of the same patient (first, then second). {q}"
    style = rng.randrange(4)
    if style == 0:
        return f"<audio>\n{q}"
    if style == 1:
        return f"Here is {article(rec)} {rec}: <audio>\n{q}"
    if style == 2:
        return f"{q}\n<audio>"
    return f"<audio> Listen to this {rec}. {q}"


# ------------------------------------------------------------------------------------- binary

BINARY_Q = {
    "murmur": ["Is there a murmur in this recording?", "Is a heart murmur present?", "Do you hear a murmur?",
               "Does this recording contain a murmur? Answer yes or no.", "Can you hear a murmur in this recording?",
               "Is a murmur audible here?"],
    "crackle": ["Are there crackles in this recording?", "Do you hear crackles?", "Are crackles present?",
                "Does this lung sound contain crackles? Answer yes or no.", "Any crackles?"],
    "wheeze": ["Are there wheezes in this recording?", "Do you hear wheezing?", "Is wheezing present?",
               "Does this lung sound contain wheezes? Answer yes or no.", "Any wheezes?"],
    "rhonchi": ["Are there rhonchi in this recording?", "Do you hear rhonchi?"],
    "stridor": ["Is stridor present in this recording?", "Do you hear stridor?"],
    "abnormal": ["Is this recording normal or abnormal?", "Is this recording abnormal?",
                 "Would you classify this recording as abnormal?", "Normal or abnormal?"],
    "covid": ["Is this cough from a COVID-19 positive person?", "Does this cough belong to someone with COVID-19?",
              "Is this cough labelled COVID-19 positive?"],
}


def binary_question(answer: Answer, rng: random.Random) -> str:
    return rng.choice(BINARY_Q[answer["finding"]])


def binary_response(answer: Answer, rng: random.Random) -> str:
    f, label = answer["finding"], answer["label"]
    if label == "unknown":
        what = {"abnormal": "whether this recording is normal or abnormal",
                "covid": "whether this cough is from a COVID-19 positive person"}.get(
            f, f"whether {NOUN[f]} {'is' if f in ('murmur', 'stridor') else 'are'} present")
        return rng.choice([
            f"{cap(what)} {rng.choice(UNKNOWN)}.",
            f"{rng.choice(UNKNOWN_LEAD)}: the label for {PLAIN[f] if f != 'abnormal' else 'the normal/abnormal verdict'} is unknown.",
            f"I cannot say: {what} {rng.choice(UNKNOWN)}.",
        ])
    if f == "abnormal":
        return rng.choice({
            "yes": ["The recording is labelled abnormal.", "Abnormal.", "This recording is abnormal.",
                    "It is abnormal."],
            "no": ["The recording is labelled normal.", "Normal.", "This recording is normal.",
                   "It is a normal recording."],
        }[label])
    if f == "covid":
        return rng.choice({
            "yes": ["Yes, this cough is labelled COVID-19 positive.", "Yes. The participant is COVID-19 positive.",
                    "COVID-19 positive."],
            "no": ["No, this cough is labelled COVID-19 negative.", "No. The participant is COVID-19 negative.",
                   "COVID-19 negative."],
        }[label])
    noun, plain = NOUN[f], PLAIN[f]
    be = "is" if f in ("murmur", "stridor") else "are"
    if label == "yes":
        return rng.choice([
            f"Yes, {noun} {be} present.", f"Yes. {cap(noun)} {be} audible in this recording.",
            f"Yes, there {be} {noun}.", f"{cap(noun)} {be} present.", f"Yes - {plain} {be} heard.",
        ])
    return rng.choice([
        f"No, there {be} no {plain}.", f"No {plain} {be} heard.", f"No. This recording has no {plain}.",
        f"No, {plain}: absent.", f"No {plain}.",
    ])


# ---------------------------------------------------------------------------------- detection

DETECTION_Q = {
    "heart": ["Is there a murmur, and when in the cardiac cycle does it occur?", "Which murmurs do you hear, and are they systolic or diastolic?",
              "Describe the timing of any murmur in this recording.", "Detect any murmur and give its timing.",
              "What events do you hear in the cardiac cycle?"],
    "lung": ["Which adventitious sounds occur in this recording, and when?", "Detect crackles and wheezes and give their times.",
             "List any adventitious lung sounds with their start and end times.", "When do you hear crackles or wheezes?",
             "What abnormal breath sounds are present, and at what times?"],
    "cough": ["Which adventitious sounds occur in this recording?"],
}

TIMING_WORDS = {
    "systolic": {"early": "early systolic", "mid": "mid-systolic", "late": "late systolic", "holosystolic": "holosystolic"},
    "diastolic": {"early": "early diastolic", "mid": "mid-diastolic", "late": "late diastolic", "holodiastolic": "holodiastolic"},
}


def _times(events: list[dict], rng: random.Random, limit: int = 4) -> str:
    shown = [f"{e['start_s']:.2f}-{e['end_s']:.2f} s" for e in events[:limit]]
    more = len(events) - len(shown)
    text = join(shown)
    return f"{text} and {more} more" if more > 0 else text


def detection_question(answer: Answer, rng: random.Random) -> str:
    return rng.choice(DETECTION_Q[answer.get("modality", "lung")])


def detection_response(answer: Answer, rng: random.Random) -> str:
    present, absent, unknown = answer["present"], answer["absent"], answer["unknown"]
    if not present and not absent:
        return rng.choice([
            f"Which events occur {rng.choice(UNKNOWN)}.",
            f"{rng.choice(UNKNOWN_LEAD)}: nothing in this recording is labelled.",
        ])
    parts: list[str] = []
    murmur_types = [t for t in present if "murmur" in t]
    for t in murmur_types:
        timing = (answer.get("timing") or {}).get(t, "unknown")
        if t == "murmur":
            parts.append(rng.choice([
                "A murmur is present; whether it is systolic or diastolic is not labelled.",
                "A murmur is heard, but its phase in the cardiac cycle cannot be determined from the available information.",
            ]))
            continue
        phase = t.split()[0]
        if timing == "unknown":
            parts.append(rng.choice([f"A {phase} murmur is present (its timing is not labelled).",
                                     f"There is a {phase} murmur; its exact timing is not labelled."]))
        else:
            word = TIMING_WORDS[phase][timing]
            a = article(word)
            parts.append(rng.choice([f"{cap(a)} {word} murmur is present.", f"There is {a} {word} murmur.",
                                     f"I hear {a} {word} murmur."]))
    n_cycles = answer.get("n_cycles")
    for t in [t for t in present if "murmur" not in t]:
        evs = [e for e in answer.get("events", []) if e["type"] == t]
        if evs:
            cycles = f" in {len(evs)} of {n_cycles} annotated cycles" if n_cycles and len(evs) <= n_cycles else ""
            parts.append(rng.choice([
                f"{cap(PLAIN[t])} are heard{cycles}, at {_times(evs, rng)}.",
                f"{cap(PLAIN[t])}{cycles}: {_times(evs, rng)}.",
                f"{cap(PLAIN[t])} occur at {_times(evs, rng)}.",
            ]).replace("Stridor are", "Stridor is").replace("Stridor occur", "Stridor occurs"))
        else:
            parts.append(f"{cap(PLAIN[t])} {'is' if t == 'stridor' else 'are'} present (no times are annotated).")
    shown_absent = list(absent)
    if {"systolic murmur", "diastolic murmur"} <= set(absent):
        shown_absent = [t for t in absent if "murmur" not in t]
        parts.append(rng.choice(["No murmur (systolic or diastolic) is heard.", "No murmur is heard in systole or diastole."]))
    if shown_absent:
        names = [PLAIN[t] for t in shown_absent]
        parts.append(rng.choice([f"No {join(names, 'or')}.", f"No {join(names, 'or')} {'is' if len(names) == 1 and names[0] in ('stridor', 'murmur', 'systolic murmur', 'diastolic murmur') else 'are'} heard."]))
    primary_unknown = [t for t in unknown if t in ("crackle", "wheeze", "murmur")]
    if primary_unknown:
        parts.append(f"Whether there are {join([PLAIN[t] for t in primary_unknown], 'or')} {rng.choice(UNKNOWN)}.")
    if len(parts) > 1 and rng.random() < 0.3:
        parts = parts[::-1] if not murmur_types else parts
    return " ".join(parts)


# ---------------------------------------------------------------------------------- reporting

REPORT_Q = ["Write a short auscultation report for this recording.", "Give a structured auscultation report.",
            "Summarise the findings of this recording as a brief report.", "Write the auscultation findings and an impression.",
            "Report what you hear: site, sounds and impression.", "Provide a concise clinical report of this recording."]


REPORT_Q_COUGH = ["Write a short report for this cough recording.", "Summarise what the labels say about this cough.",
                  "Give a brief structured report for this cough."]


def reporting_question(answer: Answer, rng: random.Random) -> str:
    return rng.choice(REPORT_Q_COUGH if answer.get("modality") == "cough" else REPORT_Q)


def murmur_description(phase: str, desc: dict, rng: random.Random) -> str:
    """E.g. "grade 2/6 holosystolic plateau murmur, high-pitched and blowing" (known fields only)."""
    words = []
    if desc.get("grade") not in (None, "unknown"):
        words.append(f"grade {desc['grade']}/{6 if phase == 'systolic' else 4}")
    timing = desc.get("timing")
    words.append(TIMING_WORDS[phase][timing] if timing not in (None, "unknown") else phase)
    if desc.get("shape") not in (None, "unknown"):
        words.append(desc["shape"])
    tail = []
    if desc.get("pitch") not in (None, "unknown"):
        tail.append(f"{desc['pitch']}-pitched")
    if desc.get("quality") not in (None, "unknown"):
        tail.append(desc["quality"])
    text = " ".join(words) + " murmur"
    return f"{text}, {join(tail)}" if tail else text


def _impression(answer: Answer, rng: random.Random) -> str:
    bits = []
    if answer.get("abnormal") == "yes":
        bits.append(rng.choice(["abnormal recording", "labelled abnormal"]))
    elif answer.get("abnormal") == "no":
        bits.append(rng.choice(["normal recording", "labelled normal"]))
    if answer.get("diagnosis"):
        bits.append(f"labelled diagnosis {join([dx_name(d) for d in answer['diagnosis']])}")
    if answer.get("modality") == "heart" and answer.get("murmur") == "yes":
        bits.append(rng.choice(["murmur present", "a murmur that may warrant echocardiography"]))
    if answer.get("modality") == "lung":
        adv = [PLAIN[t] for t in ("crackle", "wheeze", "rhonchi", "stridor") if answer.get(t) == "yes"]
        if adv:
            bits.append(f"adventitious sounds ({join(adv)})")
    return "; ".join(bits)


def reporting_response(answer: Answer, rng: random.Random) -> str:
    mod = answer["modality"]
    lines: list[tuple[str, str]] = []  # (field, value) for the structured style
    prose: list[str] = []
    site = answer.get("site")
    if site not in (None, "unknown"):
        lines.append(("Site", SITE_NAMES[site]))
        prose.append(rng.choice([f"Recorded at {site_phrase(site)}.", f"Site: {SITE_NAMES[site]}."]))
    if mod == "heart":
        hr = answer.get("heart_rate_bpm")
        if isinstance(hr, int):
            lines.append(("Heart rate", f"about {hr} bpm"))
            prose.append(rng.choice([f"Heart rate about {hr} bpm.", f"The rate is roughly {hr} beats per minute."]))
        m = answer.get("murmur")
        if m == "yes":
            descs = [(ph, answer[ph]) for ph in ("systolic", "diastolic") if answer.get(ph)]
            if descs:
                for ph, d in descs:
                    lines.append((f"{cap(ph)} murmur", murmur_description(ph, d, rng)))
                    desc = murmur_description(ph, d, rng)
                    prose.append(f"{cap(article(desc))} {desc}{',' if ', ' in desc else ''} is heard.")
                for ph in ("systolic", "diastolic"):
                    if not answer.get(ph):
                        lines.append((f"{cap(ph)} murmur", "none"))
            else:
                lines.append(("Murmur", "present"))
                prose.append("A murmur is heard.")
            ma = answer.get("most_audible")
            if ma not in (None, "unknown"):
                lines.append(("Most audible", SITE_NAMES[ma]))
                prose.append(rng.choice([f"It is loudest at {site_phrase(ma)}.", f"The murmur is best heard at {site_phrase(ma)}."]))
        elif m == "no":
            lines.append(("Murmur", "none"))
            prose.append(rng.choice(["No murmur is heard.", "There is no murmur."]))
        else:
            lines.append(("Murmur", "cannot be determined"))
            prose.append(f"Whether a murmur is present {rng.choice(UNKNOWN)}.")
    elif mod == "lung":
        yes = [t for t in ("crackle", "wheeze", "rhonchi", "stridor") if answer.get(t) == "yes"]
        no = [t for t in ("crackle", "wheeze", "rhonchi", "stridor") if answer.get(t) == "no"]
        unk = [t for t in ("crackle", "wheeze") if answer.get(t) == "unknown"]
        for t in ("crackle", "wheeze", "rhonchi", "stridor"):
            if t in answer:
                value = {"yes": "present", "no": "absent", "unknown": "cannot be determined"}[answer[t]]
                lines.append((cap(PLAIN[t]), value))
        if yes:
            prose.append(rng.choice([f"{cap(join([PLAIN[t] for t in yes]))} are heard.", f"Adventitious sounds: {join([PLAIN[t] for t in yes])}."])
                         .replace("Stridor are", "Stridor is"))
        if no:
            prose.append(f"No {join([PLAIN[t] for t in no], 'or')}.")
        if unk:
            prose.append(f"Whether there are {join([PLAIN[t] for t in unk], 'or')} {rng.choice(UNKNOWN)}.")
    elif mod == "cough":
        c = answer.get("covid", "unknown")
        value = {"yes": "positive", "no": "negative", "unknown": "cannot be determined"}[c]
        lines.append(("COVID-19", value))
        prose.append({"yes": "The participant is labelled COVID-19 positive.",
                      "no": "The participant is labelled COVID-19 negative.",
                      "unknown": f"The COVID-19 status {rng.choice(UNKNOWN)}."}[c])
    impression = _impression(answer, rng)
    if answer.get("diagnosis"):
        lines.append(("Diagnosis (label)", join([dx_name(d) for d in answer["diagnosis"]])))
    if impression:
        lines.append(("Impression", impression))
        prose.append(f"Impression: {impression}.")
    if rng.random() < 0.5:
        return "\n".join(f"{k}: {v}" for k, v in lines)
    return " ".join(prose)


# ---------------------------------------------------------------------------------- reasoning

REASONING_Q = {
    "diagnosis": ["The patient's diagnosis is {dx}. How do the sounds in this recording relate to it?",
                  "Explain how the findings in this recording relate to the diagnosis of {dx}.",
                  "Given a diagnosis of {dx}, which findings here are consistent with it, and why?"],
    "abnormal": ["Why is this recording considered {verdict}?", "Explain which findings support calling this recording {verdict}.",
                 "What supports the {verdict} verdict for this recording?"],
    "murmur": ["What do the findings in this recording suggest, and why?", "Reason step by step: what do you hear, and what does it suggest?",
               "Explain what the heard sounds imply clinically."],
    "unknown": ["What do the findings in this recording suggest, and why?", "Reason about what this recording shows."],
}


def reasoning_question(answer: Answer, rng: random.Random) -> str:
    q = answer["question"]
    if q == "diagnosis":
        return rng.choice(REASONING_Q["diagnosis"]).format(dx=dx_name(answer["conclusion"]))
    if q == "abnormal":
        verdict = {"yes": "abnormal", "no": "normal"}.get(answer["conclusion"])
        if verdict:
            return rng.choice(REASONING_Q["abnormal"]).format(verdict=verdict)
        return rng.choice(REASONING_Q["unknown"])
    return rng.choice(REASONING_Q["murmur" if q == "murmur" else "unknown"])


def findings_sentence(findings: dict[str, str], rng: random.Random, site: str | None = None,
                      answer: Answer | None = None) -> str:
    """"Crackles and wheezes are heard; no rhonchi." from {finding: label} (unknowns left out)."""
    yes = [t for t, v in findings.items() if v == "yes" and t != "abnormal"]
    no = [t for t, v in findings.items() if v == "no" and t != "abnormal"]
    where = f" at {site_phrase(site)}" if site not in (None, "unknown") else ""
    out = []
    if yes:
        names = []
        for t in yes:
            if t in ("systolic murmur", "diastolic murmur") and answer and answer.get(t.split()[0]):
                desc = murmur_description(t.split()[0], answer[t.split()[0]], rng)
                names.append(f"{article(desc)} {desc}{',' if ', ' in desc else ''}")
            else:
                names.append(NOUN[t])
        if len(names) == 2 and all("murmur" in t for t in yes):
            # Two described murmurs: one clause each, so every descriptor sits next to its own phase.
            out.append(f"{cap(names[0])} is heard{where}; {names[1]} is also heard")
        else:
            verb = "is" if len(names) == 1 and yes[0] in ("murmur", "stridor", "systolic murmur", "diastolic murmur", "covid") else "are"
            out.append(f"{cap(join(names))} {verb} heard{where}")
    if no:
        be = "is" if no[0] in ("murmur", "stridor", "systolic murmur", "diastolic murmur", "covid") else "are"
        out.append(f"{'t' if out else 'T'}here {be} no {join([PLAIN[t] for t in no], 'or')}")
    return "; ".join(out) + "." if out else ""


def reasoning_response(answer: Answer, rng: random.Random) -> str:
    q, concl = answer["question"], answer["conclusion"]
    facts = findings_sentence(answer.get("findings", {}), rng, answer.get("site"), answer)
    if concl == "unknown":
        return f"{facts + ' ' if facts else ''}{rng.choice(['A conclusion', 'What this means clinically'])} {rng.choice(UNKNOWN)}: the labels do not support one."
    if q == "diagnosis":
        dx = dx_name(concl)
        if answer.get("supported"):
            return rng.choice([
                f"{facts} Such sounds are typical of {dx}, so the recording is consistent with the labelled diagnosis.",
                f"The labelled diagnosis is {dx}. {facts} These findings are commonly found in {dx}, which supports it.",
            ]).strip()
        return rng.choice([
            f"The labelled diagnosis is {dx}. {facts} The sounds alone do not establish {dx}; the diagnosis comes from the clinical label.",
            f"{facts} These sounds are not specific for {dx}: the diagnosis rests on the clinical label, not on this recording.",
        ]).strip()
    if q == "abnormal":
        if concl == "yes":
            if any(v == "yes" for k, v in answer.get("findings", {}).items() if k != "abnormal"):
                return rng.choice([f"{facts} These findings make the recording abnormal.",
                                   f"It is abnormal because of what is heard: {facts[0].lower() + facts[1:]}"]).strip()
            return f"The recording is labelled abnormal, but no specific finding in the labels explains why. {facts}".strip()
        return rng.choice([f"{facts} The recording is labelled normal, which fits these findings.",
                           f"It is normal: {facts[0].lower() + facts[1:] if facts else 'nothing abnormal is labelled.'}"]).strip()
    # murmur question (heart, no verdict or diagnosis labelled)
    if concl == "yes":
        return rng.choice([
            f"{facts} A murmur reflects turbulent blood flow, so a structural cause should be considered and echocardiography may be warranted.",
            f"{facts} This suggests turbulent flow across a valve or defect; further evaluation is reasonable.",
        ]).strip()
    return rng.choice([f"{facts} Without a murmur, there is no sign of turbulent flow in this recording.",
                       f"{facts} The heart sounds give no reason to suspect a valve problem here."]).strip()


# ------------------------------------------------------------------------------- differential

DIFF_Q = ["What is the differential diagnosis for these findings?", "List the most likely diagnoses, most likely first.",
          "Give a ranked differential diagnosis based on this recording.", "Which conditions could explain these sounds? Rank them.",
          "Suggest up to three candidate diagnoses, in order of likelihood."]


def differential_question(answer: Answer, rng: random.Random) -> str:
    return rng.choice(DIFF_Q)


def differential_response(answer: Answer, rng: random.Random) -> str:
    cands, labelled = answer["candidates"], answer.get("labelled", [])
    if not cands:
        return f"A differential diagnosis {rng.choice(UNKNOWN)}: no finding or diagnosis is labelled for this recording."
    names = [dx_name(c) + (" (the labelled diagnosis)" if c in labelled else "") for c in cands]
    basis = findings_sentence(answer.get("findings", {}), rng)
    style = rng.randrange(3)
    if style == 0:
        ranked = "; ".join(f"{i}) {n}" for i, n in enumerate(names, 1))
        body = f"Ranked candidates: {ranked}."
    elif style == 1:
        body = f"Most likely {names[0]}" + (f", then {join(names[1:])}." if len(names) > 1 else ".")
    else:
        body = f"Differential, most likely first: {', '.join(names)}."
    if len(cands) > max(1, len(labelled)):
        body += rng.choice([" These are possibilities consistent with the sounds, not a diagnosis.", ""])
    return f"{basis} {body}".strip() if basis and rng.random() < 0.6 else body


# --------------------------------------------------------------------------------- comparison

COMPARISON_Q = {
    "which": ["Which of the two recordings has {noun}?", "Compare the two recordings: which one contains {noun}?",
              "In which recording do you hear {noun}: the first, the second, both or neither?"],
    "louder": ["In which of the two recordings is the murmur louder?", "Where is the murmur louder: the first or the second recording?"],
}


def comparison_question(answer: Answer, rng: random.Random) -> str:
    return rng.choice(COMPARISON_Q[answer["question"]]).format(noun=NOUN[answer["finding"]])


def _rec(which: str, site: str | None) -> str:
    return f"the {which} recording" + (f" ({SITE_NAMES[site]})" if site not in (None, "unknown") and site != "other" else "")


def comparison_response(answer: Answer, rng: random.Random) -> str:
    f, choice = answer["finding"], answer["answer"]
    s1, s2 = (answer.get("sites") or [None, None])[:2]
    noun, plain = NOUN[f], PLAIN[f]
    if choice == "unknown":
        return f"Which recording has {noun} {rng.choice(UNKNOWN)}."
    if answer["question"] == "louder":
        first, other = (("first", s1), ("second", s2)) if choice == "first" else (("second", s2), ("first", s1))
        return rng.choice([
            f"The murmur is louder in {_rec(*first)}, the labelled point of maximal intensity.",
            f"{cap(_rec(*first))}: the murmur is loudest there.",
        ])
    subject = noun if f == "murmur" else plain
    if choice == "both":
        return rng.choice([f"Both recordings have {subject}.", f"Both: {subject} {'is' if f == 'murmur' else 'are'} heard in each recording."])
    if choice == "neither":
        return rng.choice([f"Neither recording has {plain if f != 'murmur' else 'a murmur'}.",
                           f"Neither: there {'is' if f == 'murmur' else 'are'} no {plain} in either recording."])
    yes_rec, no_rec = (("first", s1), ("second", s2)) if choice == "first" else (("second", s2), ("first", s1))
    return rng.choice([
        f"The {yes_rec[0]} recording has {noun}; the {no_rec[0]} does not.",
        f"{cap(_rec(*yes_rec))} has {noun}, unlike the other one.",
        f"The {yes_rec[0]} one: {subject} {'is' if f == 'murmur' else 'are'} heard there but not in the {no_rec[0]} recording.",
    ])


# ----------------------------------------------------------------------------------- location

LOCATION_Q = {
    "most_audible": ["Where is this patient's murmur loudest?", "At which auscultation site is the murmur most audible?",
                     "Where is the point of maximal intensity of the murmur?", "Which site gives the loudest murmur?"],
    "murmur_where": ["Is there a murmur, and where is it loudest?", "Do you hear a murmur? If so, where is it most audible?",
                     "Is a murmur present, and at which site is it loudest?", "Any murmur? Where is it best heard?"],
    "at_site": ["What is heard at {site} in this recording?", "This recording was taken at {site}. What do you hear there?",
                "Describe the findings at {site}.", "Recorded at {site}: what is heard?"],
}


def location_question(answer: Answer, rng: random.Random) -> str:
    return rng.choice(LOCATION_Q[answer["question"]]).format(site=site_phrase(answer.get("site")))


def location_response(answer: Answer, rng: random.Random) -> str:
    site = answer.get("site")
    if answer["question"] == "most_audible":
        others = [site_phrase(s) for s in answer.get("sites", []) if s != site]
        if site == "unknown":
            heard = f"The murmur is audible at {join(others)}, but" if others else "The"
            return f"{heard} the point where it is loudest {rng.choice(UNKNOWN)}."
        also = f"; it is also audible at {join(others)}" if others else ""
        return rng.choice([f"It is loudest at {site_phrase(site)}{also}.",
                           f"The murmur is most audible at {site_phrase(site)}{also}."])
    if answer["question"] == "murmur_where":
        return _murmur_where_response(answer, rng)
    findings = answer.get("findings", {})
    unknown = [t for t, v in findings.items() if v == "unknown"]
    text = findings_sentence({t: v for t, v in findings.items() if v != "unknown"}, rng)
    where = site_phrase(site)
    if text:
        text = rng.choice([f"At {where}: {text[0].lower() + text[1:]}", f"At {where}, {text[0].lower() + text[1:]}", text])
    if unknown:
        text += f" Whether there {'is' if unknown == ['murmur'] else 'are'} {join([NOUN[t] if t == 'murmur' else PLAIN[t] for t in unknown], 'or')} at {where} {rng.choice(UNKNOWN)}."
    return text.strip()


def _murmur_where_response(answer: Answer, rng: random.Random) -> str:
    """Both parts of "Is there a murmur, and where is it loudest?": the yes/no first, then the site."""
    murmur, site = answer["findings"]["murmur"], answer.get("site")
    if murmur == "unknown":
        return rng.choice([f"Whether a murmur is present {rng.choice(UNKNOWN)}.",
                           f"{rng.choice(UNKNOWN_LEAD)}: the murmur label of this recording is unknown."])
    if murmur == "no":
        return rng.choice(["No, there is no murmur, so there is nowhere it is loudest.", "No murmur is heard in this recording.",
                           "No. This recording has no murmur."])
    if site in (None, "unknown"):
        return f"Yes, there is a murmur, but the point where it is loudest {rng.choice(UNKNOWN)}."
    others = [site_phrase(s) for s in answer.get("sites", []) if s != site]
    also = f"; it is also audible at {join(others)}" if others else ""
    return rng.choice([f"Yes, there is a murmur; it is loudest at {site_phrase(site)}{also}.",
                       f"Yes. The murmur is most audible at {site_phrase(site)}{also}."])


QUESTIONS: dict[str, Callable[[Answer, random.Random], str]] = {
    "binary": binary_question, "detection": detection_question, "reporting": reporting_question,
    "reasoning": reasoning_question, "differential": differential_question,
    "comparison": comparison_question, "location": location_question,
}
RESPONSES: dict[str, Callable[[Answer, random.Random], str]] = {
    "binary": binary_response, "detection": detection_response, "reporting": reporting_response,
    "reasoning": reasoning_response, "differential": differential_response,
    "comparison": comparison_response, "location": location_response,
}
