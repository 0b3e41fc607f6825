"""Model spec strings, usable everywhere the CLI takes a model.

hf:PATH               a local transformers model folder
openai:MODEL@URL      an OpenAI-compatible server (URL defaults to http://127.0.0.1:8000/v1)
vllm:PATH             an in-process vLLM engine (GPU machines)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import ChatModel

KINDS = ("hf", "openai", "vllm")


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    target: str  # path for hf/vllm, model name for openai
    url: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" + (f"@{self.url}" if self.url else "")


def parse_model_spec(spec: str) -> ModelSpec:
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"model spec {spec!r} must look like hf:PATH, openai:MODEL@URL or vllm:PATH")
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(f"model spec {spec!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not rest:
        raise ValueError(f"model spec {spec!r}: nothing after '{kind}:'")
    if kind == "openai":
        model, sep, url = rest.partition("@")
        if not model:
            raise ValueError(f"model spec {spec!r}: missing model name before '@'")
        if sep and not url.startswith(("http://", "https://")):
            raise ValueError(f"model spec {spec!r}: the URL after '@' must start with http:// or https://")
        return ModelSpec("openai", model, url or "http://127.0.0.1:8000/v1")
    return ModelSpec(kind, rest)


def load_chat_model(spec: str | ModelSpec, **kwargs: Any) -> ChatModel:
    """Build a ``ChatModel`` from a spec; ``kwargs`` go to the backend's constructor."""
    s = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    if s.kind == "hf":
        from .hf import TransformersChatModel

        return TransformersChatModel(s.target, **kwargs)
    if s.kind == "openai":
        from .openai_http import OpenAIChatModel

        return OpenAIChatModel(s.target, s.url or "http://127.0.0.1:8000/v1", **kwargs)
    from .vllm_client import VLLMChatModel

    return VLLMChatModel(s.target, **kwargs)
