"""Simulated patients: demographics, lesions and diagnoses drawn so that label relations look clinical.

Each draw takes its own `np.random.Generator` (one child seed per patient, see
`clinlm.simulate.patient_rng`), so patient *i* is the same whatever the number of patients or
worker processes. Labels are written in each dataset's own terms (CirCor "Holosystolic", "III/VI";
ICBHI "COPD"; COUGHVID "COVID-19"), because the simulator writes those datasets' native layouts.

Heart lesions set the murmur (timing, shape, pitch, quality, grade, where it is heard) the way a
textbook does: aortic stenosis is a harsh mid-systolic diamond murmur loudest at the aortic area,
mitral regurgitation a blowing holosystolic plateau at the apex (MV), a VSD a harsh holosystolic
murmur at the left lower sternal border (TV), an innocent flow murmur a soft early-systolic murmur
at the pulmonary area in children, aortic regurgitation a blowing early-diastolic decrescendo.
A louder murmur is heard at more sites: a site is listed in `Murmur locations` only when the
murmur's level there (grade level + site attenuation) is above `AUDIBLE_DB`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

HEART_SITES = ("AV", "PV", "TV", "MV")  # CirCor's order in the patient .txt

# Murmur loudness in dB relative to the RMS of S1 at the apex (the patient's loudest S1), per grade.
# Levine grades 1-6 (systolic); diastolic murmurs use 1-4 on the same scale.
GRADE_DB = {1: -20.0, 2: -14.0, 3: -8.0, 4: -3.0, 5: 1.0, 6: 4.0}
AUDIBLE_DB = -21.0  # below this (re S1 at the apex) an auscultator would not report the murmur at that site
ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}


@dataclass(frozen=True)
class Lesion:
    """A heart condition and the murmur it makes (None = no murmur)."""

    name: str  # lower-case diagnosis, the shared vocabulary's term
    prior: float  # probability among patients whose murmur status is known
    abnormal: bool  # CirCor Outcome
    phase: str | None = None  # "systolic" | "diastolic"
    timings: tuple[str, ...] = ()
    shapes: tuple[str, ...] = ()
    pitches: tuple[str, ...] = ()
    qualities: tuple[str, ...] = ()
    grades: tuple[int, ...] = ()
    site_db: dict[str, float] = field(default_factory=dict)  # attenuation per site, 0 at the loudest
    s3_prob: float = 0.0
    s4_prob: float = 0.0


LESIONS: tuple[Lesion, ...] = (
    Lesion("normal", 0.70, False, s3_prob=0.15),  # a physiological S3 is common in children
    Lesion(
        "innocent murmur", 0.11, False, "systolic", ("Early-systolic",), ("Decrescendo", "Diamond"),
        ("Low", "Medium"), ("Blowing", "Musical"), (1, 2), {"PV": 0.0, "TV": -5.0, "AV": -8.0, "MV": -10.0},
        s3_prob=0.15,
    ),
    Lesion(
        "ventricular septal defect", 0.07, True, "systolic", ("Holosystolic",), ("Plateau",),
        ("High", "Medium"), ("Harsh",), (2, 3, 3, 4), {"TV": 0.0, "MV": -4.0, "PV": -5.0, "AV": -9.0},
    ),
    Lesion(
        "mitral regurgitation", 0.05, True, "systolic", ("Holosystolic",), ("Plateau",),
        ("High",), ("Blowing",), (1, 2, 3), {"MV": 0.0, "TV": -6.0, "AV": -12.0, "PV": -14.0},
        s3_prob=0.4,
    ),
    Lesion(
        "pulmonary stenosis", 0.04, True, "systolic", ("Mid-systolic",), ("Diamond",),
        ("Medium",), ("Harsh",), (2, 3, 4), {"PV": 0.0, "AV": -5.0, "TV": -7.0, "MV": -12.0},
    ),
    Lesion(
        "aortic stenosis", 0.04, True, "systolic", ("Mid-systolic",), ("Diamond",),
        ("Medium", "High"), ("Harsh",), (2, 3, 4, 5), {"AV": 0.0, "PV": -4.0, "MV": -6.0, "TV": -8.0},
        s4_prob=0.4,
    ),
    Lesion(
        "aortic regurgitation", 0.03, True, "diastolic", ("Early-diastolic",), ("Decrescendo",),
        ("High",), ("Blowing",), (1, 2, 3), {"AV": 0.0, "TV": -3.0, "PV": -6.0, "MV": -8.0},
    ),
)
UNKNOWN_PROB = 0.06  # recordings too noisy for the annotator: CirCor "Murmur: Unknown"

# CirCor age groups (the dataset gives a group, not a number) and how often each occurs.
AGE_GROUPS = {  # name: (probability among non-pregnant, min years, max years)
    "Neonate": (0.01, 0.0, 0.075),
    "Infant": (0.21, 0.075, 1.0),
    "Child": (0.68, 1.0, 12.0),
    "Adolescent": (0.08, 12.0, 18.0),
    "Young Adult": (0.02, 18.0, 21.0),
}
PREGNANT_PROB = 0.07  # CirCor records pregnant women with Age: nan


@dataclass(frozen=True)
class Murmur:
    phase: str  # "systolic" | "diastolic"
    timing: str  # CirCor term, e.g. "Holosystolic", "Early-diastolic"
    shape: str  # "Crescendo" | "Decrescendo" | "Diamond" | "Plateau"
    pitch: str  # "Low" | "Medium" | "High"
    quality: str  # "Blowing" | "Harsh" | "Musical"
    grade: int  # Levine 1-6 (systolic) or 1-4 (diastolic)
    site_db: dict[str, float]  # level at each site in dB re S1 at the apex (grade + attenuation)

    @property
    def grading(self) -> str:  # CirCor's spelling: "III/VI" (systolic), "II/IV" (diastolic)
        return f"{ROMAN[self.grade]}/{'VI' if self.phase == 'systolic' else 'IV'}"


@dataclass
class HeartPatient:
    patient_id: str
    age_group: str | None  # CirCor group; None is written as nan (pregnant women)
    age_years: float  # hidden true age, drives heart and breathing rates
    sex: str  # "Female" | "Male"
    height_cm: float | None
    weight_kg: float | None
    pregnant: bool
    lesion: str
    murmur: Murmur | None  # the sound that is synthesised (also for "Unknown" patients)
    murmur_status: str  # "Present" | "Absent" | "Unknown": what the annotator wrote
    sites: list[str]  # recording sites in .txt order; a repeated site becomes _1/_2
    heart_rate_bpm: float
    resp_rate_hz: float
    s3: bool
    s4: bool
    abnormal: bool
    campaign: str

    @property
    def murmur_locations(self) -> list[str]:
        """Recorded sites where the murmur is audible, alphabetical like CirCor ("AV+MV+PV+TV")."""
        if self.murmur is None or self.murmur_status != "Present":
            return []
        recorded = set(self.sites)
        return sorted(s for s, db in self.murmur.site_db.items() if s in recorded and db >= AUDIBLE_DB)

    @property
    def most_audible(self) -> str | None:
        locs = self.murmur_locations
        return max(locs, key=lambda s: self.murmur.site_db[s]) if locs else None


def _choice(rng: np.random.Generator, options: tuple | list, p: list[float] | None = None):
    """One of `options`, with relative weights `p` (normalised here) or uniformly."""
    if p is not None:
        p = np.asarray(p, dtype=float) / np.sum(p)
    return options[int(rng.choice(len(options), p=p))]


def growth(age_years: float, rng: np.random.Generator) -> tuple[float, float]:
    """Rough median height (cm) and weight (kg) for a child's age, with individual spread."""
    a = age_years
    if a < 1.0:
        height, weight = 50.0 + 25.0 * a, 3.4 + 6.5 * a
    else:
        height = min(76.0 + 6.2 * (a - 1.0), 178.0)
        weight = 9.5 + 2.2 * (a - 1.0) + 0.05 * (a - 1.0) ** 2
    height *= 1.0 + 0.04 * rng.standard_normal()
    weight *= float(np.clip(1.0 + 0.12 * rng.standard_normal(), 0.7, 1.5))
    return round(height, 1), round(weight, 1)


