"""Garbled doctor turns: the word check, the patient's reaction and what the grader reads."""

from __future__ import annotations

import pytest

import clinic_env
from clinic_env.env import ConsultationEnv, grade_messages
from clinic_env.patient import PatientSimulator
from clinic_env.patient.coherence import (
    UNINTELLIGIBLE,
    case_vocabulary,
    is_garbled,
    is_repetitive,
    unknown_words,
)
from clinic_env.rubrics import RuleRubricGenerator, RuleVerifier

REF = "card-inferior-stemi-pde5"
# Fragments glued together, as a tiny policy drifting under RL pressure wrote them (the training demo, session 2).
SALAD = (
    "monitor }, untilorecontrulse? creatininemptoms 36 epenicillin?logypertinentweatute grainandercise sex and? "
    "discourcepati 0OSIS mmHg"
)


@pytest.fixture(scope="module")
def case():
    return clinic_env.load_cases("builtin")[REF]


@pytest.mark.parametrize(
    "text",
    [
        "Have you had any chest pain, and does it go anywhere, like your arm or jaw?",
        "EXAM: vital signs, heart. TEST: ECG, troponin, FBC, U&E",
        "DIAGNOSIS: inferior STEMI. PLAN: aspirin, ticagrelor and primary PCI; no GTN after sildenafil.",
        "I'm sorry, that sounds frightening. Shouldn't we check your blood pressure? Any SOB or haemoptysis?",
        "Have you travelled to Portugal or Brazil recently?",
        "Have you had any chset pain?",  # one typo
        "",
    ],
)
def test_ordinary_turns_are_not_garbled(text):
    assert not is_garbled(text)


@pytest.mark.parametrize(
    "text",
    [
        SALAD,
        "you smoke orzfeelonen? coupleud? endgrfamilyhowheart irregularving hereallergy abdom?hoeaanguageloodUm?",
        "pain? feelfaintny hrtburnz?",
    ],
)
def test_keyword_salad_is_garbled(text):
    assert is_garbled(text)


@pytest.mark.parametrize(
    "text",
    [
        "Does anything run in the doctor. I'm day day day day day",
        "TEST: full blood count, U&E, blood count, blood count, blood count, blood glucose, blood count, blood count",
        "Do you take any chance you take any medical conditions? you take any chance you take any any medical "
        "conditions? take any take any medical conditions?",
    ],
)
def test_degenerate_repetition_is_garbled(text):
    assert is_repetitive(text) and is_garbled(text)


@pytest.mark.parametrize(
    "text",
    [
        "Any fever, any cough, any weight loss, any night sweats, any blood in your phlegm?",
        "TEST: full blood count, U&E, LFTs, CRP, blood glucose, blood cultures, chest X-ray",
        "No, no. Do you smoke?",
    ],
)
def test_ordinary_lists_are_not_repetitive(text):
    assert not is_repetitive(text)


def test_a_cases_own_words_are_known(case):
    # The project vocabulary covers the library; an imported case's own terms come through case_vocabulary.
    unknown, n = unknown_words("Any zorblaxin or quintorel use?", case_vocabulary(None))
    assert unknown == ["zorblaxin", "quintorel"] and n == 4
    fake = case.model_copy(
        update={"opening_statement": case.opening_statement + " I take zorblaxin and quintorel."}
    )
    assert not is_garbled("Any zorblaxin or quintorel use?", case_vocabulary(fake))
    assert is_garbled("Any zorblaxin or quintorel use?", case_vocabulary(case))


def test_the_patient_ignores_garbled_turns_and_runs_out_of_patience(case):
    s = PatientSimulator()
    s.reset(case, 0)  # low patience: two garbled turns and the patient leaves
    # Real keywords inside the salad (smoke, allergy, jaw) release nothing.
    t = s.respond("smoke? allergyyyxq jawzzpain radiatesqq? " + SALAD)
    assert t.disclosed == () and "not_understood" in t.markers and not t.terminated
    assert "smoking" not in s.disclosed
    t = s.respond("EXAM: heart " + SALAD)
    assert t.exams == () and t.examiner == ()
    assert t.terminated and t.reason == "patience_incoherent" and "leaves" in t.markers


def test_the_same_question_written_plainly_is_answered(case):
    s = PatientSimulator()
    s.reset(case, 0)
    t = s.respond("Do you smoke? Any allergies? Does the pain go to your jaw?")
    assert {"smoking", "allergy_none", "pain_radiation"} <= set(t.disclosed)


def test_the_grader_reads_garbled_turns_as_unintelligible(case):
    rubric = RuleRubricGenerator().generate(case, seed=0)
    verifier = RuleVerifier()
    diagnosis = "DIAGNOSIS: inferior STEMI. PLAN: aspirin and primary PCI now; no GTN because of the Viagra."
    opening = {"role": "user", "content": case.opening_statement}

    def score(doctor_turn: str) -> float:
        return grade_messages(
            case, [opening, {"role": "assistant", "content": doctor_turn}], rubric, verifier
        )["score"]

    plain = score(diagnosis)
    stuffed = score(diagnosis + " " + SALAD + " stemiqx pcibl aspirinnn")
    assert plain > 0
    assert stuffed == score(UNINTELLIGIBLE) < plain


def test_env_episode_ends_on_garbled_turns(case):
    env = ConsultationEnv()
    env.reset(seed=0, options={"case_id": REF})
    _, _, terminated, _, _ = env.step(SALAD)
    assert not terminated
    _, reward, terminated, _, info = env.step(SALAD)
    assert terminated and info["termination_reason"] == "patience_incoherent"


def test_grade_messages_names_a_bad_message(case):
    rubric = RuleRubricGenerator().generate(case, seed=0)
    bad = [{"role": "user", "content": case.opening_statement}, {"role": "assistant", "content": None}]
    with pytest.raises(TypeError, match="message 1 must be a dict with str 'role' and 'content'"):
        grade_messages(case, bad, rubric, RuleVerifier())
