"""The bench's shared vocabulary, the `answer` schema of each task, and the free-text fact parser.

The bench builder writes, beside every response, the structured ground truth it was written from
(`row["answer"]`). The evaluator parses a model's free-text answer back into the same facts with
`extract_facts` and scores it against `answer`; the builder checks every response it writes with
`check_consistency` (the clinical honesty rule: a response states only what the labels support).

Label values are always one of `LABELS` = "yes" | "no" | "unknown"; "unknown" means the labels
do not say (never "absent"). Sites are the canonical names in `SITE_NAMES` (see `canonical_site`
for the dataset codes). Diagnoses are lower-case names (`DIAGNOSES` lists the known ones with
their spellings; a dataset's own names pass through lower-cased).

The `answer` dict of each task
------------------------------
binary
    {"finding": F, "label": L}; F in BINARY_FINDINGS ("murmur" | "crackle" | "wheeze" | "rhonchi" |
    "stridor" | "abnormal" | "covid"). "murmur" is about *this recording* (its site), see
    `bench.labels`; "covid" is a cough's COVID-19 status label.
detection
    {"present": [T...], "absent": [T...], "unknown": [T...],
     "events": [{"type": T, "start_s": float, "end_s": float}, ...]  (sorted by start; may be []),
     "timing": {T: timing | "unknown"}  (only for present murmur types),
     "modality": "heart" | "lung", "n_cycles": int | None  (annotated cycles, for the wording)}
    T in EVENT_TYPES ("systolic murmur" | "diastolic murmur" | "murmur" | "crackle" | "wheeze" |
    "rhonchi" | "stridor"). Everything the labels cannot decide is in "unknown".
reporting
    {"modality": "heart" | "lung" | "cough", "site": S | "unknown", "abnormal": L,
     "diagnosis": [dx...]} plus, by modality,
    heart: "heart_rate_bpm": int | "unknown", "murmur": L, "most_audible": S | "unknown" | None,
           "systolic" / "diastolic": None (no such murmur here) or
           {"timing", "shape", "grade", "pitch", "quality"} each a value or "unknown" (grade: int);
    lung:  "crackle": L, "wheeze": L (and "rhonchi", "stridor" when the dataset annotates them);
    cough: "covid": L.
reasoning
    {"question": "diagnosis" | "abnormal" | "murmur" | "unknown", "conclusion": dx | L,
     "findings": {F or T: L}, "diagnosis": [dx...], "supported": bool (the sounds alone point to
     the labelled diagnosis, per `bench.knowledge`), "site": S | "unknown",
     "systolic" / "diastolic": murmur descriptors as in reporting (heart)}; conclusion "unknown" =
    the labels support no conclusion (the response says it cannot be determined).
differential
    {"candidates": [dx...] (ranked; the labelled diagnosis first when there is one; [] when
     nothing supports a candidate), "labelled": [dx...], "findings": {F or T: L}}
comparison
    {"question": "which" | "louder", "finding": F, "first": L, "second": L,
     "answer": "first" | "second" | "both" | "neither" | "unknown", "sites": [S, S]}
    ("louder": the murmur is louder at the first/second recording's site, from the labelled
    most-audible location.)
location
    {"question": "most_audible" | "at_site" | "murmur_where", "site": S | "unknown" | None, "sites": [S...],
     "findings": {F or T: L}}
    most_audible: "site" is where the murmur is loudest, "sites" all sites where it is audible;
    murmur_where: both parts of "Is there a murmur, and where is it loudest?": findings["murmur"]
    is the yes/no/unknown part, "site" the loudest site when it is "yes" (None otherwise);
    at_site: "site" is this recording's site and "findings" what the labels say is heard there.

What `extract_facts` returns (every key always present)
-------------------------------------------------------
{"label": L | None            the leading Yes/No (or "unknown" when the text abstains),
 "unknown": bool              the text says something cannot be determined,
 "findings": {F or T: L}      the first definite statement about each finding mentioned,
 "mentions": {F or T: [L...]} every statement, in order (for consistency checks),
 "grade" / "timing" / "shape" / "pitch" / "quality": {"systolic": v | None, "diastolic": v | None},
 "sites": [S...]              in order of mention, "site": the first one,
 "most_audible": S | None     a site named as loudest / best heard,
 "diagnoses": [dx...]         in order of mention (ranked candidates for differential),
 "choice": "first" | "second" | "both" | "neither" | None   (comparison),
 "events": [{"type", "start_s", "end_s"}]                  (times stated as "1.2-3.4 s"),
 "event_types": [T...]        types stated present,
 "heart_rate_bpm": float | None}

What `check_consistency(text, answer, task)` flags (an empty list = consistent)
--------------------------------------------------------------------------------
- a finding stated present/absent/unknown other than its label, or stated at all (present or
  absent) when the answer does not label it (a hallucinated finding);
- the task's primary fact: the binary label, the comparison choice, the differential ranking,
  the most audible site; an unknown truth that the text does not call undeterminable;
- murmur grade/timing/shape/pitch/quality other than the labels (or stated when unknown), a heart
  rate more than 3 bpm off, an event time not within 0.05 s of an annotated event;
- a site or a diagnosis that the answer does not give.
The parser reads plain English sentences, so the templates keep to wording it understands (see
`bench.templates`); a model's free text is read the same way by the evaluator.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable

LABELS = ("yes", "no", "unknown")
TASKS = ("binary", "detection", "reporting", "reasoning", "differential", "comparison", "location")
BINARY_FINDINGS = ("murmur", "crackle", "wheeze", "rhonchi", "stridor", "abnormal", "covid")
EVENT_TYPES = ("systolic murmur", "diastolic murmur", "murmur", "crackle", "wheeze", "rhonchi", "stridor")
PHASES = ("systolic", "diastolic")

# --- auscultation sites ----------------------------------------------------------------------
# Dataset codes -> canonical site. CirCor: AV/PV/TV/MV valve areas, Phc = any other point.
# ICBHI: Tc trachea, A/P/L = anterior/posterior/lateral, l/r = left/right.
# SPRSound (BioCAS 2022 README): p1 left posterior, p2 left lateral, p3 right posterior,
# p4 right lateral.
SITE_CODES = {
    "av": "aortic", "pv": "pulmonic", "tv": "tricuspid", "mv": "mitral", "phc": "other",
    "tc": "trachea", "al": "left anterior", "ar": "right anterior", "pl": "left posterior",
    "pr": "right posterior", "ll": "left lateral", "lr": "right lateral",
    "p1": "left posterior", "p2": "left lateral", "p3": "right posterior", "p4": "right lateral",
}
HEART_SITES = ("aortic", "pulmonic", "tricuspid", "mitral", "other")
LUNG_SITES = ("trachea", "left anterior", "right anterior", "left posterior", "right posterior",
              "left lateral", "right lateral")
SITE_NAMES = {  # how responses name each site
    "aortic": "aortic area", "pulmonic": "pulmonic area", "tricuspid": "tricuspid area",
    "mitral": "mitral area", "other": "a non-standard auscultation point", "trachea": "trachea",
    "left anterior": "left anterior chest", "right anterior": "right anterior chest",
    "left posterior": "left posterior chest", "right posterior": "right posterior chest",
    "left lateral": "left lateral chest", "right lateral": "right lateral chest",
}

# --- murmur descriptors (CirCor's vocabulary, lower-case) ------------------------------------
TIMINGS = {"systolic": ("early", "mid", "late", "holosystolic"),
           "diastolic": ("early", "mid", "late", "holodiastolic")}
SHAPES = ("crescendo", "decrescendo", "diamond", "plateau")
PITCHES = ("low", "medium", "high")
QUALITIES = ("blowing", "harsh", "musical")
MAX_GRADE = {"systolic": 6, "diastolic": 4}  # Levine scale /6, diastolic /4
ADVENTITIOUS = ("crackle", "wheeze", "rhonchi", "stridor")

# --- diagnoses: canonical name -> regex of its spellings ---------------------------------------
DIAGNOSES: dict[str, str] = {
    "healthy": r"healthy|no (?:underlying )?disease",
    "copd": r"copd|chronic obstructive pulmonary disease",
    "urti": r"urti|upper respiratory(?: tract)? infection",
    "lrti": r"lrti|lower respiratory(?: tract)? infection",
    "asthma": r"asthma",
    "bronchiectasis": r"bronchiectasis",
    "bronchiolitis": r"bronchiolitis",
    "bronchitis": r"bronchitis",
    "pneumonia": r"pneumonia",
    "heart failure": r"(?:congestive )?heart failure",
    "lung fibrosis": r"(?:lung|pulmonary) fibrosis|interstitial lung disease",
    "pleural effusion": r"pleural effusion",
    "covid-19": r"covid(?:-?19)?|sars-cov-2",
    "mitral regurgitation": r"mitral (?:valve )?regurgitation|mitral insufficiency",
    "mitral stenosis": r"mitral (?:valve )?stenosis",
    "mitral valve prolapse": r"mitral valve prolapse",
    "aortic stenosis": r"aortic (?:valve )?stenosis",
    "aortic regurgitation": r"aortic (?:valve )?regurgitation|aortic insufficiency",
    "pulmonary stenosis": r"pulmon(?:ary|ic) (?:valve )?stenosis",
    "pulmonary regurgitation": r"pulmon(?:ary|ic) (?:valve )?regurgitation",
    "tricuspid regurgitation": r"tricuspid (?:valve )?regurgitation",
    "ventricular septal defect": r"ventricular septal defect|\bvsd\b",
    "atrial septal defect": r"atrial septal defect|\basd\b",
    "patent ductus arteriosus": r"patent ductus arteriosus|\bpda\b",
    "innocent murmur": r"innocent (?:flow )?murmur|physiological murmur|still'?s murmur",
    "congenital heart disease": r"congenital heart disease",
    "rheumatic heart disease": r"rheumatic heart disease",
    "upper airway obstruction": r"upper airway obstruction|croup",
}

UNKNOWN_PHRASES = (
    "cannot be determined", "can't be determined", "can not be determined", "could not be determined",
    "cannot be assessed", "cannot be established", "cannot be said", "cannot tell", "cannot say",
    "not possible to determine", "not possible to tell", "not possible to say", "impossible to determine",
    "unable to determine", "undetermined", "not determinable", "indeterminate", "unknown",
    "not labelled", "not labeled", "not annotated", "no label", "not recorded in the labels",
    "insufficient information", "not enough information", "do not allow", "does not allow",
    "do not say", "does not say", "uncertain", "unclear",
)


def canonical_site(code: str | None) -> str | None:
    """A dataset's site code or name ("MV", "Pl", "p3", "mitral area") -> canonical site, or None."""
    if code is None:
        return None
    key = str(code).strip().lower()
    if key in SITE_CODES:
        return SITE_CODES[key]
    found = _find_sites(key)
    return found[0][1] if found else None


