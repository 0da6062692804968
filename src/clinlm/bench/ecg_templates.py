"""ECG phrasings: questions and responses for the four ECG tasks, written only from an `answer` dict.

The ECG counterpart of `bench.templates` (whose "cannot be determined" phrasings, `join` and
`cap` it reuses). Every response is rendered from the structured answer alone, so
`bench.ecg_facts.check_ecg_consistency` can verify it, and the evaluator's majority baseline is
written by the same functions. Wording rules that keep the text parseable and honest:
- findings are always named as in `ECG_FINDINGS` ("atrial fibrillation", "a left bundle branch
  block", "ST/T changes"), and only those the answer labels yes or no are stated;
- closed answers start with "Yes" or "No" (the evaluator reads P(yes) from that first token), or
  say the finding cannot be determined when its label is unknown;
- a report states the labelled rhythm, the findings labelled present, the diagnostic class, and
  the dataset's other statements verbatim; anything unlabelled "cannot be determined".
"""

from __future__ import annotations

import random
from typing import Any

from clinlm.bench.ecg_facts import ECG_FINDINGS, LETTERS, finding_name, in_group
from clinlm.bench.templates import UNKNOWN, cap, join

Answer = dict[str, Any]

# Noun phrases for "Is there {NOUN}?" / "The ECG shows {NOUN}."; plural ones take "are".
NOUN = {
    "norm": "a normal ECG", "mi": "a myocardial infarction", "sttc": "ST/T changes", "cd": "a conduction disturbance",
    "hyp": "hypertrophy", "sr": "sinus rhythm", "af": "atrial fibrillation", "afl": "atrial flutter",
    "stach": "sinus tachycardia", "sbrad": "sinus bradycardia", "pvc": "premature ventricular complexes",
    "lbbb": "a left bundle branch block", "rbbb": "a right bundle branch block", "ste": "ST elevation", "std": "ST depression",
}
PLURAL = {"sttc", "pvc"}
MEDIA_WORDS = {"signal": ["ECG", "12-lead ECG recording", "ECG signal", "electrocardiogram"],
               "image": ["ECG printout", "ECG image", "picture of an ECG", "photo of an ECG"]}
PLACEHOLDER = {"signal": "<ecg>", "image": "<image>"}


def frame(rng: random.Random, media: str, question: str) -> str:
    """The `<ecg>` or `<image>` placeholder and the question, in one of four layouts."""
    token, what = PLACEHOLDER[media], rng.choice(MEDIA_WORDS[media])
    style = rng.randrange(4)
    if style == 0:
        return f"{token}\n{question}"
    if style == 1:
        return f"Here is an {what}: {token}\n{question}" if what[0] in "AEIOUaeiou" else f"Here is a {what}: {token}\n{question}"
    if style == 2:
        return f"{question}\n{token}"
    return f"{token} Look at this {what}. {question}"


def _be(key: str) -> str:
    return "are" if key in PLURAL else "is"


def _bare(key: str) -> str:
    """The noun phrase without its article ("left bundle branch block")."""
    noun = NOUN[key]
    return noun[2:] if noun.startswith("a ") else noun


# ------------------------------------------------------------------------------ closed questions

CLOSED_Q = ["Does this ECG show {noun}?", "Is there {noun}?", "Does the ECG show {noun}? Answer yes or no.",
            "Is {noun} present on this ECG?", "Can you see {noun} on this ECG?"]
NORM_Q = ["Is this a normal ECG?", "Is this ECG normal?", "Would you call this a normal ECG? Answer yes or no."]
PROBE_QUESTION = CLOSED_Q[0]  # the phrasing the evaluator asks every class with (per-class AUROC)


def probe_question(key: str) -> str:
    """The evaluator's canonical closed question about a finding (one of the trained phrasings)."""
    return NORM_Q[0] if key == "norm" else PROBE_QUESTION.format(noun=NOUN[key])


def closed_question(answer: Answer, rng: random.Random) -> str:
    key = answer["finding"]
    return rng.choice(NORM_Q) if key == "norm" else rng.choice(CLOSED_Q).format(noun=NOUN[key])


def closed_response(finding: str, label: str, rng: random.Random) -> str:
    noun, be = NOUN[finding], _be(finding)
    if label == "unknown":
        return rng.choice([
            f"Whether the ECG shows {noun} {rng.choice(UNKNOWN)}.",
            f"I cannot say: whether there {be} {noun} {rng.choice(UNKNOWN)}.",
        ])
    if finding == "norm":
        return rng.choice(["Yes, this is a normal ECG.", "Yes. It is a normal ECG."] if label == "yes"
                          else ["No, this is not a normal ECG.", "No. It is not a normal ECG."])
    if label == "yes":
        return rng.choice([f"Yes, {noun} {be} present.", f"Yes. The ECG shows {noun}.", f"Yes, there {be} {noun}."])
    return rng.choice([f"No, there {be} no {_bare(finding)}.", f"No. The ECG does not show {noun}.", f"No {_bare(finding)}."])


# ------------------------------------------------------------------------------ rhythm, report

