"""Rubric criteria: HealthBench's shape (criterion text, integer points, tags) plus Baichuan-M2's dimensions and a
machine-checkable ``check`` for the rule verifier.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Axis(str, Enum):
    """HealthBench's axes."""

    accuracy = "accuracy"
    completeness = "completeness"
    communication_quality = "communication_quality"
    context_awareness = "context_awareness"
    instruction_following = "instruction_following"


class Dimension(str, Enum):
    """Baichuan-M2's RL dimensions for consultations."""

    diagnostic_accuracy = "diagnostic_accuracy"
    consultation_logic = "consultation_logic"
    treatment_rationality = "treatment_rationality"
    communication_empathy = "communication_empathy"
    ethics_safety = "ethics_safety"


CheckType = Literal[
    "asked",  # the doctor asked for these facts (any/all)
    "examined",  # requested these exam findings (any/all)
    "ordered",  # ordered these tests (any/all)
    "says",  # the doctor's words mention one of ``terms`` (not negated), optionally within a phase
    "says_each",  # mentions one term of every group in ``groups``
    "diagnosis_before_asking",  # gave a diagnosis before asking any of ``facts``
    "tests_beyond",  # ordered more than ``limit`` tests outside ``allowed``
    "plain_language",  # at most ``limit`` jargon words in the doctor's diagnosis/plan turns
]


class Check(BaseModel):
    """The machine-checkable part of a criterion (what the rule verifier evaluates)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: CheckType
    ids: tuple[str, ...] = ()  # facts, exams or tests
    mode: Literal["any", "all"] = "any"
    terms: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    unless: tuple[
        str, ...
    ] = ()  # "says": not met when any of these is also said (e.g. reassurance + referral)
    phase: Literal["any", "closing"] = "any"  # "closing": only the turns from the first diagnosis/plan on
    limit: int = 0
    allowed: tuple[str, ...] = ()
    polarity: Literal["affirmative", "negated", "any"] = "affirmative"  # which mentions count for "says"
    cues: tuple[str, ...] = ()  # "says": the clause must also hold one of these (e.g. recommending verbs)
    at_least: int = 0  # asked/examined/ordered: how many of ids are needed (0: per ``mode``)
    unconditional: bool = False  # "says": ignore sentences under a condition ("if you get worse, call 999")

    @model_validator(mode="after")
    def _fields_for_type(self) -> Check:
        need = {
            "asked": "ids",
            "examined": "ids",
            "ordered": "ids",
            "says": "terms",
            "says_each": "groups",
            "diagnosis_before_asking": "ids",
        }
        field = need.get(self.type)
        if field and not getattr(self, field):
            raise ValueError(f"a {self.type!r} check needs {field!r}")
        return self


class Criterion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., min_length=1)
    text: str = Field(..., min_length=1, description="What a grader reads, HealthBench style.")
    points: int = Field(..., ge=-10, le=10)
    axis: Axis
    dimension: Dimension
    check: Check | None = Field(
        None, description="Machine-checkable form; None for criteria only an LLM can grade."
    )
    tags: tuple[str, ...] = ()

    @field_validator("points")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("points must be a non-zero integer in [-10, 10]")
        return v

    @property
    def all_tags(self) -> tuple[str, ...]:
        """HealthBench-style tags: ``axis:*``, ``dimension:*``, ``level:example`` plus any extra."""
        base = (f"axis:{self.axis.value}", f"dimension:{self.dimension.value}", "level:example")
        return tuple(dict.fromkeys((*base, *self.tags)))

    def __str__(self) -> str:
        return f"[{self.points}] {self.text}"


class Rubric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    criteria: tuple[Criterion, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> Rubric:
        ids = [c.id for c in self.criteria]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate criterion ids: {sorted(dup)}")
        return self

    @property
    def max_points(self) -> int:
        return sum(c.points for c in self.criteria if c.points > 0)

    def to_healthbench(self) -> list[dict[str, Any]]:
        """The rubric as HealthBench ``rubrics`` entries."""
        return [{"criterion": c.text, "points": c.points, "tags": list(c.all_tags)} for c in self.criteria]