def heart_rate_bpm(age_years: float, pregnant: bool, rng: np.random.Generator) -> float:
    """Resting heart rate (bpm) falling with age: ~140 neonate, ~95 school child, ~72 adult."""
    if pregnant:
        mean = 84.0
    elif age_years < 0.075:
        mean = 140.0
    elif age_years < 1.0:
        mean = 128.0
    elif age_years < 12.0:
        mean = 112.0 - 3.0 * (age_years - 1.0)
    else:
        mean = 76.0
    return float(np.clip(mean + 8.0 * rng.standard_normal(), 60.0, 140.0))


def resp_rate_hz(age_years: float, rng: np.random.Generator) -> float:
    """Breathing rate (Hz): ~40/min in infants, ~25/min in children, ~15/min in adults."""
    per_min = 40.0 if age_years < 1.0 else (25.0 if age_years < 12.0 else 15.0)
    return per_min * float(rng.uniform(0.85, 1.15)) / 60.0


def _draw_murmur(lesion: Lesion, rng: np.random.Generator) -> Murmur:
    grade = int(_choice(rng, lesion.grades))
    if lesion.phase == "diastolic":
        grade = min(grade, 4)
    jitter = rng.normal(0.0, 1.5, size=len(HEART_SITES))  # patient-to-patient radiation differences
    site_db = {}
    for site, j in zip(HEART_SITES, jitter):
        atten = lesion.site_db.get(site, -30.0)
        site_db[site] = GRADE_DB[grade] + (0.0 if atten == 0.0 else min(atten + float(j), -1.0))
    return Murmur(
        phase=lesion.phase,
        timing=_choice(rng, lesion.timings),
        shape=_choice(rng, lesion.shapes),
        pitch=_choice(rng, lesion.pitches),
        quality=_choice(rng, lesion.qualities),
        grade=grade,
        site_db=site_db,
    )


