"""The local transformers ChatModel on a tiny model built and saved at test time."""

from __future__ import annotations

import pytest

from clinic_env.llm import ChatModel, LLMError, load_chat_model

pytest.importorskip("torch")

CONVS = [
    [{"role": "system", "content": "You are a patient."}, {"role": "user", "content": "Where is the pain?"}],
    [{"role": "user", "content": "Hello."}],
    [
        {
            "role": "user",
            "content": "Do you have any allergies to medicines, for example penicillin or aspirin?",
        },
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": "Do you smoke?"},
    ],
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread (restored afterwards): on a loaded 2-core machine a tiny model's intra-op threads mostly
    wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return load_chat_model(f"hf:{tiny_model_path}", dtype="float32", device="cpu")


def test_round_trip_from_a_local_path_serves_a_batch(model, tiny_model_path):
    assert isinstance(model, ChatModel)
    assert model.name == f"hf:{tiny_model_path}"
    out = model.generate(CONVS, max_tokens=6)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert model.usage.requests == 3 and model.usage.calls == 1
    assert model.usage.last_call["prompt_tokens"] > 0


def test_batched_greedy_equals_one_by_one(model):
    # Token-level exactness of both generation paths on a model with varied outputs: test_llm_hf_batching.py.
    batched = model.generate(CONVS, max_tokens=8)
    single = [model.generate([c], max_tokens=8)[0] for c in CONVS]
    assert batched == single
    assert model.generation == "right_padded"
    assert model.tokenizer.padding_side == "left"  # the "hf" path (and deploy's adapter) pad on the left


def test_seeded_sampling_is_reproducible(model):
    a = model.generate(CONVS, max_tokens=8, temperature=1.0, seed=7)
    b = model.generate(CONVS, max_tokens=8, temperature=1.0, seed=7)
    assert a == b
    others = {tuple(model.generate(CONVS, max_tokens=8, temperature=1.0, seed=s)) for s in range(1, 6)}
    assert len(others) > 1, "different seeds should give different samples on a random model"


def test_prompt_uses_the_chat_template(model):
    text = model.render(CONVS[0])
    assert text.startswith("<|system|>\nYou are a patient.") and text.endswith("<|assistant|>\n")


def test_bad_paths_and_inputs(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_chat_model(f"hf:{tmp_path / 'nope'}")
    with pytest.raises(LLMError, match=r"no config\.json"):
        load_chat_model(f"hf:{tmp_path}")
    with pytest.raises(TypeError, match="batch must be a sequence of conversations"):
        model.generate("hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="role"):
        model.generate([[{"role": "doctor", "content": "hi"}]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_tokens"):
        model.generate(CONVS, max_tokens=0)