# ================================================================================================
# Parsing
# ================================================================================================

_F = re.IGNORECASE
_TERMS: dict[str, str] = {  # finding -> regex of its spellings (plural, -ing forms)
    "murmur": r"murmurs?",
    "crackle": r"(?:fine |coarse )?(?:crackles?|crackling|rales|crepitations?)",
    "wheeze": r"wheez(?:e|es|ing)",
    "rhonchi": r"rhonch(?:i|us|ous)",
    "stridor": r"stridor",
    "abnormal": r"abnormal|normal",
    "covid": r"covid(?:-?19)?|sars-cov-2",
}
# Python's re tries every alternative at every position; a look-ahead on the possible first letters
# (then one word boundary) skips most positions at once, ~5x faster on these alternations.
_TERM_RE = re.compile(r"(?=[mcfrwsanp])\b(?:" + "|".join(f"(?P<{k}>{v})" for k, v in _TERMS.items()) + r")\b")
_PHASE_RE = re.compile(r"(systolic|diastolic)")
_WORDS_RE = re.compile(r"\w+")
_ANSWER_PUNCT = re.compile(r"\s*[,:\u2014-]")
_LEAD_RE = re.compile(r"^\W*(yes|no|present|absent|positive|negative)\b")
_ADV_RE = re.compile(r"adventitious (?:lung |breath )?sounds?")
_TERM_RES = {k: re.compile(rf"\b(?:{v})\b") for k, v in _TERMS.items()}