def _draw_sites(rng: np.random.Generator, must_have: str | None) -> list[str]:
    """Recording sites as CirCor has them: mostly all four, sometimes fewer, rarely one repeated."""
    patterns = [
        (["AV", "PV", "TV", "MV"], 0.75),
        (["AV", "MV"], 0.09),
        (["PV", "TV", "MV"], 0.07),
        (["AV", "PV", "TV"], 0.04),
        (["AV", "PV", "TV", "MV", "MV"], 0.05),  # a site recorded twice: <pid>_MV_1, <pid>_MV_2
    ]
    sites = list(_choice(rng, [s for s, _ in patterns], p=[p for _, p in patterns]))
    if must_have is not None and must_have not in sites:  # the examiner found the murmur's site
        sites.append(must_have)
        sites.sort(key=HEART_SITES.index)
    return sites


def draw_heart_patient(patient_id: str, rng: np.random.Generator) -> HeartPatient:
    unknown = bool(rng.random() < UNKNOWN_PROB)
    lesion = _choice(rng, LESIONS, p=[l.prior for l in LESIONS])

    pregnant = bool(rng.random() < PREGNANT_PROB)
    if lesion.name == "innocent murmur" and not pregnant:  # flow murmurs: children (and pregnancy)
        group = _choice(rng, ["Child", "Adolescent"], p=[0.85, 0.15])
    elif not pregnant:
        names = list(AGE_GROUPS)
        group = _choice(rng, names, p=[AGE_GROUPS[n][0] for n in names])
    if pregnant:
        age_group, age_years, sex = None, float(rng.uniform(18.0, 40.0)), "Female"
        height = round(float(rng.normal(162.0, 6.0)), 1)
        weight = round(float(rng.normal(70.0, 9.0)), 1)
    else:
        lo, hi = AGE_GROUPS[group][1:]
        age_group, age_years = group, float(rng.uniform(lo, hi))
        sex = _choice(rng, ["Female", "Male"])
        height, weight = growth(age_years, rng)
    if rng.random() < 0.1:  # CirCor has Height/Weight nan for ~12% of patients
        height, weight = None, None

    murmur = _draw_murmur(lesion, rng) if lesion.phase else None
    most = max(murmur.site_db, key=murmur.site_db.get) if murmur else None
    sites = _draw_sites(rng, most)
    hr = heart_rate_bpm(age_years, pregnant, rng)
    return HeartPatient(
        patient_id=patient_id,
        age_group=age_group,
        age_years=age_years,
        sex=sex,
        height_cm=height,
        weight_kg=weight,
        pregnant=pregnant,
        lesion=lesion.name,
        murmur=murmur,
        murmur_status="Unknown" if unknown else ("Present" if murmur else "Absent"),
        sites=sites,
        heart_rate_bpm=round(hr, 1),
        resp_rate_hz=resp_rate_hz(age_years, rng),
        s3=bool(rng.random() < lesion.s3_prob),
        s4=bool(rng.random() < lesion.s4_prob),
        abnormal=lesion.abnormal,
        campaign=_choice(rng, ["CC2014", "CC2015"], p=[0.4, 0.6]),
    )


