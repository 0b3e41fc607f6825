"""The condition knowledge base and the stratified case generator."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic_env.cases import Case, load_cases
from clinic_env.cases.generator import BAND_SHARE, GeneratorError, generate_cases
from clinic_env.cases.knowledge import (
    AGE_BANDS,
    KnowledgeBaseError,
    age_band,
    load_knowledge,
)
from clinic_env.cases.library_rules import naming_problems
from clinic_env.patient import PatientSimulator

KB = load_knowledge()
SPECIALTIES = sorted({c.specialty.value for c in KB})


def test_knowledge_base_size_and_coverage():
    assert len(KB) >= 60
    assert len(SPECIALTIES) >= 15
    for c in KB:
        assert c.management.first_line
        assert any(f.essential for f in c.features), c.id
        assert c.tests or c.exam, c.id


def test_knowledge_base_cross_references_resolve():
    assert KB.problems() == []
    for c in KB:
        for d in c.differential:
            assert d in KB.conditions


def test_knowledge_base_errors_name_file_condition_and_field(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "- id: x\n  name: X\n  icd10: nonsense\n  specialty: cardiology\n", encoding="utf-8"
    )
    with pytest.raises(KnowledgeBaseError) as e:
        load_knowledge(tmp_path)
    msg = str(e.value)
    assert "bad.yaml | x | icd10" in msg
    assert "setting" in msg  # a missing field is named too


def test_knowledge_base_rejects_unknown_differential(tmp_path):
    kb_dir = _kb_dir()
    src = next(p for p in sorted(kb_dir.glob("*.yaml")) if not p.name.startswith("_"))
    records = _yaml(src)
    records[0]["differential"] = ["no_such_condition"]
    import yaml

    (tmp_path / "one.yaml").write_text(yaml.safe_dump(records[:1]), encoding="utf-8")
    (tmp_path / "_comorbidities.yaml").write_text(
        (kb_dir / "_comorbidities.yaml").read_text(), encoding="utf-8"
    )
    with pytest.raises(KnowledgeBaseError, match="no_such_condition"):
        load_knowledge(tmp_path)


def _kb_dir():
    from clinic_env.cases.knowledge import KNOWLEDGE_DIR

    return KNOWLEDGE_DIR


def _yaml(path):
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_age_band_edges():
    assert age_band(0.5) == "infant"
    assert age_band(1.0) == "child"
    assert age_band(17.99) == "adolescent"
    assert age_band(65) == "older"
    assert age_band(101) == "very_old"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    specialty=st.sampled_from([None, *SPECIALTIES]),
    sex=st.sampled_from([None, "female", "male"]),
)
def test_every_generated_case_validates_and_never_names_the_diagnosis(n, seed, specialty, sex):
    try:
        cases = generate_cases(n, seed=seed, specialty=specialty, sex=sex)
    except GeneratorError:
        # only allowed when nothing in the specialty fits the sex (e.g. obstetrics and male)
        assert specialty is not None and sex is not None
        return
    assert len(cases) == n
    for c in cases:
        again = Case.model_validate(json.loads(c.model_dump_json()))
        assert again == c
        assert naming_problems(c) == []
        if specialty:
            assert c.specialty.value == specialty
        if sex:
            assert c.demographics.sex.value == sex
        assert c.source.kind.value == "generated"
        assert c.diagnosis.primary == KB[c.source.original_id].name


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_same_seed_same_cases(seed):
    a = [c.model_dump_json() for c in generate_cases(8, seed=seed)]
    b = [c.model_dump_json() for c in generate_cases(8, seed=seed)]
    assert a == b


def test_different_seeds_differ():
    a = [c.model_dump_json() for c in generate_cases(10, seed=1)]
    b = [c.model_dump_json() for c in generate_cases(10, seed=2)]
    assert a != b


def test_stratified_by_specialty():
    n = 5 * len(SPECIALTIES)
    counts = collections.Counter(c.specialty.value for c in generate_cases(n, seed=3))
    assert set(counts) == set(SPECIALTIES)
    assert set(counts.values()) == {5}


def test_conditions_follow_prevalence_within_a_specialty():
    spec = max(SPECIALTIES, key=lambda s: len(KB.by_specialty()[s]))
    conds = KB.by_specialty()[spec]
    weights = {
        c.id: sum(v * BAND_SHARE[b] for b, v in c.prevalence.by_age.items())
        * (c.prevalence.female + c.prevalence.male)
        / 2
        for c in conds
    }
    n = 3000
    counts = collections.Counter(c.source.original_id for c in generate_cases(n, seed=11, specialty=spec))
    z = sum(weights.values())
    for cid, w in weights.items():
        expected = n * w / z
        # binomial sd; 5 sd is far beyond sampling noise but catches a generator ignoring prevalence
        sd = (n * (w / z) * (1 - w / z)) ** 0.5
        assert abs(counts[cid] - expected) <= 5 * sd + 2, (cid, counts[cid], expected)


def test_age_and_sex_filters_and_bad_filters():
    for c in generate_cases(30, seed=5, age="65-95"):
        assert 65 <= c.demographics.age_years <= 95
    for c in generate_cases(20, seed=5, age="infant"):
        assert c.demographics.age_years < 1
        assert c.persona.speaker.value == "parent"
    with pytest.raises(GeneratorError, match="unknown specialty"):
        generate_cases(1, specialty="astrology")
    with pytest.raises(GeneratorError, match="age must be"):
        generate_cases(1, age="old")
    with pytest.raises(GeneratorError, match="sex must be"):
        generate_cases(1, sex="x")
    with pytest.raises(GeneratorError, match="no condition"):
        generate_cases(1, specialty="obstetrics_gynaecology", sex="male")
    assert generate_cases(0) == []


def test_ages_fall_in_bands_the_condition_occurs_in():
    for c in generate_cases(200, seed=9):
        cond = KB[c.source.original_id]
        assert cond.prevalence.by_age.get(age_band(c.demographics.age_years), 0) > 0
        lo, hi = AGE_BANDS[age_band(c.demographics.age_years)]
        assert lo <= c.demographics.age_years < max(hi, 96)
        if cond.prevalence.pregnancy == "required":
            assert c.demographics.pregnant and c.demographics.sex.value == "female"
            assert 16 <= c.demographics.age_years <= 45


def test_contraindications_are_backed_by_the_history():
    cases = generate_cases(400, seed=13)
    traps = [c for c in cases if c.management.contraindications]
    assert traps, "some generated cases must carry a contraindication"
    for c in traps:
        ids = {f.id for f in c.facts}
        for ci in c.management.contraindications:
            kb_ci = [
                x
                for x in KB[c.source.original_id].management.contraindications
                if x.treatment == ci.treatment
            ]
            assert kb_ci
            if all(x.when != "always" for x in kb_ci):
                assert ci.evidence and set(ci.evidence) <= ids


def test_rule_patient_answers_the_lexicon_question_for_each_generated_fact():
    """The concepts the knowledge base assigns are the ones a plain question reaches."""
    from clinic_env.wrappers import QUESTIONS

    misses, total = [], 0
    sim = PatientSimulator("rule")
    for case in generate_cases(60, seed=21):
        for f in case.facts:
            key = f.concepts[0]
            if key not in QUESTIONS or f.id in case.opening_facts or f.sensitive:
                continue
            total += 1
            sim.reset(case, np.random.default_rng(0))
            turn = sim.respond(QUESTIONS[key])
            if f.id not in turn.disclosed:
                misses.append((case.source.original_id, f.id, key))
    assert total > 100
    assert len(misses) / total < 0.05, misses[:20]


def test_generated_cases_run_in_the_environment():
    import gymnasium as gym

    cases = generate_cases(5, seed=4)
    env = gym.make("clinic_env/Consultation-v0", cases=cases, max_turns=3)
    obs, info = env.reset(seed=0)
    assert obs
    for _ in range(3):
        obs, r, term, trunc, info = env.step("Do you have any medical conditions?")
        if term or trunc:
            break
    assert "score" in info


def test_cli_generate_writes_loadable_jsonl(tmp_path):
    from typer.testing import CliRunner

    from clinic_env.cli import app

    out = tmp_path / "gen.jsonl"
    r = CliRunner().invoke(app, ["cases", "generate", "--n", "12", "--seed", "3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    cases = load_cases(out)
    assert len(cases) == 12
    first = out.read_bytes()
    r = CliRunner().invoke(app, ["cases", "generate", "--n", "12", "--seed", "3", "-o", str(out)])
    assert out.read_bytes() == first
    r = CliRunner().invoke(app, ["cases", "generate", "--n", "3", "--specialty", "astrology", "-o", str(out)])
    assert r.exit_code != 0 and "unknown specialty" in r.output
    assert out.read_bytes() == first  # a failed run leaves the earlier file intact


def test_no_generated_case_carries_its_own_condition_as_background():
    from clinic_env.cases.generator import _CONFLICTS

    for m, conds in _CONFLICTS.items():
        assert m in KB.comorbidities
        assert all(c in KB.conditions for c in conds)
    for c in generate_cases(400, seed=17):
        cond = c.source.original_id
        background = {f.id for m in KB.comorbidities.values() for f in m.features}
        own = {f.id for f in KB[cond].features}
        for m in KB.comorbidities.values():
            if m.id == cond or cond in _CONFLICTS.get(m.id, ()):
                assert not ({f.id for f in m.features} - own) & {f.id for f in c.facts}, (c.id, m.id)
        assert background  # the table is not empty
