"""The case schema: round trips, immutability, the exported JSON Schema, and cross-field rules."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from clinic_env.cases import Case, case_json_schema, load_cases

from .strategies import case_dicts

SCHEMA = case_json_schema()
REFERENCE = "card-inferior-stemi-pde5"


@settings(max_examples=60, deadline=None)
@given(case_dicts())
def test_round_trip_through_json(data):
    case = Case.model_validate(data)
    text = case.model_dump_json()
    again = Case.model_validate_json(text)
    assert again == case
    assert again.model_dump(mode="json") == json.loads(text)


@settings(max_examples=30, deadline=None)
@given(case_dicts())
def test_exported_json_schema_accepts_what_the_model_dumps(data):
    dumped = Case.model_validate(data).model_dump(mode="json")
    jsonschema.validate(dumped, SCHEMA)


def test_exported_json_schema_rejects_unknown_fields():
    case = load_cases("builtin")[REFERENCE].model_dump(mode="json")
    case["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(case, SCHEMA)


def test_cases_are_immutable():
    case = load_cases("builtin")[REFERENCE]
    with pytest.raises(ValidationError):
        case.title = "changed"
    with pytest.raises(ValidationError):
        case.facts[0].essential = not case.facts[0].essential
    assert isinstance(case.facts, tuple)
    with pytest.raises(AttributeError):
        case.facts.append(case.facts[0])  # type: ignore[attr-defined]


@pytest.fixture
def good() -> dict:
    return load_cases("builtin")[REFERENCE].model_dump(mode="json")


def _errors(data: dict) -> str:
    with pytest.raises(ValidationError) as info:
        Case.model_validate(data)
    return str(info.value)


def test_pregnant_male_is_rejected(good):
    good["demographics"].update(sex="male", pregnant=True)
    assert "pregnant is true but sex is not 'female'" in _errors(good)


def test_contraindication_needs_evidence(good):
    good["management"]["contraindications"][0]["evidence"] = []
    assert "evidence" in _errors(good)


def test_points_of_reference_must_exist(good):
    bad = copy.deepcopy(good)
    bad["diagnosis"]["differential"][1]["discriminators"] = ["no_such_fact"]
    assert "unknown fact/exam/test id 'no_such_fact'" in _errors(bad)
    bad = copy.deepcopy(good)
    bad["opening_facts"] = ["test_ecg"]  # a test result is not a fact the patient can say
    assert "unknown fact id 'test_ecg'" in _errors(bad)


def test_ids_are_unique_across_facts_exam_and_tests(good):
    good["tests"][0]["id"] = good["facts"][0]["id"]
    assert "duplicate id" in _errors(good)


def test_tags_must_be_backed_by_content(good):
    for c in good["management"]["contraindications"]:
        c["evidence"] = [good["facts"][0]["id"]]
    good["management"]["contraindications"] = []
    assert "contraindication_trap" in _errors(good)


def test_enum_and_pattern_errors_name_the_value(good):
    good["persona"]["mbti"] = "XYZW"
    good["diagnosis"]["icd10"] = "heart"
    text = _errors(good)
    assert "persona.mbti" in text and "diagnosis.icd10" in text