# --------------------------------------------------------------------------- lung (ICBHI)

@dataclass(frozen=True)
class LungDiagnosis:
    name: str  # ICBHI's spelling in patient_diagnosis.csv
    prior: float
    age_range: tuple[float, float]  # years
    crackle_prob: float  # mean probability that a breathing cycle has crackles
    wheeze_prob: float  # ... wheezes
    fine_fraction: float  # share of crackling cycles whose crackles are fine (vs coarse)
    inspiration_fraction: float  # Ti / Ttot: obstructive disease prolongs expiration


LUNG_DIAGNOSES: tuple[LungDiagnosis, ...] = (
    LungDiagnosis("COPD", 0.34, (50.0, 85.0), 0.35, 0.15, 0.2, 0.30),
    LungDiagnosis("Healthy", 0.22, (0.5, 60.0), 0.02, 0.02, 0.5, 0.42),
    LungDiagnosis("URTI", 0.12, (1.0, 60.0), 0.05, 0.04, 0.5, 0.40),
    LungDiagnosis("Asthma", 0.08, (5.0, 70.0), 0.03, 0.55, 0.5, 0.33),
    LungDiagnosis("Pneumonia", 0.09, (30.0, 85.0), 0.60, 0.05, 0.6, 0.40),
    LungDiagnosis("Bronchiectasis", 0.06, (30.0, 80.0), 0.60, 0.10, 0.1, 0.38),
    LungDiagnosis("Bronchiolitis", 0.06, (0.2, 2.0), 0.40, 0.40, 0.8, 0.40),
    LungDiagnosis("LRTI", 0.03, (1.0, 12.0), 0.30, 0.10, 0.6, 0.40),
)
CHEST_SITES = ("Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr")  # ICBHI chest locations
LUNG_DEVICES = {  # ICBHI device: (probability, sample rate Hz, wav subtype, acquisition mode)
    "Meditron": (0.35, 8000, "PCM_16", "sc"),
    "LittC2SE": (0.15, 8000, "PCM_16", "mc"),
    "Litt3200": (0.15, 4000, "PCM_16", "sc"),
    "AKGC417L": (0.35, 8000, "PCM_24", "mc"),
}
RECORDING_INDICES = ("1b1", "2b2", "2b3", "1b3", "1b2", "3b3", "1p2")


@dataclass
class LungRecordingPlan:
    name: str  # ICBHI file stem: <pid>_<idx>_<site>_<mode>_<device>
    site: str
    device: str
    sample_rate: int
    subtype: str
    crackle_prob: float  # per-cycle probabilities for this recording
    wheeze_prob: float


@dataclass
class LungPatient:
    patient_id: str  # ICBHI ids are integers; the simulator uses 1001 upwards (real: 101-226)
    diagnosis: str
    age_years: float
    sex: str  # "M" | "F"
    bmi: float | None  # adults
    weight_kg: float | None  # children
    height_cm: float | None  # children
    breath_period_s: float  # mean breathing cycle length
    inspiration_fraction: float
    fine_fraction: float
    heart_rate_bpm: float
    recordings: list[LungRecordingPlan]


