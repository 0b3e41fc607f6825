"""The case schema: one clinical consultation scenario, immutable and strictly validated.

A :class:`Case` holds everything the environment needs for one consultation:

* who the patient is (:class:`Demographics`, :class:`Persona`) and how they open (``opening_statement``);
* what they know and can tell when asked (:class:`Fact`), with flags for the Fact Unit's disclosure policy
  (``essential``, ``sensitive``, ``pertinent_negative``);
* what the examiner returns (:class:`ExamFinding`, :class:`TestResult`);
* the answer key for the reward (:class:`Diagnosis` with a :class:`Differential`, :class:`Management` with
  contraindications, red flags and the required disposition urgency).

Validation is strict and referential: ids are unique across facts, findings and results; every id a case cites
(opening facts, discriminators, contraindication evidence, red-flag evidence) must exist. Library-only minimums
(facts per case and so on) live in :mod:`clinic_env.cases.library_rules`, so imported cases with thinner records
still validate here.

All containers are tuples and every model is frozen, so a loaded case cannot be changed by accident.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1

_ID = r"^[a-z0-9][a-z0-9_\-]*$"
_CONCEPT = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
_ICD10 = r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, use_enum_values=False)


class Specialty(str, Enum):
    emergency = "emergency"
    cardiology = "cardiology"
    respiratory = "respiratory"
    gastroenterology = "gastroenterology"
    neurology = "neurology"
    endocrinology = "endocrinology"
    infectious_disease = "infectious_disease"
    paediatrics = "paediatrics"
    obstetrics_gynaecology = "obstetrics_gynaecology"
    psychiatry = "psychiatry"
    dermatology = "dermatology"
    urology_nephrology = "urology_nephrology"
    rheumatology_msk = "rheumatology_msk"
    ent_ophthalmology = "ent_ophthalmology"
    geriatrics = "geriatrics"
    haematology = "haematology"
    oncology = "oncology"
    general_practice = "general_practice"
    general_medicine = "general_medicine"


class Setting(str, Enum):
    outpatient = "outpatient"
    emergency = "emergency"
    telehealth = "telehealth"
    inpatient = "inpatient"


class Acuity(str, Enum):
    """How ill the patient is at presentation (triage-style)."""

    low = "low"
    moderate = "moderate"
    high = "high"
    critical = "critical"


class Urgency(str, Enum):
    """Where and how fast the patient must be seen. Ordered: self_care < routine < urgent < emergency."""

    self_care = "self_care"
    routine = "routine"
    urgent = "urgent"
    emergency = "emergency"

    @property
    def rank(self) -> int:
        return _URGENCY_RANK[self]


_URGENCY_RANK = {Urgency.self_care: 0, Urgency.routine: 1, Urgency.urgent: 2, Urgency.emergency: 3}


class Sex(str, Enum):
    female = "female"
    male = "male"


class Level(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"


MBTI_TYPES = tuple(a + b + c + d for a in "EI" for b in "SN" for c in "TF" for d in "JP")
MBTIType = Literal[
    "ESTJ",
    "ESTP",
    "ESFJ",
    "ESFP",
    "ENTJ",
    "ENTP",
    "ENFJ",
    "ENFP",
    "ISTJ",
    "ISTP",
    "ISFJ",
    "ISFP",
    "INTJ",
    "INTP",
    "INFJ",
    "INFP",
]


class EmotionalState(str, Enum):
    calm = "calm"
    anxious = "anxious"
    frightened = "frightened"
    irritable = "irritable"
    low_mood = "low_mood"
    embarrassed = "embarrassed"
    distressed = "distressed"
    in_pain = "in_pain"
    confused = "confused"


class Verbosity(str, Enum):
    terse = "terse"
    average = "average"
    verbose = "verbose"


class Speaker(str, Enum):
    """Who answers the doctor: the patient, or a parent/carer/partner for children and some elderly patients."""

    patient = "patient"
    parent = "parent"
    carer = "carer"
    partner = "partner"


class FactCategory(str, Enum):
    hpi = "hpi"  # history of the presenting illness: onset, character, timing, course
    symptom = "symptom"  # an associated symptom
    ros = "ros"  # review of systems
    pmh = "pmh"  # past medical and surgical history
    medication = "medication"
    allergy = "allergy"
    family = "family"
    social = "social"  # occupation, living situation, diet, activity, travel
    sexual = "sexual"
    substance = "substance"  # tobacco, alcohol, drugs
    obstetric = "obstetric"  # menstrual, obstetric and contraceptive history
    developmental = "developmental"  # paediatric growth, development, immunisation, feeding
    psychosocial = "psychosocial"  # mood, stressors, safety at home, self-harm
    ice = "ice"  # the patient's ideas, concerns and expectations


class ExamSystem(str, Enum):
    general = "general"
    vitals = "vitals"
    cardiovascular = "cardiovascular"
    respiratory = "respiratory"
    abdominal = "abdominal"
    neurological = "neurological"
    musculoskeletal = "musculoskeletal"
    skin = "skin"
    head_neck = "head_neck"
    ent = "ent"
    eye = "eye"
    genitourinary = "genitourinary"
    pelvic = "pelvic"
    breast = "breast"
    lymphatic = "lymphatic"
    mental_state = "mental_state"
    obstetric = "obstetric"


class TestKind(str, Enum):
    lab = "lab"
    imaging = "imaging"
    ecg = "ecg"
    bedside = "bedside"  # urine dipstick, capillary glucose, pregnancy test, peak flow
    microbiology = "microbiology"
    pathology = "pathology"
    physiology = "physiology"  # spirometry, nerve conduction, EEG
    other = "other"


class CaseTag(str, Enum):
    """Controlled labels used for stratification and the library's coverage counts."""

    contraindication_trap = "contraindication_trap"  # the usual first-line choice is unsafe for this patient
    sensitive_key_fact = "sensitive_key_fact"  # a sensitive fact changes the diagnosis or management
    red_flag = "red_flag"  # a red flag the doctor must recognise
    safeguarding = "safeguarding"  # child or adult protection, domestic violence
    atypical_presentation = "atypical_presentation"
    multimorbidity = "multimorbidity"
    language_barrier = "language_barrier"


