"""The condition knowledge base: what the stratified generator builds cases from and the scripted doctor reasons with.

One YAML file per specialty under ``clinic_env/cases/knowledge/``, each a list of conditions, plus
``_comorbidities.yaml`` (background conditions a generated patient may carry). A condition holds:

- ``prevalence``: relative frequency per 100,000 consultations by age band (bands not listed cannot occur) and a
  multiplier per sex; the generator samples conditions in proportion to these weights.
- ``features``: history items, each with ``p`` = P(present | condition), the lexicon ``concept`` a doctor's
  question reaches it by, and patient wordings to choose from. ``p`` is also the likelihood the scripted doctor's
  naive-Bayes differential uses.
- ``exam`` and ``tests``: abnormal signs with their probability; anything not drawn is reported normal.
- ``management``: disposition, first-line treatment, contraindications (``when`` names the comorbidity or feature
  that makes a treatment unsafe, or ``always``), red flags.
- ``differential``: ids of other conditions it is confused with.

The numbers are rounded textbook estimates for a simulator, written in our own words from guidelines and standard
texts; they are not epidemiological data and this is research software, not for clinical use.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .schema import (
    Acuity,
    ExamSystem,
    FactCategory,
    Setting,
    Specialty,
    TestKind,
    Treatment,
    Urgency,
)

KNOWLEDGE_DIR = Path(__file__).resolve().parent / "knowledge"
_ID = r"^[a-z0-9][a-z0-9_\-]*$"

AGE_BANDS: dict[str, tuple[float, float]] = {
    "infant": (0.0, 1.0),
    "child": (1.0, 12.0),
    "adolescent": (12.0, 18.0),
    "young_adult": (18.0, 40.0),
    "middle_aged": (40.0, 65.0),
    "older": (65.0, 80.0),
    "very_old": (80.0, 95.0),
}
AgeBand = Literal["infant", "child", "adolescent", "young_adult", "middle_aged", "older", "very_old"]


def age_band(age_years: float) -> str:
    """The band an age falls in (upper bounds exclusive; 95 and over count as ``very_old``)."""
    for name, (lo, hi) in AGE_BANDS.items():
        if lo <= age_years < hi:
            return name
    return "very_old"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Prevalence(_Frozen):
    by_age: dict[AgeBand, float] = Field(
        ..., min_length=1, description="Relative frequency per 100,000 consultations in each age band."
    )
    female: float = Field(1.0, ge=0, description="Multiplier for female patients (0: never).")
    male: float = Field(1.0, ge=0, description="Multiplier for male patients (0: never).")
    pregnancy: Literal["never", "allowed", "required"] = Field(
        "allowed", description="'required' for conditions of pregnancy (women 16-45 only)."
    )
    gestation_weeks: tuple[int, int] | None = Field(
        None, description="Range of gestation (weeks) for conditions of pregnancy; default 6-36."
    )

    @model_validator(mode="after")
    def _positive(self) -> Prevalence:
        if any(v < 0 for v in self.by_age.values()):
            raise ValueError("by_age weights must be >= 0")
        if not any(v > 0 for v in self.by_age.values()):
            raise ValueError("by_age needs at least one positive weight")
        if self.female == 0 and self.male == 0:
            raise ValueError("female and male multipliers cannot both be 0")
        return self


class Feature(_Frozen):
    """A history item (symptom, past history, medication, social or family history, ...)."""

    id: str = Field(..., pattern=_ID, description="Becomes the fact id in generated cases.")
    concept: str = Field(
        ..., description="The lexicon concept a doctor's question reaches it by (clinic_env.patient.lexicon)."
    )
    extra_concepts: tuple[str, ...] = ()
    category: FactCategory
    p: float = Field(..., gt=0, le=1, description="P(present | condition).")
    say: tuple[str, ...] = Field(..., min_length=1, description="Patient wordings (first person, lay).")
    clinician: str = Field(..., min_length=1, description="The same fact in clinician wording.")
    essential: bool = Field(False, description="Needed to reach the diagnosis or a safe plan.")
    sensitive: bool = Field(False, description="Disclosed only on a direct question.")
    synonyms: tuple[str, ...] = Field((), description="Clinician phrases that ask about it.")
    lay_terms: tuple[str, ...] = Field((), description="Everyday phrases that ask about it.")


class ExamSign(_Frozen):
    id: str = Field(..., pattern=_ID)
    system: ExamSystem
    name: str = Field(..., min_length=1, description="What is examined, e.g. 'Chest auscultation'.")
    finding: str = Field(..., min_length=1, description="The abnormal finding, clinician wording.")
    p: float = Field(..., gt=0, le=1)
    synonyms: tuple[str, ...] = ()


class TestSign(_Frozen):
    id: str = Field(..., pattern=_ID)
    test: str | None = Field(
        None, description="The clinic_env.patient.lexicon.TEST_CATALOG entry it answers, when there is one."
    )
    name: str = Field(..., min_length=1)
    kind: TestKind
    value: str = Field(..., min_length=1, description="The abnormal result.")
    unit: str | None = None
    normal_range: str | None = None
    interpretation: str | None = None
    p: float = Field(..., gt=0, le=1)
    synonyms: tuple[str, ...] = ()


class KBContraindication(_Frozen):
    treatment: str = Field(..., min_length=1)
    synonyms: tuple[str, ...] = ()
    reason: str = Field(..., min_length=1)
    when: str = Field(
        "always",
        description="'always', a comorbidity id, or a feature id of this condition that makes it unsafe.",
    )
    severity: Literal["absolute", "relative"] = "absolute"


class KBRedFlag(_Frozen):
    description: str = Field(..., min_length=1)
    urgency: Urgency
    when: str | None = Field(None, description="Feature/exam/test id that shows it, if any.")


class KBManagement(_Frozen):
    disposition: Urgency
    referral: str | None = None
    first_line: tuple[Treatment, ...] = Field(..., min_length=1)
    contraindications: tuple[KBContraindication, ...] = ()
    red_flags: tuple[KBRedFlag, ...] = ()
    education: tuple[str, ...] = ()
    follow_up: str | None = None


class Condition(_Frozen):
    id: str = Field(..., pattern=_ID)
    name: str = Field(..., min_length=1)
    synonyms: tuple[str, ...] = ()
    icd10: str = Field(..., pattern=r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
    specialty: Specialty
    setting: Setting
    acuity: Acuity
    prevalence: Prevalence
    chief_complaint: str = Field(..., min_length=1, description="Clinician wording.")
    openings: tuple[str, ...] = Field(..., min_length=1, description="Opening statements (first person).")
    opening_features: tuple[str, ...] = Field(
        ..., min_length=1, description="Feature ids the opening discloses (always present)."
    )
    features: tuple[Feature, ...] = Field(..., min_length=3)
    exam: tuple[ExamSign, ...] = ()
    tests: tuple[TestSign, ...] = ()
    differential: tuple[str, ...] = Field((), description="Ids of conditions it is confused with.")
    management: KBManagement
    concerns: tuple[str, ...] = Field((), description="Worries typical patients voice, first person.")
    guidelines: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _refs(self) -> Condition:
        ids: set[str] = set()
        for item in (*self.features, *self.exam, *self.tests):
            if item.id in ids:
                raise ValueError(f"duplicate id {item.id!r}")
            ids.add(item.id)
        feature_ids = {f.id for f in self.features}
        for fid in self.opening_features:
            if fid not in feature_ids:
                raise ValueError(f"opening_features names unknown feature {fid!r}")
        for r in self.management.red_flags:
            if r.when is not None and r.when not in ids:
                raise ValueError(f"red flag {r.description!r}: 'when' names unknown item {r.when!r}")
        if self.id in self.differential:
            raise ValueError("a condition cannot be in its own differential")
        return self


class Comorbidity(_Frozen):
    """A background condition a generated patient may carry, with what it adds to the history."""

    id: str = Field(..., pattern=_ID)
    name: str
    prevalence: dict[AgeBand, float] = Field(..., description="Probability a patient in the band has it.")
    female: float = 1.0
    male: float = 1.0
    features: tuple[Feature, ...] = Field(
        ..., min_length=1, description="Facts it adds (history, medicines)."
    )
    keywords: tuple[str, ...] = Field(
        ..., min_length=1, description="Words in a patient's answer that reveal it (for agents' plans)."
    )


class KnowledgeBaseError(ValueError):
    """A knowledge-base file that does not load; the message names the file, condition and field."""


class KnowledgeBase:
    """Conditions and comorbidities, validated and cross-checked (differential ids, lexicon concepts, tests)."""

    def __init__(self, conditions: list[Condition], comorbidities: list[Comorbidity]):
        self.conditions: dict[str, Condition] = {}
        for c in conditions:
            if c.id in self.conditions:
                raise KnowledgeBaseError(f"duplicate condition id {c.id!r}")
            self.conditions[c.id] = c
        self.comorbidities: dict[str, Comorbidity] = {m.id: m for m in comorbidities}
        problems = self.problems()
        if problems:
            raise KnowledgeBaseError("knowledge base problems:\n  " + "\n  ".join(problems))

    def __len__(self) -> int:
        return len(self.conditions)

    def __iter__(self) -> Iterator[Condition]:
        return iter(self.conditions.values())

    def __getitem__(self, condition_id: str) -> Condition:
        try:
            return self.conditions[condition_id]
        except KeyError:
            raise KeyError(f"no condition {condition_id!r} in the knowledge base") from None

    def problems(self) -> list[str]:
        """Cross-references that do not resolve: differential ids, concepts, catalog tests, 'when' targets."""
        from clinic_env.patient import lexicon as lx

        known = set(lx.CONCEPTS) | set(lx.ALIASES)
        out: list[str] = []

        def check_features(owner: str, features: tuple[Feature, ...]) -> None:
            for f in features:
                for key in (f.concept, *f.extra_concepts):
                    if key not in known and not (f.synonyms or f.lay_terms):
                        out.append(
                            f"{owner}: feature {f.id!r} concept {key!r} is not in the lexicon; use a lexicon key "
                            "or give synonyms/lay_terms that ask about it"
                        )

        for c in self:
            check_features(c.id, c.features)
            for d in c.differential:
                if d not in self.conditions:
                    out.append(f"{c.id}: differential names unknown condition {d!r}")
            for t in c.tests:
                if t.test is not None and t.test not in lx.TEST_CATALOG:
                    out.append(f"{c.id}: test {t.id!r} names {t.test!r}, which is not in TEST_CATALOG")
            feature_ids = {f.id for f in c.features}
            for ci in c.management.contraindications:
                if ci.when != "always" and ci.when not in self.comorbidities and ci.when not in feature_ids:
                    out.append(
                        f"{c.id}: contraindication {ci.treatment!r} 'when' is {ci.when!r}: not 'always', a "
                        "comorbidity id or a feature id"
                    )
        for m in self.comorbidities.values():
            check_features(f"comorbidity {m.id}", m.features)
        return out

    def by_specialty(self) -> dict[str, list[Condition]]:
        out: dict[str, list[Condition]] = {}
        for c in self:
            out.setdefault(c.specialty.value, []).append(c)
        return out


def _read_yaml(path: Path) -> list[dict]:
    import yaml

    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except yaml.YAMLError as exc:
        raise KnowledgeBaseError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise KnowledgeBaseError(f"{path}: expected a list of entries at the top level")
    return data


def _parse(path: Path, records: list[dict], model: type[BaseModel]) -> list:
    out = []
    for i, rec in enumerate(records):
        name = rec.get("id", f"#{i}") if isinstance(rec, dict) else f"#{i}"
        try:
            out.append(model.model_validate(rec))
        except ValidationError as exc:
            lines = [
                f"{path.name} | {name} | {'.'.join(str(p) for p in e['loc']) or '(entry)'}: {e['msg']}"
                for e in exc.errors()
            ]
            raise KnowledgeBaseError("\n".join(lines)) from None
    return out


def load_knowledge(directory: str | Path | None = None) -> KnowledgeBase:
    """Load and check every ``*.yaml`` in ``directory`` (default: the shipped knowledge base); cached."""
    return _load(str(Path(directory).resolve()) if directory else str(KNOWLEDGE_DIR))


@functools.lru_cache(maxsize=4)
def _load(directory: str) -> KnowledgeBase:
    root = Path(directory)
    if not root.is_dir():
        raise KnowledgeBaseError(f"knowledge base folder {root} does not exist")
    conditions: list[Condition] = []
    comorbidities: list[Comorbidity] = []
    for path in sorted(root.glob("*.yaml")):
        records = _read_yaml(path)
        if path.name.startswith("_comorbidities"):
            comorbidities += _parse(path, records, Comorbidity)
        elif not path.name.startswith("_"):
            conditions += _parse(path, records, Condition)
    if not conditions:
        raise KnowledgeBaseError(f"no conditions found in {root}")
    return KnowledgeBase(conditions, comorbidities)