def draw_lung_patient(patient_id: str, rng: np.random.Generator) -> LungPatient:
    dx = _choice(rng, LUNG_DIAGNOSES, p=[d.prior for d in LUNG_DIAGNOSES])
    age = float(rng.uniform(*dx.age_range))
    age = round(age, 2) if age < 2.0 else float(int(age))
    sex = _choice(rng, ["M", "F"])
    if age >= 18.0:
        bmi, weight, height = round(float(np.clip(rng.normal(26.0, 4.5), 16.0, 45.0)), 2), None, None
    else:
        bmi = None
        height, weight = growth(age, rng)
    # Breathing cycle length 2-5 s (ICBHI: ~7-10 cycles in 20 s), shorter in children.
    period = (2.0 if age < 2 else 2.4 if age < 12 else 3.0) * float(rng.uniform(0.85, 1.25))
    period = float(np.clip(period, 2.0, 5.0))

    device = _choice(rng, list(LUNG_DEVICES), p=[v[0] for v in LUNG_DEVICES.values()])
    _, sr, subtype, mode = LUNG_DEVICES[device]
    n_rec = int(_choice(rng, [1, 2, 3], p=[0.4, 0.35, 0.25]))
    sites = [CHEST_SITES[i] for i in sorted(rng.choice(len(CHEST_SITES), size=n_rec, replace=False))]
    index = _choice(rng, RECORDING_INDICES)
    recordings = []
    for site in sites:
        # Findings cluster by recording (gamma, mean 1, shape 0.6): many COPD recordings are clean,
        # others crackle in most cycles. Calibrated on ICBHI's COPD recordings (any crackle 59%,
        # any wheeze 38%).
        c = float(np.clip(dx.crackle_prob * rng.gamma(0.6, 1 / 0.6), 0.0, 0.95))
        w = float(np.clip(dx.wheeze_prob * rng.gamma(0.6, 1 / 0.6), 0.0, 0.95))
        recordings.append(
            LungRecordingPlan(f"{patient_id}_{index}_{site}_{mode}_{device}", site, device, sr, subtype, c, w)
        )
    return LungPatient(
        patient_id=patient_id,
        diagnosis=dx.name,
        age_years=age,
        sex=sex,
        bmi=bmi,
        weight_kg=weight,
        height_cm=height,
        breath_period_s=period,
        inspiration_fraction=dx.inspiration_fraction,
        fine_fraction=dx.fine_fraction,
        heart_rate_bpm=heart_rate_bpm(age, False, rng),
        recordings=recordings,
    )


# --------------------------------------------------------------------------- cough (COUGHVID)

COUGH_STATUSES = {"healthy": 0.6, "symptomatic": 0.25, "COVID-19": 0.15}  # COUGHVID's spelling


@dataclass
class CoughSubject:
    uuid: str
    true_status: str  # drives the sound, also when the participant did not report it
    status: str | None  # as reported; None: no metadata given (COUGHVID then has only datetime, cough_detected)
    age: int | None
    gender: str | None  # "male" | "female" | "other"
    respiratory_condition: bool | None
    fever_muscle_pain: bool | None
    latitude: float | None
    longitude: float | None
    datetime_iso: str
    n_coughs: int  # 0: a recording with no cough in it (COUGHVID has many)
    cough_detected: float  # COUGHVID's classifier score, 0-1
    container: str  # "webm" | "ogg"


def draw_cough_subject(rng: np.random.Generator) -> CoughSubject:
    uid = str(uuid.UUID(bytes=rng.bytes(16), version=4))
    start = datetime(2020, 4, 1, tzinfo=timezone.utc)
    when = start + timedelta(microseconds=int(rng.integers(0, 400 * 86400 * 10**6)))
    status = _choice(rng, list(COUGH_STATUSES), p=list(COUGH_STATUSES.values()))
    n_coughs = 0 if rng.random() < 0.06 else int(rng.integers(1, 5))
    detected = float(rng.uniform(0.0, 0.3)) if n_coughs == 0 else float(rng.beta(8.0, 1.2))
    given = bool(rng.random() > 0.1)  # ~10% of COUGHVID submissions carry no metadata
    symptomatic = status != "healthy"
    located = bool(rng.random() < 0.7)
    return CoughSubject(
        uuid=uid,
        true_status=status,
        status=status if given else None,
        age=int(rng.integers(15, 81)) if given else None,
        gender=_choice(rng, ["male", "female", "other"], p=[0.6, 0.38, 0.02]) if given else None,
        respiratory_condition=bool(rng.random() < (0.35 if symptomatic else 0.08)) if given else None,
        fever_muscle_pain=bool(rng.random() < (0.45 if symptomatic else 0.04)) if given else None,
        latitude=round(float(rng.uniform(-40.0, 60.0)), 1) if given and located else None,
        longitude=round(float(rng.uniform(-120.0, 140.0)), 1) if given and located else None,
        datetime_iso=when.isoformat(),
        n_coughs=n_coughs,
        cough_detected=detected,
        container="webm" if rng.random() < 0.7 else "ogg",
    )
