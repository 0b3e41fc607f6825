"""ConsultationEnv: the Gymnasium contract, vector envs, wrappers, determinism, episode logs and bad input."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

import clinic_env
from clinic_env.cases import CaseLoadError
from clinic_env.env import ConsultationEnv
from clinic_env.logs import load_episodes, to_dataset

REF = "card-inferior-stemi-pde5"
SCRIPT = [
    "Hello, I'm the doctor. I'm sorry you're in pain. Does it spread anywhere?",
    "Have you taken anything like Viagra recently? Any allergies?",
    "EXAM: vital signs, heart",
    "TEST: ECG, troponin",
    "DIAGNOSIS: inferior STEMI. PLAN: aspirin and primary PCI now; no GTN because of the Viagra. "
    "I'm calling an ambulance to take you to the emergency department now.",
]


def test_check_env_passes_without_warnings():
    env = ConsultationEnv()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    assert [str(w.message) for w in caught] == []


def test_registered_and_made_with_kwargs():
    env = gym.make("clinic_env/Consultation-v0", cases="builtin", patient="rule", max_turns=7)
    assert env.unwrapped.max_turns == 7
    assert env.spec.id == "clinic_env/Consultation-v0"


def _play(env, seed, case_id=REF, script=SCRIPT):
    obs, info = env.reset(seed=seed, options={"case_id": case_id})
    out = [obs]
    for a in script:
        obs, r, term, trunc, info = env.step(a)
        out.append(obs)
        if term or trunc:
            break
    return out, r, term, trunc, info


def test_an_episode_is_graded_and_explained():
    env = ConsultationEnv()
    obs, r, term, trunc, info = _play(env, 0)
    assert term and not trunc and info["termination_reason"] == "diagnosis_and_plan"
    assert r == info["score"] > 0.5
    assert {"axis:accuracy", "dimension:ethics_safety"} <= set(info["score_breakdown"])
    crit = {c["id"]: c for c in info["rubric"]}
    assert crit["diagnosis"]["met"] and not crit["contraindicated_0"]["met"]
    assert info["messages"][0]["role"] == "user" and info["messages"][1]["role"] == "assistant"
    assert "med_sildenafil" in info["disclosed"] and "test_ecg" in info["ordered_tests"]


def test_same_seed_same_transcript_byte_for_byte():
    a = _play(ConsultationEnv(), 11, case_id=None or REF)[0]
    b = _play(ConsultationEnv(), 11, case_id=REF)[0]
    assert a == b
    env = ConsultationEnv()
    first = env.reset(seed=5)[1]["case_id"]
    assert env.reset(seed=5)[1]["case_id"] == first


def test_shaping_and_custom_reward():
    env = ConsultationEnv(shaping={"essential_fact": 0.1, "turn_cost": 0.01})
    env.reset(seed=0, options={"case_id": REF})
    _, r, *_ = env.step("Does the pain spread anywhere?")  # one essential fact (radiation)
    assert r == pytest.approx(0.1 - 0.01)
    env = ConsultationEnv(reward=lambda case, rubric, grades, metrics: 42.0)
    *_, r, term, _, _ = _play(env, 0)
    assert r == 42.0
    with pytest.raises(ValueError, match="unknown shaping keys"):
        ConsultationEnv(shaping={"bonus": 1})


def test_truncation_and_wrappers():
    env = RecordEpisodeStatistics(
        TimeLimit(gym.make("clinic_env/Consultation-v0", max_turns=3), max_episode_steps=50)
    )
    env.reset(seed=0, options={"case_id": REF})
    for i in range(3):
        obs, r, term, trunc, info = env.step(f"Any fever? ({i})")
    assert trunc and not term and info["termination_reason"] == "turn_limit"
    assert "episode" in info and info["episode"]["l"] == 3


def _vec_run(mode):
    # async needs shared_memory=False: Gymnasium reads a Text space's shared memory only once (stale observations)
    kw = {"vector_kwargs": {"shared_memory": False}} if mode == "async" else {}
    envs = gym.make_vec("clinic_env/Consultation-v0", num_envs=2, vectorization_mode=mode, **kw)
    try:
        obs0, _ = envs.reset(seed=[1, 2])
        obs1, rewards, terms, truncs, infos = envs.step(("Do you smoke?", "Any allergies?"))
        assert len(rewards) == 2
        return list(obs0), list(obs1)
    finally:
        envs.close()


def test_make_vec_sync_and_async_agree():
    sync, async_ = _vec_run("sync"), _vec_run("async")
    assert all(isinstance(o, str) and o.strip() for o in sync[0] + sync[1])
    assert async_ == sync


def test_render_ansi():
    env = ConsultationEnv(render_mode="ansi")
    env.reset(seed=0, options={"case_id": REF})
    env.step("Do you smoke?")
    text = env.render()
    assert text.startswith(f"case {REF}") and "doctor: Do you smoke?" in text
    with pytest.raises(ValueError, match="render_mode"):
        ConsultationEnv(render_mode="rgb_array")


def test_bad_input_is_clear_and_logs_stay_intact(tmp_path):
    log = tmp_path / "episodes.jsonl"
    env = ConsultationEnv(log_path=log)
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        env.step("hi")
    _play(env, 0)
    assert len(load_episodes(log)) == 1
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step("hello?")
    env.reset(seed=1, options={"case_id": REF})
    with pytest.raises(TypeError, match="must be a str, got int"):
        env.step(3)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no case with id 'card-stemi'"):
        env.reset(options={"case_id": "card-stemi"})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"case": REF})
    assert len(load_episodes(log)) == 1  # nothing written lost
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CaseLoadError, match="file is empty"):
        ConsultationEnv(cases=empty)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "x"}))
    with pytest.raises(CaseLoadError, match="required field is missing"):
        ConsultationEnv(cases=bad)


def test_episode_log_round_trip_and_dataset(tmp_path):
    log = tmp_path / "ep.jsonl"
    env = ConsultationEnv(log_path=log)
    _play(env, 0)
    _play(env, 1, case_id=clinic_env.load_cases("builtin")[3].id)
    with log.open("a") as fh:
        fh.write('{"torn": ')  # a crash mid-episode
    with pytest.warns(UserWarning, match="not valid JSON"):
        rows = load_episodes(log)
    assert [r["case_id"] for r in rows][0] == REF and len(rows) == 2
    pytest.importorskip("datasets")
    with pytest.warns(UserWarning):
        ds = to_dataset(log)
    assert ds.num_rows == 2 and "messages" in ds.column_names