class SourceKind(str, Enum):
    authored = "authored"
    imported = "imported"
    generated = "generated"


class Source(_Frozen):
    kind: SourceKind = SourceKind.authored
    name: str = Field(
        "clinic-env", description="Who wrote it or where it came from, e.g. 'AgentClinic MedQA'."
    )
    licence: str = Field("Apache-2.0", description="Licence of the case content.")
    original_id: str | None = Field(None, description="Record id in the source dataset, for imported cases.")
    url: str | None = None


class Demographics(_Frozen):
    age_years: float = Field(
        ..., ge=0, le=120, description="Age in years; fractions for infants (0.5 = 6 months)."
    )
    sex: Sex
    pregnant: bool | None = Field(
        None, description="Pregnancy status where relevant; None when not applicable."
    )
    gestation_weeks: int | None = Field(None, ge=1, le=44)
    ethnicity: str | None = None

    @model_validator(mode="after")
    def _pregnancy_consistent(self) -> Demographics:
        if self.pregnant and self.sex is not Sex.female:
            raise ValueError("pregnant is true but sex is not 'female'")
        if self.gestation_weeks is not None and not self.pregnant:
            raise ValueError("gestation_weeks is set but pregnant is not true")
        return self

    @property
    def age_band(self) -> str:
        a = self.age_years
        if a < 1:
            return "infant (<1)"
        if a < 12:
            return "child (1-11)"
        if a < 18:
            return "adolescent (12-17)"
        if a < 40:
            return "adult (18-39)"
        if a < 65:
            return "adult (40-64)"
        if a < 80:
            return "older (65-79)"
        return "elderly (80+)"


class Persona(_Frozen):
    """How the person in the consultation behaves; drives the Affective Unit and the Termination Gate."""

    name: str = Field(..., min_length=1, description="The patient's name.")
    speaker: Speaker = Field(Speaker.patient, description="Who answers the doctor.")
    speaker_name: str | None = Field(
        None, description="Name of the parent/carer/partner when speaker is not the patient."
    )
    mbti: MBTIType
    health_literacy: Level
    emotional_state: EmotionalState
    verbosity: Verbosity = Verbosity.average
    patience: Level = Field(
        Level.medium, description="How long they tolerate repetition or a long consultation."
    )
    occupation: str | None = None
    education: str | None = None
    socioeconomic: Level = Level.medium
    cost_concerns: bool = False
    prefers_evidence: bool = False
    cultural_notes: str | None = None
    language_notes: str | None = None
    concerns: tuple[str, ...] = Field((), description="Worries the patient holds, first person.")
    requests: tuple[str, ...] = Field(
        (), description="Explicit requests the doctor should answer, first person."
    )

    @model_validator(mode="after")
    def _speaker_named(self) -> Persona:
        if self.speaker is not Speaker.patient and not self.speaker_name:
            raise ValueError(f"speaker is '{self.speaker.value}' but speaker_name is missing")
        return self


