"""The PettingZoo AEC form: API and seed tests, a scripted consultation, patient rewards and bad input."""

from __future__ import annotations

import warnings

import pytest
from pettingzoo.test import api_test, seed_test

from clinic_env.env import ConsultationEnv
from clinic_env.multiagent import env as make_env
from clinic_env.multiagent import raw_env

REF = "card-inferior-stemi-pde5"
SCRIPT = [
    "Hello, I'm the doctor. I'm sorry you're in pain. Does it spread anywhere?",
    "Have you taken anything like Viagra recently? Any allergies?",
    "EXAM: vital signs, heart",
    "TEST: ECG, troponin",
    "DIAGNOSIS: inferior STEMI. PLAN: aspirin and primary PCI now; no GTN because of the Viagra. "
    "I'm calling an ambulance to take you to the emergency department now.",
]


def test_api_test_passes_with_random_text_actions():
    e = make_env()
    with warnings.catch_warnings():
        # api_test's style warnings (Text rather than Box/Discrete spaces, agent names without _<n>) are advice
        warnings.simplefilter("ignore")
        api_test(e, num_cycles=25)


def test_seed_test_passes():
    seed_test(make_env, num_cycles=25)


def _play(seed, script=SCRIPT, **kwargs):
    e = make_env(render_mode="ansi", **kwargs)
    e.reset(seed=seed, options={"case_id": REF})
    doctor = iter(script)
    seen, last = [], {}
    for agent in e.agent_iter():
        obs, reward, term, trunc, info = e.last()
        assert e.observation_space(agent).contains(obs)
        seen.append((agent, str(obs)))
        if term or trunc:
            last[agent] = (reward, term, trunc, info)
            if agent == "doctor":
                transcript = e.render()
            action = None
        elif agent == "doctor":
            action = next(doctor)
        else:
            action = e.unwrapped.builtin_patient_action()
        e.step(action)
    assert e.agents == []
    return seen, last, transcript


def test_scripted_consultation_with_the_builtin_patient():
    seen, last, transcript = _play(0)
    reward, term, trunc, info = last["doctor"]
    assert term and not trunc and info["termination_reason"] == "diagnosis_and_plan"
    assert reward == info["score"] > 0.5
    assert info["case_id"] == REF and info["turn"] == len(SCRIPT)
    assert {c["id"] for c in info["rubric"]} and "axis:accuracy" in info["score_breakdown"]
    p_reward, p_term, _, p_info = last["patient"]
    assert p_term and p_reward == 0 and p_info["violations"] == ()
    # turn order and what each agent sees
    assert [a for a, _ in seen[: 2 * len(SCRIPT)]] == ["doctor", "patient"] * len(SCRIPT)
    assert seen[1] == ("patient", SCRIPT[0])
    assert any("[examiner] 12-lead ECG" in obs for a, obs in seen if a == "doctor")
    # determinism, and the same episode as the single-agent env with the same seed
    assert _play(0) == (seen, last, transcript)
    single = ConsultationEnv(render_mode="ansi")
    single.reset(seed=0, options={"case_id": REF})
    for a in SCRIPT:
        *_, r, _, _, _ = single.step(a)
    assert single.render() == transcript and r == reward


def test_patient_reward_penalises_fact_unit_violations():
    e = make_env()
    e.reset(seed=0, options={"case_id": REF})
    e.step("Hello, what brings you in today?")
    assert e.observe("patient") == "Hello, what brings you in today?"
    e.step("It's a STEMI, isn't it?")
    assert e.rewards["patient"] == -1
    assert any(v.startswith("diagnosis") for v in e.infos["patient"]["last_violations"])
    assert e.observe("doctor") == "It's a STEMI, isn't it?"
    e.step("Does the pain spread anywhere?")
    assert e.last() == (e.observe("patient"), -1, False, False, e.infos["patient"])
    e.step(e.unwrapped.builtin_patient_action())
    assert e.rewards["patient"] == 0 and e.infos["patient"]["last_violations"] == ()


def test_truncation_at_max_turns_ends_both_agents():
    e = make_env(max_turns=2)
    e.reset(seed=1, options={"case_id": REF})
    for _ in range(2):
        e.step("Tell me more.")
        e.step(e.unwrapped.builtin_patient_action())
    assert e.truncations == {"doctor": True, "patient": True}
    assert e.infos["doctor"]["termination_reason"] == "turn_limit"
    e.step(None)
    e.step(None)
    assert e.agents == []


def test_observations_stay_inside_their_spaces():
    e = raw_env(max_observation_chars=50)
    e.reset(seed=0, options={"case_id": REF})
    e.step("Hello ☃ " + "x" * 100)
    obs = e.observe("patient")
    assert obs.startswith("Hello ? ") and len(obs) == 50 and e.observation_space("patient").contains(obs)


def test_bad_input():
    e = make_env()
    e.reset(seed=0, options={"case_id": REF})
    with pytest.raises(RuntimeError, match="patient's turn"):
        e.unwrapped.builtin_patient_action()
    with pytest.raises(TypeError, match="doctor"):
        e.step(3)
    e.step("Hello.")
    with pytest.raises(TypeError, match="patient"):
        e.step(["Hi"])
    with pytest.raises(KeyError, match="no case with id 'card-inferior-stemi'"):
        e.reset(options={"case_id": "card-inferior-stemi"})
    with pytest.raises(ValueError, match="render_mode"):
        raw_env(render_mode="human")
