"""PhysioNet/CinC Challenge 2021: 12-lead ECGs from several hospitals, in the challenge's format.

Layout (https://physionet.org/content/challenge-2021/): any folder tree of
`<record>.hea` + `<record>.mat` (`val` int16 (12, N), usually 500 Hz), where the header names
the `.mat` as its signal file (`HR06002.mat 16x1+24 1000.0(0)/mv ...`, WFDB format 16 after a
24-byte MAT header) and ends with comments:

    # Age: 29          (a number, "NaN" or "Unknown")
    # Sex: Male        (Male, Female, Unknown)
    # Dx: 426177001,426783006,713426002   SNOMED CT codes
    # Rx: / # Hx: / # Sx: Unknown

Quirk: the PTB-XL-derived records (HR...) write the unit as `mv`, the others `mV`; the header
reader matches units case-insensitively and records them as written in `metadata["channels"]`.

One Record per header:
- `record_id` / `patient_id` "physionet2021/<record>" (no patient ids in the challenge data);
  `metadata["source_database"]` from the record-name prefix (A CPSC, Q CPSC-Extra, I INCART,
  S PTB, HR PTB-XL, E Georgia, JS Chapman-Shaoxing/Ningbo).
- `codes` the Dx codes as written (`code_system` "snomed"); `statements` the names of the codes
  the challenge scores, from `SCORED` below; other codes are kept in `codes` and listed in
  `metadata["unscored_codes"]` (named nowhere here rather than guessed).
- `rhythm`: "af" (164889003) before "afl" (164890007) before another scored rhythm (sinus
  bradycardia/tachycardia/arrhythmia, bradycardia, pacing rhythm) before "normal" (426783006);
  None when no rhythm code is given.
- `age_years`, `sex`; Rx/Hx/Sx and any other comment go to `metadata["header_fields"]`.

Rejected, with the reason: an unreadable header, a missing or truncated `.mat`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from clinlm.records import Record, Reject
from clinlm.signals.ecg import EcgError
from clinlm.sources._ecg import ecg_fields

DATASET = "physionet2021"

# The 30 diagnoses the 2021 challenge scores: SNOMED CT code -> (name, abbreviation), from the
# challenge's dx_mapping_scored.csv (github.com/physionetchallenges/evaluation-2021). The
# challenge scores three pairs as one diagnosis (733534002 = 164909002 LBBB, 713427006 = 59118001
# RBBB, 284470004 = 63593006 PAC/SVPB, 427172004 = 17338001 PVC/VPB); names stay distinct here.
SCORED: dict[str, tuple[str, str]] = {
    "164889003": ("atrial fibrillation", "AF"),
    "164890007": ("atrial flutter", "AFL"),
    "6374002": ("bundle branch block", "BBB"),
    "426627000": ("bradycardia", "Brady"),
    "733534002": ("complete left bundle branch block", "CLBBB"),
    "713427006": ("complete right bundle branch block", "CRBBB"),
    "270492004": ("1st degree av block", "IAVB"),
    "713426002": ("incomplete right bundle branch block", "IRBBB"),
    "39732003": ("left axis deviation", "LAD"),
    "445118002": ("left anterior fascicular block", "LAnFB"),
    "164909002": ("left bundle branch block", "LBBB"),
    "251146004": ("low qrs voltages", "LQRSV"),
    "698252002": ("nonspecific intraventricular conduction disorder", "NSIVCB"),
    "426783006": ("sinus rhythm", "NSR"),
    "284470004": ("premature atrial contraction", "PAC"),
    "10370003": ("pacing rhythm", "PR"),
    "365413008": ("poor R wave Progression", "PRWP"),
    "427172004": ("premature ventricular contractions", "PVC"),
    "164947007": ("prolonged pr interval", "LPR"),
    "111975006": ("prolonged qt interval", "LQT"),
    "164917005": ("qwave abnormal", "QAb"),
    "47665007": ("right axis deviation", "RAD"),
    "59118001": ("right bundle branch block", "RBBB"),
    "427393009": ("sinus arrhythmia", "SA"),
    "426177001": ("sinus bradycardia", "SB"),
    "427084000": ("sinus tachycardia", "STach"),
    "63593006": ("supraventricular premature beats", "SVPB"),
    "164934002": ("t wave abnormal", "TAb"),
    "59931005": ("t wave inversion", "TInv"),
    "17338001": ("ventricular premature beats", "VPB"),
}
# Rhythm codes among the scored ones, in the order that decides `Record.rhythm` (first wins).
RHYTHMS = (
    ("164889003", "af"),
    ("164890007", "afl"),
    ("10370003", "paced"),
    ("426177001", "sinus bradycardia"),
    ("427084000", "sinus tachycardia"),
    ("427393009", "sinus arrhythmia"),
    ("426627000", "bradycardia"),
    ("426783006", "normal"),
)
SOURCES = {"A": "CPSC", "Q": "CPSC-Extra", "I": "INCART", "S": "PTB", "HR": "PTB-XL", "E": "Georgia", "JS": "Chapman-Shaoxing/Ningbo"}
SEX = {"male": "male", "female": "female", "m": "male", "f": "female"}


def read(root: Path) -> Iterator[Record | Reject]:
    root = Path(root)
    headers = sorted(root.rglob("*.hea"))
    if not headers:
        yield Reject(DATASET, str(root), "no .hea files under this folder")
        return
    for hea in headers:
        yield _record(hea)


def _record(hea: Path) -> Record | Reject:
    name = hea.stem
    rid = f"{DATASET}/{name}"
    try:
        fields, metadata, header = ecg_fields(hea)
    except EcgError as exc:
        return Reject(DATASET, str(hea), str(exc), rid)
    pairs: dict[str, str] = {}
    for line in header.comments:
        key, sep, value = line.partition(":")
        if sep:
            pairs[key.strip()] = value.strip()
    dx_text = pairs.pop("Dx", "")
    codes = [c.strip() for c in dx_text.split(",") if c.strip()]
    age_text, sex_text = pairs.pop("Age", ""), pairs.pop("Sex", "")
    age = float(age_text) if re.fullmatch(r"\d+(\.\d+)?", age_text) else None
    sex = SEX.get(sex_text.lower())
    prefix = re.match(r"[A-Z]+", name)
    if prefix and prefix.group(0) in SOURCES:
        metadata["source_database"] = SOURCES[prefix.group(0)]
    if pairs:
        metadata["header_fields"] = pairs
    unscored = [c for c in codes if c not in SCORED]
    if unscored:
        metadata["unscored_codes"] = unscored
    rhythm = next((label for code, label in RHYTHMS if code in codes), None)
    return Record(
        record_id=rid,
        patient_id=rid,
        dataset=DATASET,
        modality="ecg",
        **fields,
        age_years=age,
        sex=sex,
        codes=codes,
        code_system="snomed",
        statements=[SCORED[c][0] for c in codes if c in SCORED],
        rhythm=rhythm,
        source_labels={k: v for k, v in (("Dx", dx_text), ("Age", age_text), ("Sex", sex_text)) if v},
        metadata=metadata,
        source_path=str(hea.resolve()),
    )
