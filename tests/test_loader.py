"""Loading cases: sources, the CaseSet API, and a dozen broken files that must each give the precise error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinic_env.cases import LIBRARY_DIR, Case, CaseLoadError, CaseSet, check_cases, load_cases

REFERENCE = "card-inferior-stemi-pde5"


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads(next(LIBRARY_DIR.rglob(f"{REFERENCE}.json")).read_text())


def _one(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# ------------------------------------------------------------------------------------------- sources


def test_load_from_json_jsonl_folder_and_objects(tmp_path, ref):
    a, b = dict(ref, id="case-a"), dict(ref, id="case-b")
    (tmp_path / "one.json").write_text(json.dumps(a))
    (tmp_path / "many.jsonl").write_text(json.dumps(b) + "\n\n")  # blank lines are allowed
    assert load_cases(tmp_path / "one.json").ids == ("case-a",)
    assert load_cases(str(tmp_path / "many.jsonl")).ids == ("case-b",)
    assert load_cases(tmp_path).ids == ("case-b", "case-a")  # sorted by file name: many.jsonl, one.json
    objs = load_cases([a, Case.model_validate(b)])
    assert objs.ids == ("case-a", "case-b")
    assert load_cases(objs) is objs


def test_json_file_may_hold_a_list(tmp_path, ref):
    (tmp_path / "list.json").write_text(json.dumps([dict(ref, id="x1"), dict(ref, id="x2")], indent=2))
    assert load_cases(tmp_path / "list.json").ids == ("x1", "x2")


def test_caseset_api():
    cs = load_cases("builtin")
    case = cs[REFERENCE]
    assert case in cs and REFERENCE in cs and "nope" not in cs
    assert cs.get(REFERENCE) is case
    assert isinstance(cs[:2], CaseSet) and len(cs[:2]) == min(2, len(cs))
    with pytest.raises(KeyError, match="did you mean 'card-inferior-stemi-pde5'"):
        cs.get("card-inferior-stemi")
    cardio = cs.filter(specialty="cardiology")
    assert cardio and all(c.specialty.value == "cardiology" for c in cardio)
    assert len(cs.filter(lambda c: c.is_emergency)) == sum(c.is_emergency for c in cs)


def test_bad_source_type_is_a_type_error():
    with pytest.raises(TypeError, match="cases must be 'builtin', a path"):
        load_cases(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- broken files


def test_missing_field_names_field_and_line(tmp_path, ref):
    bad = dict(ref)
    del bad["chief_complaint"]
    f = tmp_path / "missing.json"
    f.write_text(json.dumps(bad, indent=2))
    p = _one(check_cases(f)[1])
    assert (p.file, p.case_id, p.field, p.message) == (
        str(f),
        REFERENCE,
        "chief_complaint",
        "required field is missing",
    )


def test_wrong_type_points_at_the_line_of_the_field(tmp_path, ref):
    bad = json.loads(json.dumps(ref))
    bad["facts"][3]["essential"] = "very"
    f = tmp_path / "wrongtype.json"
    text = json.dumps(bad, indent=2)
    f.write_text(text)
    p = _one(check_cases(f)[1])
    assert p.field == "facts.3.essential" and "boolean" in p.message
    assert '"essential": "very"' in text.splitlines()[p.line - 1]


def test_unknown_fact_reference_in_contraindication(tmp_path, ref):
    bad = json.loads(json.dumps(ref))
    bad["management"]["contraindications"][0]["evidence"] = ["med_sildenafil", "med_tadalafil"]
    f = tmp_path / "ref.json"
    f.write_text(json.dumps(bad, indent=2))
    p = _one(check_cases(f)[1])
    assert p.field == "management.contraindications.0.evidence.1"
    assert p.message == "unknown fact/exam/test id 'med_tadalafil'"
    assert p.line is not None


def test_duplicate_fact_id(tmp_path, ref):
    bad = json.loads(json.dumps(ref))
    bad["facts"][5]["id"] = bad["facts"][2]["id"]
    f = tmp_path / "dupfact.json"
    f.write_text(json.dumps(bad, indent=2))
    problems = check_cases(f)[1]
    assert any(p.field == "facts.5.id" and "duplicate id 'pain_radiation'" in p.message for p in problems)


def test_duplicate_case_id_across_files(tmp_path, ref):
    (tmp_path / "a.json").write_text(json.dumps(ref))
    (tmp_path / "b.jsonl").write_text(json.dumps(ref) + "\n")
    p = _one(check_cases(tmp_path)[1])
    assert p.case_id == REFERENCE and p.field == "id" and "duplicate case id" in p.message
    with pytest.raises(CaseLoadError, match="duplicate case id"):
        load_cases(tmp_path)


def test_invalid_json_reports_its_line(tmp_path, ref):
    text = json.dumps(ref, indent=2).splitlines()
    i = next(
        i for i in range(10, len(text)) if text[i].endswith('",') and text[i + 1].lstrip().startswith('"')
    )
    text[i] = text[i][:-1]  # drop a comma between two object members: the error is on the next line
    f = tmp_path / "broken.json"
    f.write_text("\n".join(text))
    p = _one(check_cases(f)[1])
    assert p.message.startswith("invalid JSON") and p.line == i + 2


def test_invalid_jsonl_line_keeps_the_other_records(tmp_path, ref):
    f = tmp_path / "mixed.jsonl"
    f.write_text(json.dumps(dict(ref, id="ok-1")) + "\n{not json\n" + json.dumps(dict(ref, id="ok-2")) + "\n")
    cases, problems = check_cases(f)
    assert [c.id for c in cases] == ["ok-1", "ok-2"]
    p = _one(problems)
    assert p.line == 2 and p.message.startswith("invalid JSON")


def test_jsonl_validation_error_names_the_record_line(tmp_path, ref):
    f = tmp_path / "recs.jsonl"
    f.write_text(json.dumps(dict(ref, id="r1")) + "\n" + json.dumps(dict(ref, id="r2", acuity="mild")) + "\n")
    p = _one(check_cases(f)[1])
    assert (p.line, p.case_id, p.field) == (2, "r2", "acuity")


def test_empty_file_empty_list_and_empty_folder(tmp_path):
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    (tmp_path / "nolist.json").write_text("[]")
    (tmp_path / "nothing").mkdir()
    for name, msg in [
        ("empty.json", "file is empty"),
        ("blank.jsonl", "file is empty"),
        ("nolist.json", "empty list"),
        ("nothing", "holds no .json or .jsonl"),
    ]:
        p = _one(check_cases(tmp_path / name)[1])
        assert msg in p.message, (name, p)


def test_missing_path_and_unknown_field(tmp_path, ref):
    p = _one(check_cases(tmp_path / "nope.json")[1])
    assert p.message == "no such file or directory"
    bad = dict(ref, diagnosis_hint="MI")
    f = tmp_path / "extra.json"
    f.write_text(json.dumps(bad))
    p = _one(check_cases(f)[1])
    assert p.field == "diagnosis_hint" and "unknown field" in p.message


def test_non_object_record(tmp_path):
    f = tmp_path / "nums.jsonl"
    f.write_text("1\n")
    p = _one(check_cases(f)[1])
    assert "must be a JSON object" in p.message and p.line == 1


def test_load_error_lists_every_problem_and_returns_nothing(tmp_path, ref):
    bad = json.loads(json.dumps(ref))
    bad["persona"]["mbti"] = "ABCD"
    bad["tests"][0]["kind"] = "xray"
    f = tmp_path / "two.json"
    f.write_text(json.dumps(bad, indent=2))
    with pytest.raises(CaseLoadError) as info:
        load_cases(f)
    fields = {p.field for p in info.value.problems}
    assert fields == {"persona.mbti", "tests.0.kind"}
    assert str(f) in str(info.value)


def test_library_rules_apply_only_when_asked(tmp_path, ref):
    thin = json.loads(json.dumps(ref))
    thin["facts"] = thin["facts"][:5]
    keep = {f["id"] for f in thin["facts"]}
    thin["opening_facts"] = [i for i in thin["opening_facts"] if i in keep]
    thin["diagnosis"]["key_evidence"] = [
        i for i in thin["diagnosis"]["key_evidence"] if i in keep or i.startswith(("test", "exam"))
    ]
    for d in thin["diagnosis"]["differential"]:
        d["discriminators"] = [i for i in d["discriminators"] if i in keep or i.startswith(("test", "exam"))]
    for c in thin["management"]["contraindications"]:
        c["evidence"] = [i for i in c["evidence"] if i in keep or i.startswith(("test", "exam"))]
    for r in thin["management"]["red_flags"]:
        r["evidence"] = [i for i in r["evidence"] if i in keep or i.startswith(("test", "exam"))]
    thin["tags"] = [t for t in thin["tags"] if t != "sensitive_key_fact"]
    f = tmp_path / f"{REFERENCE}.json"
    f.write_text(json.dumps(thin))
    assert check_cases(f)[1] == []
    problems = check_cases(f, library=True)[1]
    assert any(p.field == "facts" and "library cases need at least 12" in p.message for p in problems)


def test_library_rule_catches_the_diagnosis_in_the_patients_mouth(tmp_path, ref):
    bad = json.loads(json.dumps(ref))
    bad["opening_statement"] = "I think I'm having a heart attack."
    f = tmp_path / f"{REFERENCE}.json"
    f.write_text(json.dumps(bad))
    p = _one(check_cases(f, library=True)[1])
    assert p.field == "opening_statement" and "heart attack" in p.message


def test_library_file_name_must_match_id(tmp_path, ref):
    f = tmp_path / "other-name.json"
    f.write_text(json.dumps(ref))
    p = _one(check_cases(f, library=True)[1])
    assert p.field == "id" and "must equal the case id" in p.message


def test_builtin_path_is_inside_the_package():
    assert LIBRARY_DIR.is_dir() and Path(LIBRARY_DIR).parent.name == "cases"