def _phase_before(prefix: str) -> str | None:
    """The phase word ("systolic"/"diastolic") qualifying a murmur: the nearest one within 4 words before it."""
    found = list(_PHASE_RE.finditer(prefix))
    if not found:
        return None
    gap = prefix[found[-1].end():]
    if len(_WORDS_RE.findall(gap)) > 4 or "murmur" in gap.lower():
        return None
    return found[-1].group(1).lower()
# Negation cues before a term (within the clause) and status cues after it.
_NEG_BEFORE = re.compile(
    r"(?=[nwafdlr])\b(?:no|not|without|absent|absence of|negative for|free of|neither|nor|none|denies|lack of|lacks|ruled out)\b")
_SCOPE_BREAK = re.compile(r"(?=[bhatwyi])\b(?:but|however|although|though|whereas|while|yet|and|which|instead)\b|[,:]\s*(?:and|but)\b")
_AFTER_NO = re.compile(
    r"^\s*[:=\-]?\s*(?:(?:is|are|was|were|has been|have been|seems|appears)\s+)?(?:also\s+)?"
    r"(?:not\b|absent\b|none\b|no\b|negative\b|excluded\b|ruled out\b|not (?:heard|present|detected|audible|identified|found))")
_AFTER_YES = re.compile(
    r"^\s*[:=\-]?\s*(?:(?:is|are|was|were|has been|have been|can be|could be)\s+)?(?:clearly\s+|also\s+)?"
    r"(?:present\b|heard\b|audible\b|detected\b|noted\b|identified\b|found\b|positive\b|yes\b)")
_ATTRIBUTE = re.compile(r"(?=[gitspqclmd])\b(?:grade|grading|intensity|timing|shape|pitch|quality|configuration|location|site|loudest|most audible|severity|duration|cause|type)\b")
_UNKNOWN_RE = re.compile(f"(?=[{''.join(sorted({p[0] for p in UNKNOWN_PHRASES}))}])(?:"
                         + "|".join(re.escape(p) for p in UNKNOWN_PHRASES) + ")")
# Clauses: split at sentence ends (not decimal points), semicolons, newlines, and contrast words.
_SENTENCE_RE = re.compile(r"[.!?](?!\d)|[;\n]")
_CLAUSE_RE = re.compile(r"(?=[bhwa])\b(?:but|however|whereas|although|while)\b")

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}
_GRADE_RE = re.compile(
    r"\b(?:grade\s*|levine\s*(?:grade\s*)?)?(vi|iv|v|i{1,3}|[1-6])\s*(?:/|out of|of)\s*(vi|iv|6|4)\b|"
    r"\bgrade\s*(vi|iv|v|i{1,3}|[1-6])\b")
