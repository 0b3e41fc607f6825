"""What every importer shares: the per-record context and error, and the *draft* a source record is turned into.

A format converter reads one source record and fills a :class:`Draft` with what it found, mostly verbatim:
history statements (whole sections or single items), exam findings, test results, the diagnosis and its
alternatives. :func:`clinic_env.cases.importers.assemble.assemble` then does what is common to all formats:
atomic facts, categories, concept keys, first-person wording, essential facts, the examiner's entries, a default
persona and the inferred specialty, acuity and setting, and validates the result as a :class:`~clinic_env.cases.Case`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..schema import ExamSystem, FactCategory, Specialty, TestKind


class RecordError(ValueError):
    """One source record cannot be imported; ``field`` names the source field at fault when there is one."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class RecordContext:
    """Where a record came from: the file's name, its line, and the case-id prefix to use."""

    file: str
    line: int
    prefix: str
    default_sex: str | None = None  # used (and recorded as a placeholder) when a record does not say

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class HistoryItem:
    """History as the source gives it: a section's prose (split later) or one item of a list."""

    text: str
    category: FactCategory
    section: str = ""
    patient_text: str | None = None  # first-person wording already known (LLM output)
    negative: bool = False  # already known to be a pertinent negative
    symptom: bool = False  # an item of a symptom list: presenting features, essential
    primary: bool = False  # the presenting complaint: essential and said in the opening
    atomic: bool = False  # already one fact: do not split into sentences
    fixed_category: bool = False  # keep ``category`` as given


@dataclass
class ExamItem:
    name: str
    finding: str
    system: ExamSystem | None = None
    abnormal: bool | None = None
    synonyms: tuple[str, ...] = ()


@dataclass
class TestItem:
    name: str
    value: str
    kind: TestKind | None = None
    abnormal: bool | None = None
    synonyms: tuple[str, ...] = ()


@dataclass
class Draft:
    """Everything a converter found in one record, before the shared assembly rules run."""

    case_id: str
    source: dict[str, Any]
    age_years: float
    sex: str  # "female" | "male"
    diagnosis: str
    chief_complaint: str
    history: list[HistoryItem] = field(default_factory=list)
    exam: list[ExamItem] = field(default_factory=list)
    tests: list[TestItem] = field(default_factory=list)
    diagnosis_synonyms: list[str] = field(default_factory=list)
    differential: list[str] = field(default_factory=list)
    differential_reason: str = "An alternative answer offered by the source's multiple-choice question."
    treatments: list[str] = field(default_factory=list)
    title: str | None = None
    opening: str | None = None  # first-person opening when the source gives one
    speaker: str = "patient"
    pregnant: bool | None = None
    gestation_weeks: int | None = None
    ethnicity: str | None = None
    occupation: str | None = None
    specialty: Specialty | None = None  # when the source says
    narrative: str = ""  # all source prose, for inferring setting and acuity
    extra: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, list[Any]] = field(default_factory=dict)

    def note(self, kind: str, value: Any) -> None:
        """Record what the importer inferred, filled in with a placeholder, skipped or redacted."""
        self.notes.setdefault(kind, []).append(value)
