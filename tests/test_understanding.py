"""Understanding a doctor's turn (issue 3): the general rules added from the larger dev set, and that set itself.

Each test pins one rule on a library case with a question a doctor would ask; none of these questions is in the
test split of ``tests/data/doctor_questions.jsonl`` (those cases are never used here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import clinic_env
from clinic_env.patient.understanding import compile_case

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cases():
    return clinic_env.load_cases("builtin")


def parse(cases, case_id: str, text: str):
    return compile_case(cases[case_id]).parse(text)


def test_parent_key_reaches_child_facts_only_when_no_fact_holds_it(cases):
    # "headache" is held by the headache-features fact; the aura-frequency fact holds only "headache.frequency".
    i = parse(cases, "neuro-migraine-aura-combined-pill", "Do you get headaches?")
    assert "headache_features" in i.facts
    assert "aura_onset_frequency" not in i.facts and "headache_history" not in i.facts


def test_a_named_fact_narrows_a_shared_concept_in_its_sentence(cases):
    i = parse(cases, "resp-copd-infective-exacerbation", "Which inhalers and tablets do you take?")
    assert i.facts == ("meds_regular",)
    # Without a naming phrase the shared concept still reaches its facts.
    assert (
        "meds_regular" in parse(cases, "resp-copd-infective-exacerbation", "What tablets do you take?").facts
    )


def test_family_question_keeps_a_non_family_fact_that_records_family_history(cases):
    i = parse(
        cases,
        "neuro-first-seizure-young-driver",
        "Have you ever fainted or had palpitations, or has anyone in the family died suddenly?",
    )
    assert i.facts == ("no_cardiac_symptoms",)


def test_a_broad_question_does_not_reach_a_sensitive_fact_through_a_parent_key(cases):
    # The sertraline fact is sensitive and keyed "medications.new": a plain medicines question must not reach it.
    i = parse(cases, "geri-hyponatraemia-thiazide-ssri", "What medicines does she take?")
    assert "ssri_for_grief" not in i.facts
    direct = parse(cases, "geri-hyponatraemia-thiazide-ssri", "Has she been started on an antidepressant?")
    assert "ssri_for_grief" in direct.facts


def test_a_statement_naming_tests_orders_them_without_a_verb(cases):
    i = parse(
        cases,
        "obgyn-ruptured-ectopic-pregnancy",
        "Urgent urine pregnancy test, group and crossmatch, and a full blood count.",
    )
    assert set(i.tests) == {"test_urine_hcg", "test_group", "test_fbc"}
    assert i.facts == ()


def test_a_question_about_a_past_test_orders_nothing(cases):
    i = parse(cases, "id-pulmonary-tb-recent-migrant", "Have you ever had an HIV test?")
    assert i.tests == () and i.catalog_tests == ()
    assert "hiv_never_tested" in i.facts


def test_an_order_cue_nested_in_a_test_name_still_counts(cases):
    # "dip" is both an order verb and a phrase of urinalysis, nested in "dip his urine".
    i = parse(cases, "uro-testicular-torsion", "Can we dip his urine while I call the surgeons?")
    assert i.tests == ("test_urinalysis",)


def test_plural_u_and_es_orders_the_kidney_bloods(cases):
    i = parse(cases, "psych-lithium-toxicity-nsaid-ace-inhibitor", "Urgent lithium level and U&Es, please.")
    assert set(i.tests) == {"test_lithium", "test_ue"}


def test_a_named_exam_is_not_widened_to_every_exam_of_its_system(cases):
    i = parse(cases, "ent-peritonsillar-abscess", "Let me have a look in your ears.")
    assert i.exams == ("exam_ears",)


def test_examination_spelling_meets_exam_phrases(cases):
    i = parse(cases, "em-cauda-equina-syndrome", "I'd like to do a rectal examination.")
    assert "exam_pr" in i.exams


def test_testing_power_does_not_examine_the_genitals(cases):
    # "testes" stems to "test": it must not name the genitals.
    i = parse(cases, "em-cauda-equina-syndrome", "Let me examine you and test the power in your legs.")
    assert "exam_neuro" in i.exams and "exam_pr" not in i.exams


def test_drinking_water_is_not_alcohol(cases):
    i = parse(cases, "uro-renal-colic-ureteric-stone", "How much water do you drink in a day?")
    assert i.facts == ("fluid_diet",)
    assert "social" in parse(cases, "uro-renal-colic-ureteric-stone", "Do you smoke or drink?").facts


def test_allergy_to_drugs_is_not_recreational_drug_use(cases):
    i = parse(cases, "neuro-first-seizure-young-driver", "Are you allergic to any drugs?")
    assert i.facts == ("allergies",)


def _rows(name: str) -> list[dict]:
    return [
        json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def test_dev2_set_is_large_labelled_and_disjoint_from_test_cases(cases):
    dev2 = _rows("doctor_questions_dev2.jsonl")
    assert len(dev2) >= 300
    test_cases = {q["case_id"] for q in _rows("doctor_questions.jsonl") if q["split"] == "test"}
    for q in dev2:
        assert q["split"] == "dev" and q["case_id"] not in test_cases
        case = cases[q["case_id"]]
        assert set(q["facts"]) <= {f.id for f in case.facts}, q
        assert set(q["exams"]) <= {e.id for e in case.exam}, q
        assert set(q["tests"]) <= {t.id for t in case.tests}, q
    assert len({(q["case_id"], q["question"]) for q in dev2}) == len(dev2)


def test_benchmark_refuses_dev2_questions_on_test_cases(cases, tmp_path, monkeypatch):
    import benchmarks.patient_understanding as pu

    leaked = {
        "case_id": "card-inferior-stemi-pde5",
        "question": "Any allergies?",
        "facts": [],
        "split": "dev",
    }
    path = tmp_path / "dev2.jsonl"
    path.write_text(json.dumps(leaked) + "\n", encoding="utf-8")
    monkeypatch.setattr(pu, "DEV2", path)
    with pytest.raises(ValueError, match="test-split cases"):
        pu.load_splits(cases)
