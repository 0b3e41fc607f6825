"""Hypothesis strategies that build valid case dicts (every reference points at an existing id)."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from clinic_env.cases.schema import (
    MBTI_TYPES,
    Acuity,
    CaseTag,
    EmotionalState,
    ExamSystem,
    FactCategory,
    Level,
    Setting,
    Specialty,
    TestKind,
    Urgency,
    Verbosity,
)

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() == s and s != "")
_ident = st.text(alphabet=string.ascii_lowercase + string.digits + "_", min_size=1, max_size=12).map(
    lambda s: "x" + s
)
_concept = st.lists(
    st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8), min_size=1, max_size=3
).map(lambda parts: "c" + ".".join(parts))


def _values(enum):
    return st.sampled_from([e.value for e in enum])


@st.composite
def case_dicts(draw) -> dict:
    ids = draw(st.lists(_ident, min_size=3, max_size=12, unique=True))
    n_facts = draw(st.integers(1, len(ids) - 2))
    n_exam = draw(st.integers(1, len(ids) - n_facts - 1))
    fact_ids, exam_ids, test_ids = ids[:n_facts], ids[n_facts : n_facts + n_exam], ids[n_facts + n_exam :]
    any_id = st.sampled_from(ids)
    facts = [
        {
            "id": fid,
            "category": draw(_values(FactCategory)),
            "concepts": draw(st.lists(_concept, min_size=1, max_size=3)),
            "synonyms": draw(st.lists(_text, max_size=3)),
            "lay_terms": draw(st.lists(_text, max_size=2)),
            "patient_text": draw(_text),
            "clinician_text": draw(_text),
            "essential": draw(st.booleans()),
            "sensitive": draw(st.booleans()),
            "pertinent_negative": draw(st.booleans()),
        }
        for fid in fact_ids
    ]
    exam = [
        {
            "id": eid,
            "system": draw(_values(ExamSystem)),
            "name": draw(_text),
            "synonyms": draw(st.lists(_text, max_size=2)),
            "finding": draw(_text),
            "abnormal": draw(st.booleans()),
        }
        for eid in exam_ids
    ]
    tests = [
        {
            "id": tid,
            "name": draw(_text),
            "kind": draw(_values(TestKind)),
            "value": draw(_text),
            "unit": draw(st.none() | _text),
            "normal_range": draw(st.none() | _text),
            "abnormal": draw(st.booleans()),
        }
        for tid in test_ids
    ]
    sex = draw(st.sampled_from(["female", "male"]))
    pregnant = (
        draw(st.sampled_from([None, False, True]))
        if sex == "female"
        else draw(st.sampled_from([None, False]))
    )
    demo = {"age_years": draw(st.floats(0, 120, allow_nan=False)), "sex": sex, "pregnant": pregnant}
    if pregnant:
        demo["gestation_weeks"] = draw(st.integers(1, 44))
    contraindications = draw(
        st.lists(
            st.fixed_dictionaries(
                {"treatment": _text, "reason": _text, "evidence": st.lists(any_id, min_size=1, max_size=3)}
            ),
            max_size=2,
        )
    )
    tags = []
    if contraindications and draw(st.booleans()):
        tags.append(CaseTag.contraindication_trap.value)
    return {
        "id": draw(_ident),
        "title": draw(_text),
        "specialty": draw(_values(Specialty)),
        "setting": draw(_values(Setting)),
        "acuity": draw(_values(Acuity)),
        "guidelines": draw(st.lists(_text, max_size=2)),
        "tags": tags,
        "demographics": demo,
        "persona": {
            "name": draw(_text),
            "mbti": draw(st.sampled_from(MBTI_TYPES)),
            "health_literacy": draw(_values(Level)),
            "emotional_state": draw(_values(EmotionalState)),
            "verbosity": draw(_values(Verbosity)),
            "concerns": draw(st.lists(_text, max_size=2)),
        },
        "chief_complaint": draw(_text),
        "opening_statement": draw(_text),
        "opening_facts": draw(st.lists(st.sampled_from(fact_ids), max_size=2, unique=True)),
        "facts": facts,
        "exam": exam,
        "tests": tests,
        "diagnosis": {
            "primary": draw(_text),
            "synonyms": draw(st.lists(_text, max_size=3)),
            "icd10": draw(st.sampled_from(["I21.1", "J18.9", "K35.8", "N10", "F32.2"])),
            "key_evidence": draw(st.lists(any_id, max_size=3)),
            "differential": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": _text, "reasoning": _text, "discriminators": st.lists(any_id, max_size=2)}
                    ),
                    max_size=4,
                )
            ),
        },
        "management": {
            "disposition": draw(_values(Urgency)),
            "first_line": [{"name": draw(_text)}],
            "contraindications": contraindications,
            "red_flags": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "description": _text,
                            "urgency": _values(Urgency),
                            "evidence": st.lists(any_id, max_size=2),
                        }
                    ),
                    max_size=2,
                )
            ),
            "education": draw(st.lists(_text, max_size=3)),
        },
    }