_TIMING_RE = re.compile(
    r"\b(holosystolic|pansystolic|holodiastolic|pandiastolic|(early|mid|late)[- ]?(systolic|diastolic))\b")
_SHAPE_RE = re.compile(r"\b(crescendo[- ]decrescendo|diamond(?:[- ]shaped)?|crescendo|decrescendo|plateau)\b")
_PITCH_RE = re.compile(r"\b(low|medium|mid|high)[- ]pitch(?:ed)?\b|\bpitch\W+(?:is\s+|was\s+)?(low|medium|high)\b")
_QUALITY_RE = re.compile(r"\b(blowing|harsh|musical)\b")
_HR_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:bpm|beats per minute|beats/min|beats a minute)")
_INTERVAL_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:s|sec|seconds)?\s*(?:-|–|to|until)\s*(\d+(?:\.\d+)?)\s*(?:s|sec|seconds)\b")
_MOST_AUDIBLE_RE = re.compile(
    r"most audible|loudest|best heard|heard best|maximal|maximum intensity|most intense|most prominent|louder")
_CHOICE_RE = re.compile(
    r"(?=[nbfslr])\b(?:(?P<neither>neither)\b|(?P<both>both)\b|"
    r"(?P<first>first|former|recording (?:1|one|a)\b)|(?P<second>second|latter|recording (?:2|two|b)\b))")

_SITE_PATTERNS: dict[str, str] = {
    "aortic": r"aortic (?:valve )?(?:area|region|position|point|site|focus)|right upper sternal border",
    "pulmonic": r"pulmon(?:ic|ary) (?:valve )?(?:area|region|position|point|site|focus)|left upper sternal border",
    "tricuspid": r"tricuspid (?:valve )?(?:area|region|position|point|site|focus)|left lower sternal border",
    "mitral": r"mitral (?:valve )?(?:area|region|position|point|site|focus)|cardiac apex|\bapex\b|\bapical\b",
    "other": r"non-?standard (?:auscultation )?(?:point|site|location|position)|other auscultation (?:point|site|location)",
    "trachea": r"trachea|tracheal",
    "left anterior": r"left anterior|anterior left",
    "right anterior": r"right anterior|anterior right",
    "left posterior": r"left posterior|posterior left",
    "right posterior": r"right posterior|posterior right",
    "left lateral": r"left lateral|lateral left",
    "right lateral": r"right lateral|lateral right",
}
_SITE_RE = re.compile(r"(?=[arpltmcno])(?:" + "|".join(f"(?P<s{i}>{p})" for i, p in enumerate(_SITE_PATTERNS.values())) + ")")
_SITE_KEYS = list(_SITE_PATTERNS)
_SITE_CODE_RE = re.compile(r"\b(AV|PV|TV|MV|Phc)\b")  # the CirCor codes, only as written (upper case)
_SITE_CODE_NAMES = {"AV": "aortic", "PV": "pulmonic", "TV": "tricuspid", "MV": "mitral", "Phc": "other"}


_WORD_RE = re.compile(r"[a-z]+")


def _triggers(pattern: str) -> tuple[str, ...]:
    """Lower-case words (3+ letters) of a regex, used as substrings that must occur for it to match."""
    return tuple(sorted(set(w for w in _WORD_RE.findall(pattern.lower().replace("\\b", " ")) if len(w) >= 3)))


# Cheap prefilters: a regex with many alternatives runs only when one of its words is in the text.
_SITE_TRIGGER_RE = re.compile(r"(?=[aptmcsnol])\b(?:aortic|pulmon|tricuspid|mitral|apex|apical|cardiac|sternal|non-?standard|other auscultation"
                              r"|trachea|anterior|posterior|lateral)")
_DX_PARTS = [(name, re.compile(rf"\b(?:{p})\b"), _triggers(p)) for name, p in DIAGNOSES.items()]
_DX_ALL_TRIGGERS = {t for _, _, ts in _DX_PARTS for t in ts}


@functools.lru_cache(maxsize=None)
def _dx_parts_for(word: str) -> frozenset[int]:
    """Indices of the diagnoses whose trigger words occur in `word` ("pulmon" inside "pulmonary")."""
    return frozenset(i for i, (_, _, ts) in enumerate(_DX_PARTS) if any(t in word for t in ts))
_DX_TRIGGER_RE = re.compile(f"(?=[{''.join(sorted({t[0] for t in _DX_ALL_TRIGGERS}))}])\\b(?:"
                            + "|".join(sorted(_DX_ALL_TRIGGERS, key=len, reverse=True)) + ")")
_DIGIT_RE = re.compile(r"\d")


