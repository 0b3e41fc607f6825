"""The ``ChatModel`` contract every LLM backend implements, and the shared pieces (messages, usage, errors).

``generate`` is always batched: the patient simulator, the verifier and vector environments hand over many
conversations at once, so a backend can batch them into one forward pass or one burst of concurrent requests.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol, TypedDict, runtime_checkable

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    role: Role
    content: str


ROLES = ("system", "user", "assistant")


class LLMError(RuntimeError):
    """A backend failed in a way retries cannot fix (bad request, missing model, exhausted retries)."""


def check_batch(batch: Sequence[Sequence[Message]]) -> None:
    """Raise a clear error for anything that is not a list of conversations of role/content messages."""
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence):
        raise TypeError(
            f"batch must be a sequence of conversations (lists of messages), got {type(batch).__name__}"
        )
    for i, conv in enumerate(batch):
        if isinstance(conv, (str, bytes, dict)) or not isinstance(conv, Sequence):
            raise TypeError(f"batch[{i}] must be a list of messages, got {type(conv).__name__}")
        if not conv:
            raise ValueError(f"batch[{i}] is an empty conversation")
        for j, m in enumerate(conv):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise TypeError(f"batch[{i}][{j}] must be a dict with 'role' and 'content', got {m!r:.80}")
            if m["role"] not in ROLES:
                raise ValueError(f"batch[{i}][{j}]['role'] is {m['role']!r}; expected one of {ROLES}")
            if not isinstance(m["content"], str):
                raise TypeError(
                    f"batch[{i}][{j}]['content'] must be a string, got {type(m['content']).__name__}"
                )


@dataclass
class Usage:
    """Token accounting: totals since the model was created, plus the last call's numbers."""

    calls: int = 0
    requests: int = 0  # conversations generated (a call carries a batch of them)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    last_call: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(
        self, *, requests: int, prompt_tokens: int, completion_tokens: int, cache_hits: int = 0
    ) -> None:
        with self._lock:
            self.calls += 1
            self.requests += requests
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cache_hits += cache_hits
            self.last_call = {
                "requests": requests,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cache_hits": cache_hits,
            }

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("_lock", None)
        return d


@runtime_checkable
class ChatModel(Protocol):
    """Anything that turns a batch of conversations into one reply each."""

    name: str
    usage: Usage

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """One reply per conversation, in order. ``temperature == 0`` is greedy."""
        ...
