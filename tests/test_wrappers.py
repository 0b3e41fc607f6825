"""The Gymnasium wrappers: ChatMessages, DiscreteActions, TokenIds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from clinic_env import load_cases
from clinic_env.env import ConsultationEnv
from clinic_env.patient import lexicon as lx
from clinic_env.patient.understanding import UNSURE_CONCEPTS, compile_case
from clinic_env.wrappers import QUESTIONS, ChatMessages, DiscreteActions, TokenIds, _fact_keys

CASE = "card-inferior-stemi-pde5"
OPTIONS = {"case_id": CASE}


def _index(kind: str, text: str) -> int:
    return DiscreteActions.catalog.index((kind, text))


def _bits(env: DiscreteActions, obs: np.ndarray, key: str) -> dict[str, float]:
    labels = env.observation_labels
    return {
        prefix: float(obs[labels.index(f"{prefix}:{key}")]) for prefix in ("asked", "positive", "negative")
    }


# ------------------------------------------------------------------------------------------------ ChatMessages


def test_chat_messages_reset_and_step():
    env = ChatMessages(ConsultationEnv(), system_prompt="You are a careful GP.")
    assert isinstance(env.observation_space, spaces.Sequence)
    obs, info = env.reset(seed=0, options=OPTIONS)
    assert obs in env.observation_space
    assert obs[0] == {"role": "system", "content": "You are a careful GP."}
    assert obs[1] == {"role": "user", "content": info["messages"][0]["content"]}
    obs, reward, terminated, truncated, info = env.step("Does the pain spread anywhere?")
    assert obs in env.observation_space
    assert [m["role"] for m in obs] == ["system", "user", "assistant", "user"]
    assert obs[2]["content"] == "Does the pain spread anywhere?"
    assert obs[3]["content"] == info["messages"][-1]["content"]
    assert isinstance(reward, float) and not (terminated or truncated)


def test_chat_messages_without_system_prompt_and_foreign_characters():
    env = ChatMessages(ConsultationEnv())
    obs, info = env.reset(seed=0, options=OPTIONS)
    assert [m["role"] for m in obs] == ["user"]
    obs, *_, info = env.step("Do you smoke? \u2603")  # a snowman is outside the env's charset
    assert obs in env.observation_space
    assert obs[1]["content"] == "Do you smoke? ?"
    assert info["messages"][1]["content"] == "Do you smoke? \u2603"  # info keeps the exact text


def test_chat_messages_needs_text_env():
    with pytest.raises(TypeError, match="Text"):
        ChatMessages(DiscreteActions(ConsultationEnv()))


# ------------------------------------------------------------------------------------------------ DiscreteActions


def test_discrete_catalog_is_large_fixed_and_case_independent():
    catalog = DiscreteActions.catalog
    assert len(catalog) >= 150
    assert len(set(catalog)) == len(catalog)
    one_case = ConsultationEnv(cases=[load_cases("builtin")[CASE]])
    a, b = DiscreteActions(ConsultationEnv()), DiscreteActions(one_case)
    assert a.catalog == b.catalog == catalog
    assert a.action_space == b.action_space == spaces.Discrete(len(catalog))
    assert a.observation_space == b.observation_space
    kinds = [k for k, _ in catalog]
    assert kinds.count("ask") == len(lx.CONCEPTS)
    assert kinds.count("exam") == len(lx.EXAM_SYSTEMS)
    assert kinds.count("test") == len(lx.TEST_CATALOG)
    diagnoses = [t for k, t in catalog if k == "diagnosis"]
    assert diagnoses == sorted(f"DIAGNOSIS: {c.diagnosis.primary}" for c in load_cases("builtin"))
    assert {"plan", "empathy", "goodbye"} <= set(kinds)
    assert len(DiscreteActions.observation_labels) == a.observation_space.shape[0]


def test_discrete_catalog_utterances_do_what_their_kind_says():
    """Every utterance parses as its kind on the test case; each question asks about its own concept only."""
    cc = compile_case(load_cases("builtin")[CASE])
    for kind, text in DiscreteActions.catalog:
        it = cc.parse(text)
        history = bool(it.facts or it.missing_concepts)
        exam, test = bool(it.exams or it.normal_systems), bool(it.tests or it.catalog_tests)
        got = {
            "history": history,
            "exam": exam,
            "test": test,
            "diagnosis": it.diagnosis is not None,
            "plan": it.plan is not None,
            "empathy": it.empathy,
            "goodbye": it.goodbye,
        }
        want = {"ask": "history"}.get(kind, kind)
        assert got[want], (kind, text)
        assert not any(v for k, v in got.items() if k not in (want, "empathy")), (kind, text, it)
        assert not it.rude, text
    for key, question in QUESTIONS.items():
        assert set(cc.parse(question).missing_concepts) <= {key}, question
    exam_texts = [t for k, t in DiscreteActions.catalog if k == "exam"]
    for system, text in zip(lx.EXAM_SYSTEMS, exam_texts, strict=True):
        it = cc.parse(text)
        assert {cc.exams[e].system for e in it.exams} | set(it.normal_systems) == {system}, text
    test_texts = [t for k, t in DiscreteActions.catalog if k == "test"]
    for name, text in zip(lx.TEST_CATALOG, test_texts, strict=True):
        it = cc.parse(text)
        assert it.catalog_tests == (name,) or (it.tests and not it.catalog_tests), text


def test_discrete_observations_in_space_and_smoking_bits():
    env = DiscreteActions(ConsultationEnv())
    obs, info = env.reset(seed=0, options=OPTIONS)
    assert obs in env.observation_space and obs.dtype == np.float32
    assert _bits(env, obs, "smoking") == {"asked": 0.0, "positive": 0.0, "negative": 0.0}
    # The opening statement's facts are already known.
    facts = env.unwrapped.patient.cc.facts
    for fid in info["disclosed"]:
        for key in _fact_keys(facts[fid].concepts) & set(lx.CONCEPTS):
            assert _bits(env, obs, key)["negative" if facts[fid].pertinent_negative else "positive"] == 1.0
    obs, reward, terminated, truncated, info = env.step(_index("ask", "Do you smoke?"))
    assert obs in env.observation_space
    assert info["action_kind"] == "ask" and info["action_text"] == "Do you smoke?"
    assert info["messages"][-2]["content"] == "Do you smoke?"
    smoking_facts = [f for f in info["disclosed"] if "smoking" in _fact_keys(facts[f].concepts)]
    assert smoking_facts, "the case's smoking fact was disclosed"
    assert _bits(env, obs, "smoking") == {"asked": 1.0, "positive": 1.0, "negative": 0.0}
    assert obs[env.observation_labels.index("turn_fraction")] == pytest.approx(1 / 20)


def test_discrete_denied_topic_sets_negative_bit():
    env = DiscreteActions(ConsultationEnv())
    env.reset(seed=0, options=OPTIONS)
    cc = env.unwrapped.patient.cc
    assert "seizure" not in UNSURE_CONCEPTS
    assert not any("seizure" in _fact_keys(f.concepts) for f in cc.facts.values())
    obs, *_ = env.step(_index("ask", QUESTIONS["seizure"]))
    assert _bits(env, obs, "seizure") == {"asked": 1.0, "positive": 0.0, "negative": 1.0}


def test_discrete_episode_reaches_termination_with_pass_through_reward():
    texts = [
        ("ask", "Do you smoke?"),
        ("exam", "EXAM: cardiovascular"),
        ("test", "TEST: ECG"),
        ("diagnosis", "DIAGNOSIS: Acute inferior ST-elevation myocardial infarction"),
        ("plan", next(t for k, t in DiscreteActions.catalog if k == "plan" and "ambulance" in t)),
    ]
    env, raw = DiscreteActions(ConsultationEnv()), ConsultationEnv()
    env.reset(seed=0, options=OPTIONS)
    raw.reset(seed=0, options=OPTIONS)
    labels = env.observation_labels
    for i, (kind, text) in enumerate(texts):
        obs, reward, terminated, truncated, info = env.step(_index(kind, text))
        _, raw_reward, raw_terminated, *_ = raw.step(text)
        assert obs in env.observation_space
        assert reward == raw_reward and terminated == raw_terminated
        assert terminated == (i == len(texts) - 1) and not truncated
    assert info["termination_reason"] == "diagnosis_and_plan"
    on = {labels[i] for i in np.flatnonzero(obs)}
    assert {"examined:cardiovascular", "tested:ECG", "diagnosis_given", "plan_given"} <= on
    assert "examined:respiratory" not in on and "tested:Troponin" not in on
    obs, info = env.reset(seed=0, options=OPTIONS)  # a new episode starts from a clean slate
    assert not {"asked:smoking", "diagnosis_given", "plan_given"} & {labels[i] for i in np.flatnonzero(obs)}


def test_discrete_goodbye_terminates():
    env = DiscreteActions(ConsultationEnv())
    env.reset(seed=0, options=OPTIONS)
    *_, terminated, truncated, info = env.step(_index("goodbye", "Goodbye."))
    assert terminated and info["termination_reason"] == "goodbye"


@pytest.mark.parametrize(
    ("action", "error"),
    [(-1, ValueError), (10_000, ValueError), (1.0, TypeError), ("3", TypeError), (True, TypeError)],
)
def test_discrete_invalid_action_raises(action, error):
    env = DiscreteActions(ConsultationEnv())
    env.reset(seed=0, options=OPTIONS)
    with pytest.raises(error, match="catalog"):
        env.step(action)


def test_discrete_accepts_numpy_integers():
    env = DiscreteActions(ConsultationEnv())
    env.reset(seed=0, options=OPTIONS)
    i = _index("ask", "Do you smoke?")
    env.step(np.int64(i))
    env.step(np.array(i))


def test_discrete_passes_env_checker():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        check_env(DiscreteActions(ConsultationEnv()), skip_render_check=True)


# ------------------------------------------------------------------------------------------------ TokenIds


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from tests.tiny_models import train_tokenizer

    return train_tokenizer()


def test_token_ids_round_trip(tokenizer):
    env = TokenIds(ConsultationEnv(), tokenizer, max_obs_tokens=512, max_action_tokens=64)
    pad = tokenizer.pad_token_id
    assert env.observation_space == spaces.Box(0, len(tokenizer) - 1, (512,), np.int64)
    assert env.action_space == spaces.Box(0, len(tokenizer) - 1, (64,), np.int64)
    obs, info = env.reset(seed=0, options=OPTIONS)
    assert obs in env.observation_space
    n = info["obs_length"]
    assert 0 < n < 512 and not info["obs_truncated"] and (obs[n:] == pad).all()
    assert tokenizer.decode(obs[:n]) == info["messages"][0]["content"]
    text = "Does the pain spread anywhere? I'd like an ECG."
    action = env.encode_action(text)
    assert action in env.action_space and env.decode_action(action) == text
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs in env.observation_space
    assert info["action_text"] == text and info["messages"][-2]["content"] == text
    assert tokenizer.decode(obs[: info["obs_length"]]) == info["messages"][-1]["content"]


def test_token_ids_actions_ignore_pad_and_check_range(tokenizer):
    env = TokenIds(ConsultationEnv(), tokenizer, max_action_tokens=32)
    pad = tokenizer.pad_token_id
    ids = tokenizer("Do you smoke?", add_special_tokens=False)["input_ids"]
    assert env.decode_action([pad, *ids[:2], pad, *ids[2:], pad]) == "Do you smoke?"
    assert env.decode_action(ids) == "Do you smoke?"  # shorter than max_action_tokens is fine
    with pytest.raises(ValueError, match="token ids"):
        env.decode_action([len(tokenizer)])
    with pytest.raises(ValueError, match="max_action_tokens"):
        env.decode_action([ids[0]] * 33)
    with pytest.raises(ValueError, match="max_action_tokens"):
        env.encode_action("Do you smoke? " * 40)


def test_token_ids_truncates_from_the_left(tokenizer):
    env = TokenIds(ConsultationEnv(), tokenizer, max_obs_tokens=8)
    obs, info = env.reset(seed=0, options=OPTIONS)
    full = tokenizer(info["messages"][0]["content"], add_special_tokens=False)["input_ids"]
    assert info["obs_truncated"] and info["obs_length"] == 8
    assert obs.tolist() == full[-8:]


def test_token_ids_over_chat_messages(tokenizer):
    env = TokenIds(
        ChatMessages(ConsultationEnv(), system_prompt="You are a GP."), tokenizer, max_obs_tokens=512
    )
    obs, info = env.reset(seed=0, options=OPTIONS)
    rendered = tokenizer.decode(obs[: info["obs_length"]])
    assert rendered.startswith("<|system|>\nYou are a GP.\n<|user|>\n")
    assert rendered.endswith("<|assistant|>\n")


def test_action_masks_allow_each_line_once_and_one_diagnosis_and_plan():
    from clinic_env.env import ConsultationEnv
    from clinic_env.wrappers import DiscreteActions

    env = DiscreteActions(ConsultationEnv())
    env.reset(seed=0, options={"case_id": "card-inferior-stemi-pde5"})
    assert env.action_masks().all()
    smoke = env.catalog.index(("ask", "Do you smoke?"))
    env.step(smoke)
    mask = env.action_masks()
    assert not mask[smoke] and mask.sum() == len(env.catalog) - 1
    dx = next(i for i, (kind, _) in enumerate(env.catalog) if kind == "diagnosis")
    env.step(dx)
    kinds = [k for k, _ in env.catalog]
    assert not any(env.action_masks()[i] for i, k in enumerate(kinds) if k == "diagnosis")
    env.reset(seed=1)
    assert env.action_masks().all()