def _negated(keys: list[str]) -> str:
    """"No A, B or C. No D." : the fact parser reads a "no" over a list of up to 8 words, so a
    sentence takes names while the words before its last name stay within 8."""
    chunks: list[list[str]] = [[]]
    for name in (_bare(k) for k in keys):
        before = sum(len(n.split()) for n in chunks[-1]) + 1  # + "or"
        if chunks[-1] and before > 8:
            chunks.append([])
        chunks[-1].append(name)
    return " ".join(f"No {join(c, 'or')}." for c in chunks if c)


def rhythm_sentence(findings: dict[str, str], rng: random.Random) -> str:
    rhythms = [finding_name(k) for k in in_group("rhythm") if findings.get(k) == "yes"]
    if rhythms:
        return rng.choice([f"The rhythm is {join(rhythms)}.", f"Rhythm: {join(rhythms)}.", f"{cap(join(rhythms))}."])
    excluded = [k for k in in_group("rhythm") if findings.get(k) == "no"]
    unknown = f"The rhythm {rng.choice(UNKNOWN)}."
    return f"{_negated(excluded)} {unknown}" if excluded else unknown


REPORT_Q = ["Write a short report for this ECG.", "Describe this ECG: rhythm, findings and diagnostic class.",
            "Give a brief structured ECG report.", "Report the findings of this ECG.", "Interpret this ECG."]


def report_question(answer: Answer, rng: random.Random) -> str:
    return rng.choice(REPORT_Q)


def _with(findings: dict[str, str], group: str, label: str) -> list[str]:
    return [k for k in in_group(group) if findings.get(k) == label]


def report_response(answer: Answer, rng: random.Random) -> str:
    """Rhythm, findings (present, absent, undeterminable), diagnostic class, other statements."""
    f = answer["findings"]
    present, absent, unknown = (_with(f, "statement", x) for x in ("yes", "no", "unknown"))
    parts = []
    if present:
        parts.append(f"{cap(join([finding_name(k) for k in present]))} {'are' if len(present) > 1 or present[0] in PLURAL else 'is'} present.")
    if absent:
        parts.append(_negated(absent))
    if unknown:
        parts.append(f"Other findings {rng.choice(UNKNOWN)}." if len(unknown) == len(in_group("statement")) else
                     f"Whether there is {join([_bare(k) for k in unknown], 'or')} {rng.choice(UNKNOWN)}.")
    classes = [finding_name(k) for k in _with(f, "class", "yes")]
    rhythms = [finding_name(k) for k in _with(f, "rhythm", "yes")]
    structured = rng.random() < 0.5
    fields = [("Rhythm", f"{join(rhythms)}." if rhythms and structured else rhythm_sentence(f, rng)), ("Findings", " ".join(parts)),
              ("Diagnostic class", f"{join(classes)}." if classes else f"The diagnostic class {rng.choice(UNKNOWN)}.")]
    if answer.get("other_statements"):
        fields.append(("Other statements", "; ".join(answer["other_statements"]) + "."))
    if structured:
        return "\n".join(f"{k}: {v}" for k, v in fields)
    return " ".join(v if k in ("Rhythm", "Findings") else f"{k}: {v}" for k, v in fields)


# ------------------------------------------------------------------------------ multiple choice

MCQ_Q = {
    "rhythm": ["What is the rhythm of this ECG?", "Which rhythm does this ECG show?"],
    "class": ["Which diagnostic class applies to this ECG?", "Which of these diagnostic classes does this ECG show?"],
    "finding": ["Which of these findings does this ECG show?", "Which of the following is present on this ECG?"],
}


def mcq_question(answer: Answer, rng: random.Random) -> str:
    options = "\n".join(f"{letter}. {cap(finding_name(k))}" for letter, k in zip(LETTERS, answer["options"]))
    return f"{rng.choice(MCQ_Q[answer['question']])}\n{options}\nAnswer with the letter."


def mcq_response(answer: Answer, rng: random.Random) -> str:
    letter, name = answer["correct"], finding_name(answer["finding"])
    return rng.choice([f"{letter}. {cap(name)}.", f"The answer is {letter}: {name}.", f"{letter}."])


# ------------------------------------------------------------------------------ conversation

FOLLOW_UP_Q = ["Is there {noun}?", "Does it also show {noun}?", "And {noun}?", "What about {noun}?"]
RHYTHM_Q = ["What is the rhythm?", "What rhythm does this ECG show?", "Describe the rhythm."]


def turn_question(turn: Answer, rng: random.Random, first: bool) -> str:
    if turn["kind"] == "rhythm":
        return rng.choice(RHYTHM_Q)
    if turn["finding"] == "norm":
        return rng.choice(NORM_Q)
    return rng.choice(CLOSED_Q if first else FOLLOW_UP_Q).format(noun=NOUN[turn["finding"]])


def turn_response(turn: Answer, findings: dict[str, str], rng: random.Random) -> str:
    if turn["kind"] == "rhythm":
        return rhythm_sentence(findings, rng)
    return closed_response(turn["finding"], turn["label"], rng)


def names_are_parseable() -> None:
    """Every noun phrase names its finding in the parser's vocabulary (checked by the tests)."""
    import re

    for key, noun in NOUN.items():
        if not re.search(ECG_FINDINGS[key][2], noun.lower()):
            raise AssertionError(f"{noun!r} does not match the spelling of {key}")
