"""Wrap a plain Python function as a ``ChatModel``: handy for tests, scripted judges and quick experiments."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import Message, Usage, check_batch


class CallableChatModel:
    """``fn(conversation) -> str`` applied to each conversation; ``calls`` records every batch it saw."""

    def __init__(self, fn: Callable[[Sequence[Message]], str], name: str = "callable"):
        self.fn = fn
        self.name = name
        self.usage = Usage()
        self.calls: list[list[list[Message]]] = []

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        check_batch(batch)
        self.calls.append([list(c) for c in batch])
        out = [self.fn(conv) for conv in batch]
        for i, r in enumerate(out):
            if not isinstance(r, str):
                raise TypeError(
                    f"{self.name}: the function returned {type(r).__name__} for conversation {i}, not str"
                )
        self.usage.record(requests=len(batch), prompt_tokens=0, completion_tokens=0)
        return out