def _find_sites(text: str) -> list[tuple[int, str]]:
    """(position, site) of every site named in the text, in order."""
    out = set()
    low = _lower(text)
    if _SITE_TRIGGER_RE.search(low):
        out.update((m.start(), _SITE_KEYS[int(m.lastgroup[1:])]) for m in _SITE_RE.finditer(low))
    if any(c in text for c in _SITE_CODE_NAMES):
        out.update((m.start(), _SITE_CODE_NAMES[m.group(1)]) for m in _SITE_CODE_RE.finditer(text))
    return sorted(out)


def _lower(text: str) -> str:
    """Lower-case with the same length (so positions match the original text)."""
    low = text.lower()
    return low if len(low) == len(text) else "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_RE.split(text) if s and s.strip()]


def _split_spans(text: str, start: int, rx: re.Pattern) -> list[tuple[int, str]]:
    out, pos = [], 0
    for m in rx.finditer(text):
        out.append((start + pos, text[pos:m.start()]))
        pos = m.end()
    out.append((start + pos, text[pos:]))
    return out


def _clauses(text: str) -> list[tuple[int, str]]:
    """(offset, clause): sentences, then split at contrast words; empty pieces dropped."""
    out = []
    for start, sentence in _split_spans(text, 0, _SENTENCE_RE):
        out += [(a, c) for a, c in _split_spans(sentence, start, _CLAUSE_RE) if c.strip()]
    return out


def _polarity(clause: str, start: int, end: int, unknown: bool | None = None) -> str:
    """yes/no/unknown for the finding mentioned at clause[start:end].

    `unknown`: whether the clause abstains (an unknown phrase, not about an attribute such as the
    grade); computed here when the caller has not.
    """
    before, after = clause[:start], clause[end:]
    if unknown is None:
        unknown = bool(_UNKNOWN_RE.search(clause)) and not _ATTRIBUTE.search(clause)
    if unknown:
        return "unknown"
    # The nearest negation cue before the term counts when no scope break lies between them.
    negated = False
    # A leading "No," is the answer to the question, not a negation of what follows it.
    cues = [c for c in _NEG_BEFORE.finditer(before) if not _ANSWER_PUNCT.match(before, c.end())]
    if cues:
        cue, gap = cues[-1].group(0).lower(), before[cues[-1].end():]
        # "no X, Y or Z" negates the whole list; "X is not heard, Y is" ends at the comma.
        list_cue = cue in ("no", "without", "neither", "nor", "none", "free of", "negative for", "absence of", "lack of")
        if not _SCOPE_BREAK.search(gap) and len(gap.split()) <= 8 and (list_cue or "," not in gap):
            negated = True
    if _AFTER_NO.search(after):
        return "yes" if negated else "no"  # "not ... is not" is rare; a double negative reads yes
    if negated:
        return "no"
    return "yes"


def _add(mentions: dict[str, list[str]], key: str, label: str) -> None:
    mentions.setdefault(key, []).append(label)


def _phase_at(clause: str, pos: int) -> str:
    """The phase a murmur descriptor at `pos` belongs to: the nearest phase word (default systolic)."""
    found = [(abs(m.start() - pos), m.group(1).lower()) for m in _PHASE_RE.finditer(clause)]
    return min(found)[1] if found else "systolic"


def _grade_value(token: str) -> int:
    token = token.lower()
    return int(token) if token.isdigit() else _ROMAN[token]


