"""The shipped library: every case valid under the library rules, and the coverage the project promises."""

from __future__ import annotations

from collections import Counter

import pytest

from clinic_env.cases import CaseTag, Urgency, check_cases, load_cases
from clinic_env.cases.schema import MBTI_TYPES, Speaker

CORE_SPECIALTIES = {
    "emergency",
    "cardiology",
    "respiratory",
    "gastroenterology",
    "neurology",
    "endocrinology",
    "infectious_disease",
    "paediatrics",
    "obstetrics_gynaecology",
    "psychiatry",
    "dermatology",
    "urology_nephrology",
    "rheumatology_msk",
    "ent_ophthalmology",
    "geriatrics",
}


@pytest.fixture(scope="module")
def library():
    return load_cases("builtin")


def test_every_shipped_case_meets_schema_and_library_rules():
    cases, problems = check_cases("builtin")
    assert problems == [], "\n".join(map(str, problems))
    assert len(cases) >= 100


def test_size_and_specialties(library):
    by_specialty = Counter(c.specialty.value for c in library)
    assert len(library) >= 100
    assert len(by_specialty) >= 15
    missing = CORE_SPECIALTIES - set(by_specialty)
    assert not missing, f"no cases for {sorted(missing)}"


def test_required_case_mix(library):
    emergencies = [c for c in library if c.management.disposition is Urgency.emergency]
    sensitive = [c for c in library if CaseTag.sensitive_key_fact in c.tags]
    traps = [c for c in library if CaseTag.contraindication_trap in c.tags]
    assert len(emergencies) >= 15
    assert len(sensitive) >= 10
    assert len(traps) >= 10
    # A trap must point at something the doctor can find out: at least one piece of evidence is a fact or a result.
    for c in traps:
        ids = {i for ci in c.management.contraindications for i in ci.evidence}
        assert ids, c.id


def test_ages_and_sexes(library):
    groups = Counter()
    for c in library:
        age = c.demographics.age_years
        band = "child" if age < 18 else "elderly" if age >= 65 else "adult"
        groups[(band, c.demographics.sex.value)] += 1
    for band in ("child", "adult", "elderly"):
        for sex in ("female", "male"):
            assert groups[(band, sex)] >= 3, f"too few {band} {sex} cases: {groups}"


def test_children_speak_through_a_parent_or_carer(library):
    for c in library:
        if c.demographics.age_years < 12:
            assert c.persona.speaker is not Speaker.patient, c.id
            assert c.persona.speaker_name, c.id


def test_personas_are_varied(library):
    assert set(MBTI_TYPES) <= {c.persona.mbti for c in library}, (
        "every MBTI type should appear in the library"
    )
    for field in ("health_literacy", "emotional_state", "verbosity", "patience"):
        assert len({getattr(c.persona, field) for c in library}) >= 3, field
    names = Counter(c.persona.name for c in library)
    assert names.most_common(1)[0][1] == 1, f"patient names repeat: {names.most_common(3)}"


def test_not_templated_copies(library):
    openings = Counter(c.opening_statement for c in library)
    assert openings.most_common(1)[0][1] == 1
    diagnoses = Counter(c.diagnosis.primary.lower() for c in library)
    assert diagnoses.most_common(1)[0][1] <= 2, diagnoses.most_common(3)
