"""LLM clients behind one batched ``ChatModel`` contract.

Backends import their heavy libraries only when built: ``hf`` (torch, transformers), ``openai`` (httpx), ``vllm``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import ChatModel, LLMError, Message, Usage, check_batch
from .cache import CachedChatModel
from .callable import CallableChatModel
from .spec import ModelSpec, load_chat_model, parse_model_spec

if TYPE_CHECKING:
    from .hf import TransformersChatModel
    from .openai_http import OpenAIChatModel
    from .vllm_client import VLLMChatModel

_LAZY = {
    "TransformersChatModel": ".hf",
    "OpenAIChatModel": ".openai_http",
    "VLLMChatModel": ".vllm_client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CachedChatModel",
    "CallableChatModel",
    "ChatModel",
    "LLMError",
    "Message",
    "ModelSpec",
    "OpenAIChatModel",
    "TransformersChatModel",
    "Usage",
    "VLLMChatModel",
    "check_batch",
    "load_chat_model",
    "parse_model_spec",
]