def extract_facts(text: str, diagnoses: Iterable[str] = ()) -> dict[str, Any]:
    """Parse a free-text answer into structured facts (see the module docstring for the keys).

    `diagnoses`: extra diagnosis names (e.g. a dataset's own labels) to recognise verbatim.
    """
    text = text or ""
    facts: dict[str, Any] = {
        "label": None, "unknown": False, "findings": {}, "mentions": {},
        "grade": {"systolic": None, "diastolic": None}, "timing": {"systolic": None, "diastolic": None},
        "shape": {"systolic": None, "diastolic": None}, "pitch": {"systolic": None, "diastolic": None},
        "quality": {"systolic": None, "diastolic": None},
        "sites": [], "site": None, "most_audible": None, "diagnoses": [], "choice": None,
        "events": [], "event_types": [], "heart_rate_bpm": None,
    }
    # Everything below reads `low` (same length as `text`); only site codes need the original case.
    low = _lower(text)
    lead = _LEAD_RE.match(low)
    if lead:
        facts["label"] = "yes" if lead.group(1) in ("yes", "present", "positive") else "no"
    facts["unknown"] = bool(_UNKNOWN_RE.search(low))
    if facts["label"] is None and facts["unknown"]:
        facts["label"] = "unknown"

    mentions: dict[str, list[str]] = facts["mentions"]
    has_adv = "adventitious" in low
    has_cue = bool(_MOST_AUDIBLE_RE.search(low))
    for offset, clause in _clauses(low):
        abstains = facts["unknown"] and bool(_UNKNOWN_RE.search(clause)) and not _ATTRIBUTE.search(clause)
        for m in _TERM_RE.finditer(clause):
            kind = m.lastgroup
            label = _polarity(clause, m.start(), m.end(), abstains)
            if kind == "abnormal":
                if label == "unknown":
                    _add(mentions, "abnormal", "unknown")
                else:
                    is_abn = m.group(0) == "abnormal"
                    _add(mentions, "abnormal", "yes" if (is_abn == (label == "yes")) else "no")
                continue
            if kind == "murmur":
                ph = _phase_before(clause[: m.start()])
                if ph:
                    _add(mentions, f"{ph} murmur", label)
                    if label == "yes":
                        _add(mentions, "murmur", "yes")
                    continue
            _add(mentions, kind, label)
        # Generic "no adventitious sounds" denies each adventitious sound not named in the clause.
        adv = _ADV_RE.search(clause) if has_adv else None
        if adv and _polarity(clause, adv.start(), adv.end(), abstains) == "no":
            for kind in ADVENTITIOUS:
                if not _TERM_RES[kind].search(clause):
                    _add(mentions, kind, "no")

        for g in (_GRADE_RE.finditer(clause) if ("/" in clause or "grade" in clause or " of " in clause) else ()):
            if g.group(1):
                value, denom = _grade_value(g.group(1)), g.group(2)
                ph = "diastolic" if denom in ("4", "iv") else "systolic"
            else:
                value, ph = _grade_value(g.group(3)), _phase_at(clause, g.start())
            facts["grade"][ph] = facts["grade"][ph] or value
        for t in (_TIMING_RE.finditer(clause) if "stolic" in clause else ()):
            word = t.group(1)
            if word in ("holosystolic", "pansystolic"):
                ph, value = "systolic", "holosystolic"
            elif word in ("holodiastolic", "pandiastolic"):
                ph, value = "diastolic", "holodiastolic"
            else:
                ph, value = t.group(3), t.group(2)
            facts["timing"][ph] = facts["timing"][ph] or value
        for sh in (_SHAPE_RE.finditer(clause) if ("cendo" in clause or "diamond" in clause or "plateau" in clause) else ()):
            word = sh.group(1)
            value = "diamond" if ("diamond" in word or "-" in word or " " in word) else word
            phase = _phase_at(clause, sh.start())
            facts["shape"][phase] = facts["shape"][phase] or value
        for p in (_PITCH_RE.finditer(clause) if "pitch" in clause else ()):
            value = p.group(1) or p.group(2)
            phase = _phase_at(clause, p.start())
            facts["pitch"][phase] = facts["pitch"][phase] or ("medium" if value == "mid" else value)
        for q in (_QUALITY_RE.finditer(clause) if ("blowing" in clause or "harsh" in clause or "musical" in clause) else ()):
            phase = _phase_at(clause, q.start())
            facts["quality"][phase] = facts["quality"][phase] or q.group(1)

        cue = _MOST_AUDIBLE_RE.search(clause) if has_cue and facts["most_audible"] is None else None
        clause_sites = _find_sites(text[offset: offset + len(clause)]) if cue else []
        if clause_sites:
            # "loudest at X" / "X, where it is loudest": the site nearest the cue.
            facts["most_audible"] = min(clause_sites, key=lambda p: abs(p[0] - cue.start()))[1]

        # Times: each "a-b s" belongs to the nearest event type named before it in the clause.
        for iv in (_INTERVAL_RE.finditer(clause) if _DIGIT_RE.search(clause) else ()):
            types = [m for m in _TERM_RE.finditer(clause, 0, iv.start()) if m.lastgroup != "abnormal"]
            if not types:
                continue
            m = types[-1]
            kind = m.lastgroup
            if kind == "murmur":
                ph = _phase_before(clause[: m.start()])
                kind = f"{ph} murmur" if ph else "murmur"
            facts["events"].append({"type": kind, "start_s": float(iv.group(1)), "end_s": float(iv.group(2))})

    for site in [site for _, site in _find_sites(text)]:
        if site not in facts["sites"]:
            facts["sites"].append(site)
    facts["site"] = facts["sites"][0] if facts["sites"] else None

    extra = [d.lower() for d in diagnoses if d and d.lower() not in DIAGNOSES]
    parts: set[int] = set()
    for word in set(_DX_TRIGGER_RE.findall(low)):
        parts |= _dx_parts_for(word)
    found: list[tuple[int, str]] = [(m.start(), _DX_PARTS[i][0]) for i in sorted(parts) for m in _DX_PARTS[i][1].finditer(low)]
    for name in extra:
        found += [(m.start(), name) for m in re.finditer(rf"\b{re.escape(name)}\b", low)]
    for _, name in sorted(found):
        if name not in facts["diagnoses"]:
            facts["diagnoses"].append(name)
    # "covid" as a finding and "covid-19" as a diagnosis are the same words: keep both readings.

    first_sentence = _sentences(low)[0] if low.strip() else ""
    choices = {m.lastgroup: m.start() for m in reversed(list(_CHOICE_RE.finditer(first_sentence)))}
    for key in ("neither", "both"):
        if key in choices:
            facts["choice"] = key
            break
    else:
        if choices:
            facts["choice"] = min(choices, key=choices.get)

    hr = _HR_RE.search(low)
    if hr:
        facts["heart_rate_bpm"] = float(hr.group(1))

    for key, labels in mentions.items():
        definite = [x for x in labels if x != "unknown"]
        facts["findings"][key] = definite[0] if definite else "unknown"
    facts["event_types"] = [k for k in EVENT_TYPES if facts["findings"].get(k) == "yes"]
    return facts