class Fact(_Frozen):
    """One atomic piece of history the patient (or informant) can tell when asked."""

    id: str = Field(..., pattern=_ID)
    category: FactCategory
    concepts: tuple[str, ...] = Field(
        ..., min_length=1, description="Concept keys the fact answers, e.g. 'pain.radiation'."
    )
    synonyms: tuple[str, ...] = Field(
        (), description="Clinician phrases and abbreviations that ask about this fact."
    )
    lay_terms: tuple[str, ...] = Field((), description="Everyday phrases that ask about this fact.")
    patient_text: str = Field(..., min_length=1, description="What the patient says, first person.")
    clinician_text: str = Field(
        ..., min_length=1, description="The same fact as a clinician would record it."
    )
    essential: bool = Field(False, description="Needed to reach the diagnosis or a safe plan.")
    sensitive: bool = Field(
        False, description="Only disclosed on a direct question (sexual, substance, violence, mental health)."
    )
    pertinent_negative: bool = Field(
        False, description="A relevant 'no' (e.g. no fever); rendered as a denial."
    )

    @field_validator("concepts")
    @classmethod
    def _concept_keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for key in v:
            if not re.match(_CONCEPT, key):
                raise ValueError(
                    f"concept key {key!r} must be lower snake_case, dot-separated (e.g. 'pain.onset')"
                )
        return v


class ExamFinding(_Frozen):
    id: str = Field(..., pattern=_ID)
    system: ExamSystem
    name: str = Field(
        ..., min_length=1, description="The manoeuvre or observation, e.g. 'Chest auscultation'."
    )
    synonyms: tuple[str, ...] = Field((), description="Ways a doctor asks for it ('listen to your chest').")
    finding: str = Field(..., min_length=1, description="The result in clinician wording.")
    abnormal: bool


class TestResult(_Frozen):
    id: str = Field(..., pattern=_ID)
    name: str = Field(..., min_length=1, description="The test, e.g. 'High-sensitivity troponin I'.")
    kind: TestKind
    synonyms: tuple[str, ...] = Field((), description="Names and abbreviations a doctor may order it by.")
    value: str = Field(..., min_length=1, description="The result: a number or a report.")
    unit: str | None = None
    normal_range: str | None = None
    abnormal: bool
    interpretation: str | None = Field(None, description="A clinician's one-line reading of the result.")


class DifferentialItem(_Frozen):
    name: str = Field(..., min_length=1)
    icd10: str | None = Field(None, pattern=_ICD10)
    discriminators: tuple[str, ...] = Field(
        (), description="Ids of facts, findings or results that separate this from the primary diagnosis."
    )
    reasoning: str = Field(..., min_length=1, description="Why it is considered and what tells it apart.")


class Diagnosis(_Frozen):
    primary: str = Field(..., min_length=1)
    synonyms: tuple[str, ...] = Field((), description="Other accepted names, abbreviations included.")
    icd10: str = Field(..., pattern=_ICD10)
    key_evidence: tuple[str, ...] = Field(
        (), description="Ids of the facts, findings and results that establish it."
    )
    differential: tuple[DifferentialItem, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.primary, *self.synonyms)


class Treatment(_Frozen):
    name: str = Field(..., min_length=1)
    detail: str | None = Field(None, description="Dose, route, duration or setting.")
    synonyms: tuple[str, ...] = Field((), description="Other names (brand, class) a doctor may use.")


class Contraindication(_Frozen):
    treatment: str = Field(..., min_length=1, description="What must not be given or done.")
    synonyms: tuple[str, ...] = Field(
        (), description="Other names of the same treatment (brands, class members)."
    )
    reason: str = Field(..., min_length=1)
    evidence: tuple[str, ...] = Field(
        ..., min_length=1, description="Ids of the facts (or findings/results) that make it contraindicated."
    )
    severity: Literal["absolute", "relative"] = "absolute"


class RedFlag(_Frozen):
    description: str = Field(..., min_length=1)
    urgency: Urgency
    evidence: tuple[str, ...] = Field(
        (), description="Ids of facts/findings/results that show it in this case, if present."
    )


