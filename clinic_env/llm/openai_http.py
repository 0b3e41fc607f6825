"""A ``ChatModel`` over any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, our server, hosted APIs).

The conversations of a batch are sent concurrently, up to ``concurrency`` at a time. 429 and 5xx answers and
timeouts are retried with exponential backoff (honouring ``Retry-After``); other 4xx answers fail at once with the
server's message, since retrying a bad request cannot help.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .base import LLMError, Message, Usage, check_batch

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIChatModel:
    """``openai:MODEL@URL``. The API key comes from the environment variable ``api_key_env`` (if set)."""

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
    ):
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("OpenAIChatModel needs httpx: pip install 'clinic-env[serve]'") from exc
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.name = f"openai:{model}@{base_url}"
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.usage = Usage()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIChatModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sleep_for(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        return min(self.backoff * (2**attempt), self.max_backoff) * (0.5 + random.random() / 2)

    def _one(self, messages: Sequence[Message], payload: dict[str, Any]) -> tuple[str, int, int]:
        body = {**payload, "messages": list(messages)}
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._client.post("/chat/completions", json=body)
            except (self._httpx.TimeoutException, self._httpx.TransportError) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                if attempt < self.max_retries:
                    time.sleep(self._sleep_for(attempt, None))
                    continue
                break
            if resp.status_code in RETRY_STATUS:
                last_problem = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if attempt < self.max_retries:
                    time.sleep(self._sleep_for(attempt, resp.headers.get("retry-after")))
                    continue
                break
            if resp.status_code >= 400:
                raise LLMError(f"{self.name}: HTTP {resp.status_code} (not retried): {_error_text(resp)}")
            try:
                data = resp.json()
                text = data["choices"][0]["message"]["content"]
                if not isinstance(text, str):
                    raise TypeError("content is not a string")
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise LLMError(f"{self.name}: malformed response body ({exc!r}): {resp.text[:200]}") from None
            usage = data.get("usage") or {}
            return text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        raise LLMError(
            f"{self.name}: gave up after {self.max_retries + 1} attempts; last problem: {last_problem}"
        )

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        check_batch(batch)
        payload: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            payload["seed"] = seed
        if len(batch) == 1:
            results = [self._one(batch[0], payload)]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch))) as pool:
                results = list(pool.map(lambda conv: self._one(conv, payload), batch))
        self.usage.record(
            requests=len(batch),
            prompt_tokens=sum(r[1] for r in results),
            completion_tokens=sum(r[2] for r in results),
        )
        return [r[0] for r in results]


def _error_text(resp: Any) -> str:
    try:
        err = resp.json().get("error")
        if isinstance(err, dict):
            return str(err.get("message", err))
        if err:
            return str(err)
    except ValueError:
        pass
    return resp.text[:300]
