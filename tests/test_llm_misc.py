"""Spec strings, the on-disk request cache, the callable model and the vLLM client's construction."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clinic_env.llm import CachedChatModel, CallableChatModel, ChatModel, ModelSpec, parse_model_spec
from clinic_env.llm.vllm_client import VLLMChatModel, vllm_available


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("hf:/models/tiny", ModelSpec("hf", "/models/tiny")),
        ("vllm:/models/big", ModelSpec("vllm", "/models/big")),
        ("openai:gpt-x@https://api.example/v1", ModelSpec("openai", "gpt-x", "https://api.example/v1")),
        ("openai:local-model", ModelSpec("openai", "local-model", "http://127.0.0.1:8000/v1")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_model_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("tiny", "must look like"),
        ("gguf:/x", "unknown kind 'gguf'"),
        ("hf:", "nothing after"),
        ("openai:@http://x", "missing model name"),
        ("openai:m@ftp://x", "must start with http"),
    ],
)
def test_bad_specs(spec, msg):
    with pytest.raises(ValueError, match=msg):
        parse_model_spec(spec)


def conv(text):
    return [{"role": "user", "content": text}]


def test_cache_hits_skip_the_model_and_survive_restarts(tmp_path):
    inner = CallableChatModel(lambda c: c[-1]["content"].upper(), name="upper")
    cache = CachedChatModel(inner, tmp_path / "cache.sqlite")
    assert isinstance(cache, ChatModel)
    assert cache.generate([conv("a"), conv("b")]) == ["A", "B"]
    assert cache.generate([conv("b"), conv("c"), conv("a")]) == ["B", "C", "A"]
    assert [len(batch) for batch in inner.calls] == [2, 1]  # only the miss reached the model
    assert cache.usage.cache_hits == 2 and cache.usage.requests == 5
    cache.close()
    again = CachedChatModel(inner, tmp_path / "cache.sqlite")
    assert again.generate([conv("c")]) == ["C"] and len(inner.calls) == 2
    assert len(again) == 3


def test_cache_keys_on_sampling_settings_and_skips_unseeded_sampling(tmp_path):
    inner = CallableChatModel(lambda c: "x")
    cache = CachedChatModel(inner, tmp_path / "c.sqlite")
    cache.generate([conv("a")], max_tokens=10)
    cache.generate([conv("a")], max_tokens=11)
    cache.generate([conv("a")], temperature=0.7, seed=1)
    cache.generate([conv("a")], temperature=0.7, seed=1)
    cache.generate([conv("a")], temperature=0.7)
    cache.generate([conv("a")], temperature=0.7)
    assert len(inner.calls) == 5


def test_callable_model_checks_its_function():
    m = CallableChatModel(lambda c: 3)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="returned int"):
        m.generate([conv("a")])


@pytest.mark.skipif(vllm_available(), reason="checks the message shown when vllm is absent")
def test_vllm_absent_names_the_extra():
    with pytest.raises(ImportError, match=r"clinic-env\[vllm\]"):
        VLLMChatModel("/models/x")


def test_vllm_client_maps_outputs_with_an_injected_engine(monkeypatch):
    """The generate path with a stand-in engine (vllm itself only runs on GPU machines)."""
    seen = {}

    class Engine:
        def chat(self, messages, params, use_tqdm=False):
            seen["messages"], seen["params"] = messages, params
            return [
                SimpleNamespace(
                    prompt_token_ids=[1, 2, 3], outputs=[SimpleNamespace(text=f"r{i}", token_ids=[5, 6])]
                )
                for i, _ in enumerate(messages)
            ]

    m = VLLMChatModel("/models/x", llm=Engine())
    monkeypatch.setattr(m, "_sampling_params", lambda **kw: kw)
    assert m.generate([conv("a"), conv("b")], max_tokens=7, seed=2) == ["r0", "r1"]
    assert seen["params"] == {"max_tokens": 7, "temperature": 0.0, "seed": 2}
    assert (m.usage.prompt_tokens, m.usage.completion_tokens) == (6, 4)
