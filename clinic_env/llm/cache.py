"""An on-disk cache of identical requests, so evaluations and audits can be re-run for free.

Keyed by model name, messages and sampling settings. Only reproducible requests are cached: greedy ones
(``temperature == 0``) and seeded ones; an unseeded sampled request always reaches the model. The store is one
SQLite file (standard library), safe to share between processes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from .base import ChatModel, LLMError, Message, Usage, check_batch


def request_key(
    model: str, messages: Sequence[Message], *, max_tokens: int, temperature: float, seed: int | None
) -> str:
    blob = json.dumps(
        {
            "model": model,
            "messages": [[m["role"], m["content"]] for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedChatModel:
    """Wraps any ``ChatModel``; misses of a batch are sent to the inner model in one call."""

    def __init__(self, inner: ChatModel, path: str | Path):
        self.inner = inner
        self.name = inner.name
        self.usage = Usage()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, reply TEXT)")
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        check_batch(batch)
        cacheable = temperature == 0 or seed is not None
        keys = [
            request_key(self.name, conv, max_tokens=max_tokens, temperature=temperature, seed=seed)
            for conv in batch
        ]
        out: list[str | None] = [None] * len(batch)
        if cacheable:
            with self._lock:
                for i, k in enumerate(keys):
                    row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (k,)).fetchone()
                    if row is not None:
                        out[i] = row[0]
        misses = [i for i, r in enumerate(out) if r is None]
        before_p, before_c = self.inner.usage.prompt_tokens, self.inner.usage.completion_tokens
        if misses:
            replies = self.inner.generate(
                [batch[i] for i in misses], max_tokens=max_tokens, temperature=temperature, seed=seed
            )
            if len(replies) != len(misses):
                raise LLMError(f"{self.name}: asked for {len(misses)} replies, got {len(replies)}")
            for i, r in zip(misses, replies, strict=True):
                out[i] = r
            if cacheable:
                with self._lock:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO replies (key, model, reply) VALUES (?, ?, ?)",
                        [(keys[i], self.name, out[i]) for i in misses],
                    )
                    self._db.commit()
        self.usage.record(
            requests=len(batch),
            prompt_tokens=self.inner.usage.prompt_tokens - before_p,
            completion_tokens=self.inner.usage.completion_tokens - before_c,
            cache_hits=len(batch) - len(misses),
        )
        return [r for r in out if r is not None]