# ================================================================================================
# Consistency: does a response state only what `answer` supports?
# ================================================================================================


def _truth(answer: dict, task: str) -> dict[str, str]:
    """Finding/event type -> label, from any task's answer."""
    truth: dict[str, str] = {}
    if task == "binary":
        truth[answer["finding"]] = answer["label"]
    elif task == "detection":
        for key, label in (("present", "yes"), ("absent", "no"), ("unknown", "unknown")):
            for t in answer.get(key, []):
                truth[t] = label
    elif task == "reporting":
        for k in BINARY_FINDINGS + ADVENTITIOUS:
            if k in answer:
                truth[k] = answer[k]
        for ph in PHASES:
            if ph in answer:
                truth[f"{ph} murmur"] = "yes" if answer[ph] else ("no" if answer.get("murmur") in ("yes", "no") else "unknown")
    elif task == "comparison":
        # Each recording may have its own label: a statement is fine when it matches either one.
        first, second = answer["first"], answer["second"]
        truth[answer["finding"]] = first if first == second else f"{first}|{second}"
    else:  # reasoning, differential, location
        truth.update(answer.get("findings", {}))
        if task == "reasoning" and answer.get("question") in BINARY_FINDINGS and answer.get("conclusion") in LABELS:
            truth.setdefault(answer["question"], answer["conclusion"])
    # Implications between generic and phase-specific murmur.
    if "systolic murmur" in truth or "diastolic murmur" in truth:
        phases = {truth.get("systolic murmur"), truth.get("diastolic murmur")}
        if "murmur" not in truth:
            truth["murmur"] = "yes" if "yes" in phases else ("no" if phases <= {"no", None} else "unknown")
    if truth.get("murmur") == "no":
        truth.setdefault("systolic murmur", "no")
        truth.setdefault("diastolic murmur", "no")
    return truth


def _allowed_sites(answer: dict) -> set[str]:
    sites = set()
    for key in ("site", "most_audible"):
        if isinstance(answer.get(key), str):
            sites.add(answer[key])
    sites.update(answer.get("sites") or [])
    return sites - {"unknown"}


def _descriptor_checks(facts: dict, answer: dict, problems: list[str]) -> None:
    for ph in PHASES:
        spec = answer.get(ph)
        for key in ("grade", "timing", "shape", "pitch", "quality"):
            said = facts[key][ph]
            if said is None:
                continue
            if not isinstance(spec, dict):
                problems.append(f"states a {ph} murmur {key} ({said}) but no {ph} murmur is labelled")
                continue
            truth = spec.get(key)
            if truth in (None, "unknown"):
                problems.append(f"states {ph} murmur {key} {said} but the label is unknown")
            elif str(truth) != str(said):
                problems.append(f"states {ph} murmur {key} {said} but the label is {truth}")


