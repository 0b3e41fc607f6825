"""Doctor agents: random, scripted (naive-Bayes differential) and LLM doctors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import clinic_env  # noqa: F401  (registers the env)
from agents import DoctorBatch, LLMDoctor, RandomDoctor, ScriptedDoctor, run_episode
from agents.scripted import _polarity
from clinic_env.cases.generator import generate_cases
from clinic_env.llm.callable import CallableChatModel


def _env(cases, **kw):
    return gym.make("clinic_env/Consultation-v0", cases=cases, max_turns=20, **kw)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("No, nothing like that.", False),
        ("Okay, No, not at all.", False),
        ("*winces* Not that I've noticed.", False),
        ("Right, No.", False),
        ("I'm not sure, to be honest.", None),
        ("Like I said, i've had a temperature and shivering fits.", True),
        ("Sure. I get out of breath walking to the bathroom.", True),
        ("She hasn't been feeding well at all.", False),
        ("", None),
    ],
)
def test_reply_polarity(reply, expected):
    assert _polarity(reply) is expected


def test_random_doctor_is_seeded_and_finishes_episodes():
    cases = generate_cases(4, seed=1)
    a = [run_episode(_env(cases), RandomDoctor(seed=3), seed=s)["messages"] for s in range(3)]
    b = [run_episode(_env(cases), RandomDoctor(seed=3), seed=s)["messages"] for s in range(3)]
    assert a == b


def test_scripted_doctor_does_not_read_the_answer_from_info():
    """Scrubbing the case id, specialty and disclosed fact ids from info changes nothing it says."""
    cases = generate_cases(6, seed=2)

    class Scrub(gym.Wrapper):
        def reset(self, **kw):
            obs, info = self.env.reset(**kw)
            return obs, self._clean(info)

        def step(self, action):
            obs, r, t, tr, info = self.env.step(action)
            return obs, r, t, tr, self._clean(info)

        @staticmethod
        def _clean(info):
            return {k: v for k, v in info.items() if k in ("turn", "messages", "patient")}

    for seed in range(3):
        plain = run_episode(_env(cases), ScriptedDoctor(), seed=seed)
        scrubbed = run_episode(Scrub(_env(cases)), ScriptedDoctor(), seed=seed)
        assert [m["content"] for m in scrubbed["messages"]] == [m["content"] for m in plain["messages"]]


def _diagnosed(info) -> bool:
    return any(c["id"] == "diagnosis" and c["met"] for c in info["rubric"])


def test_scripted_doctor_beats_random_on_generated_cases():
    cases = generate_cases(40, seed=7)
    scripted, random_ = [], []
    dx = 0
    for i, case in enumerate(cases):
        info = run_episode(_env([case]), ScriptedDoctor(), seed=i)
        scripted.append(info["score"])
        dx += _diagnosed(info)
        random_.append(run_episode(_env([case]), RandomDoctor(seed=i), seed=i)["score"])
    assert np.mean(scripted) > np.mean(random_) + 0.15, (np.mean(scripted), np.mean(random_))
    assert dx / len(cases) >= 0.5, dx


def test_scripted_doctor_avoids_contraindicated_first_line():
    """With penicillin anaphylaxis in the history it does not recommend amoxicillin for pneumonia."""
    from clinic_env.cases.knowledge import load_knowledge

    kb = load_knowledge()
    pneumonia = kb["community_acquired_pneumonia"]
    doc = ScriptedDoctor(kb)
    doc.reset()
    doc.act("I've got a bad cough with green phlegm and a fever.", {"turn": 0, "patient": {"age_years": 60}})
    doc.act("I'm allergic to penicillin, my throat swelled up.", {"turn": 1})
    bad = doc._contraindicated(pneumonia)
    assert "amoxicillin" in bad
    text = doc._close([(1.0, pneumonia, 0)])
    plan = text.split("PLAN:", 1)[1].lower()
    assert "amoxicillin" not in plan
    assert "doxycycline" in plan


def test_doctor_batch_keeps_one_state_per_slot():
    cases = generate_cases(3, seed=5)
    envs = [_env(cases) for _ in range(3)]
    batch = DoctorBatch(ScriptedDoctor, 3)
    obs, infos = zip(*(e.reset(seed=i) for i, e in enumerate(envs)), strict=True)
    first = batch.act_batch(list(obs), list(infos))
    solo = [ScriptedDoctor().act(o, i) for o, i in zip(obs, infos, strict=True)]
    assert first == solo
    with pytest.raises(ValueError, match="expected 3"):
        batch.act_batch(list(obs)[:2], list(infos)[:2])


def test_llm_doctor_rebuilds_the_conversation_and_batches():
    model = CallableChatModel(lambda conv: "Where is the pain?")
    seen = model.calls
    doc = LLMDoctor(model, system_prompt="SYS")
    cases = generate_cases(2, seed=8)
    envs = [_env(cases) for _ in range(2)]
    obs, infos = zip(*(e.reset(seed=i) for i, e in enumerate(envs)), strict=True)
    out = doc.act_batch(list(obs), list(infos))
    assert out == ["Where is the pain?"] * 2
    assert len(seen) == 1 and len(seen[0]) == 2  # one batched call for both envs
    conv = seen[0][0]
    assert conv[0] == {"role": "system", "content": "SYS"}
    assert conv[1] == {"role": "user", "content": obs[0]}
    o2, *_, info2 = envs[0].step(out[0])
    doc.act(o2, info2)
    assert [m["role"] for m in seen[-1][0]] == ["system", "user", "assistant", "user"]
    with pytest.raises(TypeError, match="ChatModel"):
        LLMDoctor(42)


def test_llm_doctor_from_a_local_model_path(tiny_model_path):
    doc = LLMDoctor(f"hf:{tiny_model_path}", max_tokens=8)
    env = _env(generate_cases(1, seed=9))
    obs, info = env.reset(seed=0)
    action = doc.act(obs, info)
    assert isinstance(action, str) and action
    env.step(action)