class Management(_Frozen):
    disposition: Urgency = Field(..., description="The urgency this consultation must end with.")
    referral: str | None = Field(None, description="Where to, when the disposition needs a referral.")
    first_line: tuple[Treatment, ...] = Field(..., min_length=1)
    contraindications: tuple[Contraindication, ...] = ()
    red_flags: tuple[RedFlag, ...] = ()
    education: tuple[str, ...] = ()
    follow_up: str | None = None


class Case(_Frozen):
    """One consultation scenario. See the module docstring for the contract."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str = Field(..., pattern=_ID, description="Unique id; for library files it equals the file name.")
    title: str = Field(..., min_length=1)
    specialty: Specialty
    setting: Setting
    language: str = Field(
        "en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", description="BCP-47 language tag."
    )
    acuity: Acuity
    source: Source = Source()
    guidelines: tuple[str, ...] = Field((), description="Guideline families the answer key follows.")
    tags: tuple[CaseTag, ...] = ()

    demographics: Demographics
    persona: Persona
    chief_complaint: str = Field(
        ..., min_length=1, description="Clinician wording, e.g. 'central chest pain for 2 hours'."
    )
    opening_statement: str = Field(
        ..., min_length=1, description="What the patient says first, first person."
    )
    opening_facts: tuple[str, ...] = Field(
        (), description="Ids of facts the opening statement already discloses."
    )

    facts: tuple[Fact, ...] = Field(..., min_length=1)
    exam: tuple[ExamFinding, ...] = ()
    tests: tuple[TestResult, ...] = ()
    diagnosis: Diagnosis
    management: Management
    extra: dict[str, Any] = Field(default_factory=dict, description="Source fields an importer did not map.")

    @model_validator(mode="after")
    def _referential_integrity(self) -> Case:
        problems = reference_problems(self)
        if problems:
            raise CaseReferenceError(problems)
        return self

    # Convenience views (cheap; no parsing).
    @property
    def fact_by_id(self) -> dict[str, Fact]:
        return {f.id: f for f in self.facts}

    @property
    def essential_facts(self) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts if f.essential)

    @property
    def is_emergency(self) -> bool:
        return self.management.disposition is Urgency.emergency


class CaseReferenceError(ValueError):
    """Cross-field problems in one case, each as ``(field path, message)``; the loader reports them one by one."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


def reference_problems(case: Case) -> list[tuple[str, str]]:
    """Duplicate ids, dangling references and inconsistent tags in a structurally valid case."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for section, items in (("facts", case.facts), ("exam", case.exam), ("tests", case.tests)):
        for i, item in enumerate(items):
            if item.id in seen:
                problems.append(
                    (f"{section}.{i}.id", f"duplicate id {item.id!r} (already used at {seen[item.id]})")
                )
            else:
                seen[item.id] = f"{section}.{i}"
    fact_ids = {f.id for f in case.facts}

    def check(path: str, ids: tuple[str, ...], allowed: set[str] | dict[str, str], what: str) -> None:
        for j, ref in enumerate(ids):
            if ref not in allowed:
                problems.append((f"{path}.{j}", f"unknown {what} id {ref!r}"))

    check("opening_facts", case.opening_facts, fact_ids, "fact")
    check("diagnosis.key_evidence", case.diagnosis.key_evidence, seen, "fact/exam/test")
    for i, d in enumerate(case.diagnosis.differential):
        check(f"diagnosis.differential.{i}.discriminators", d.discriminators, seen, "fact/exam/test")
    for i, c in enumerate(case.management.contraindications):
        check(f"management.contraindications.{i}.evidence", c.evidence, seen, "fact/exam/test")
    for i, r in enumerate(case.management.red_flags):
        check(f"management.red_flags.{i}.evidence", r.evidence, seen, "fact/exam/test")
    if len(set(case.tags)) != len(case.tags):
        problems.append(("tags", "duplicate tag"))
    if CaseTag.contraindication_trap in case.tags and not case.management.contraindications:
        problems.append(
            ("tags", "'contraindication_trap' needs at least one management.contraindications entry")
        )
    if CaseTag.sensitive_key_fact in case.tags and not any(f.sensitive and f.essential for f in case.facts):
        problems.append(("tags", "'sensitive_key_fact' needs a fact that is both sensitive and essential"))
    return problems


def case_json_schema() -> dict[str, Any]:
    """The JSON Schema of a case (what `clinic-env cases schema` prints)."""
    schema = Case.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "clinic-env Case"
    return schema