def check_consistency(text: str, answer: dict, task: str) -> list[str]:
    """Contradictions between a response and the answer it should state (empty list = consistent)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    extra_dx = list(answer.get("diagnosis", []) or []) + list(answer.get("candidates", []) or []) + list(answer.get("labelled", []) or [])
    if task == "reasoning" and isinstance(answer.get("conclusion"), str):
        extra_dx.append(answer["conclusion"])
    facts = extract_facts(text, diagnoses=extra_dx)
    problems: list[str] = []
    truth = _truth(answer, task)

    # 1. Findings: every statement about a finding must match its label.
    for finding, said_all in facts["mentions"].items():
        label = truth.get(finding)
        for said in dict.fromkeys(said_all):
            if label is None:
                if said != "unknown" and not (finding == "covid" and "covid-19" in extra_dx):
                    problems.append(f"states {finding} = {said} but {finding} is not labelled")
            elif said not in label.split("|"):
                problems.append(f"states {finding} = {said} but the label is {label}")

    # 2. The primary answer of each task.
    if task == "binary":
        label = answer["label"]
        stated = facts["findings"].get(answer["finding"])
        if label == "unknown":
            if not facts["unknown"]:
                problems.append("the label is unknown but the response does not say it cannot be determined")
            if facts["label"] in ("yes", "no"):
                problems.append(f"the label is unknown but the response answers {facts['label']}")
        else:
            if facts["label"] not in (None, label) and not (facts["label"] == "unknown" and stated == label):
                problems.append(f"answers {facts['label']} but the label is {label}")
            if stated is None and facts["label"] is None:
                problems.append(f"does not state whether {answer['finding']} is present")
    elif task == "detection":
        for ev in facts["events"]:
            if not any(e["type"] == ev["type"] and abs(e["start_s"] - ev["start_s"]) <= 0.051
                       and abs(e["end_s"] - ev["end_s"]) <= 0.051 for e in answer.get("events", [])):
                problems.append(f"states a {ev['type']} at {ev['start_s']}-{ev['end_s']} s that is not annotated")
        for t, timing in (answer.get("timing") or {}).items():
            ph = t.split()[0] if t in ("systolic murmur", "diastolic murmur") else None
            if ph and facts["timing"][ph] and timing != facts["timing"][ph]:
                problems.append(f"states {ph} timing {facts['timing'][ph]} but the label is {timing}")
        for ph in PHASES:
            if facts["timing"][ph] and f"{ph} murmur" not in (answer.get("timing") or {}):
                problems.append(f"states a {ph} murmur timing but no {ph} murmur is labelled")
        if not answer.get("present") and not answer.get("absent") and not facts["unknown"]:
            problems.append("nothing is labelled but the response does not say it cannot be determined")
    elif task == "reporting":
        hr = answer.get("heart_rate_bpm")
        if facts["heart_rate_bpm"] is not None:
            if not isinstance(hr, (int, float)):
                problems.append(f"states a heart rate of {facts['heart_rate_bpm']:g} bpm but none is derivable")
            elif abs(facts["heart_rate_bpm"] - hr) > 3:
                problems.append(f"states {facts['heart_rate_bpm']:g} bpm but the labels give {hr}")
        ma = answer.get("most_audible")
        if facts["most_audible"] and facts["most_audible"] != ma:
            problems.append(f"names {facts['most_audible']} as most audible but the label is {ma}")
    elif task == "differential":
        cands = answer.get("candidates", [])
        said = [d for d in facts["diagnoses"] if d in cands or d in extra_dx or d in DIAGNOSES]
        if not cands:
            if not facts["unknown"]:
                problems.append("no candidate is supported but the response does not say it cannot be determined")
        elif said[: len(cands)] != cands[: len(said)] or not said:
            problems.append(f"ranks {said} but the candidates are {cands}")
    elif task == "reasoning":
        if answer.get("conclusion") == "unknown" and not facts["unknown"]:
            problems.append("no conclusion is supported but the response does not say it cannot be determined")
    elif task == "comparison":
        truth_choice = answer["answer"]
        if truth_choice == "unknown":
            if not facts["unknown"]:
                problems.append("the comparison cannot be decided but the response does not say so")
            if facts["choice"] in ("first", "second", "both", "neither"):
                problems.append(f"chooses {facts['choice']} but the comparison cannot be decided")
        elif facts["choice"] != truth_choice:
            problems.append(f"chooses {facts['choice']} but the answer is {truth_choice}")
    if task in ("reporting", "reasoning"):
        _descriptor_checks(facts, answer, problems)
    if task == "location":
        site = answer.get("site")
        if answer.get("question") == "most_audible":
            if site == "unknown":
                if not facts["unknown"]:
                    problems.append("the most audible site is unknown but the response does not say so")
            elif (facts["most_audible"] or facts["site"]) != site:
                problems.append(f"names {facts['most_audible'] or facts['site']} but the most audible site is {site}")
        elif answer.get("question") == "murmur_where":
            murmur = answer["findings"]["murmur"]
            said = facts["label"] if facts["label"] in ("yes", "no") else facts["findings"].get("murmur")
            if murmur == "unknown":
                if not facts["unknown"]:
                    problems.append("the murmur label is unknown but the response does not say it cannot be determined")
                if said in ("yes", "no"):
                    problems.append(f"the murmur label is unknown but the response answers {said}")
            elif said != murmur:
                problems.append(f"answers murmur {said} but the label is {murmur}")
            elif murmur == "yes" and site == "unknown" and not facts["unknown"]:
                problems.append("the most audible site is unknown but the response does not say so")
            elif murmur == "yes" and site not in (None, "unknown") and (facts["most_audible"] or facts["site"]) != site:
                problems.append(f"names {facts['most_audible'] or facts['site']} but the most audible site is {site}")
        _descriptor_checks(facts, answer, problems)

    # 3. Sites and diagnoses must come from the answer.
    allowed = _allowed_sites(answer)
    for s in facts["sites"]:
        if s not in allowed:
            problems.append(f"names the {s} site, which the labels do not give")
    if task != "differential":  # differential ranks its own candidates (checked above)
        for d in facts["diagnoses"]:
            if d == "covid-19" and "covid" in truth:
                continue  # the finding "COVID-19" of a cough, not a diagnosis claim
            if d not in extra_dx:
                problems.append(f"names the diagnosis {d}, which the labels do not give")
    return list(dict.fromkeys(problems))
