"""The server's micro-batcher: concurrent requests become one ``generate`` call on a single model thread.

Requests wait in a bounded FIFO queue (full: :class:`QueueFull`, which the server answers with 429). One asyncio
task forms batches: when a request arrives it waits ``max_wait_s`` (a few ms) for company, unless ``max_batch``
requests are already waiting, then takes the oldest request and every waiting request with the same sampling
settings (kind, ``max_tokens``, temperature, seed, stop strings), up to ``max_batch``, and runs them as one call
on the model worker, a single thread: the models are not thread-safe, and one forward pass over a batch beats
several small ones fighting for the same cores. While a batch runs, new requests queue up, so under load every
call is a full batch. A streamed request runs alone, its pieces handed to the event loop as they come.

Everything that touches the model or its tokenizer (generation, stop strings, token counts for ``usage``) runs
on the worker thread: fast tokenizers are not safe to share between threads.

Why not an existing library: the batching has to sit in front of a synchronous ``generate(batch)`` with our
grouping rule and queue bound; the usual tools (vLLM's scheduler, Ray Serve's ``@serve.batch``) need their own
engine or runtime, so this is about 200 lines of asyncio instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from clinic_env.llm.base import Message

from .serve_models import ServedModel, StopFilter, trim_at_stop

Kind = Literal["chat", "completion", "stream"]


class QueueFull(RuntimeError):
    """The waiting queue is at its bound; the client should retry later (HTTP 429)."""


@dataclass(frozen=True)
class Sampling:
    """The settings a batch shares. Greedy decoding ignores the seed, so greedy requests batch across seeds."""

    max_tokens: int
    temperature: float
    seed: int | None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature == 0 and self.seed is not None:
            object.__setattr__(self, "seed", None)


@dataclass
class Result:
    """One finished request: its text, why it ended, and token counts (``None`` when no tokenizer is known)."""

    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass
class Job:
    kind: Kind
    payload: Any  # a conversation (chat, stream) or a prompt string (completion)
    sampling: Sampling
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    # streams only: pieces (str), then a Result or an exception; `cancel` tells the worker to stop
    chunks: asyncio.Queue | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> tuple[Kind, Sampling]:
        return (self.kind, self.sampling)


class TokenCounter:
    """Counts tokens with the model's tokenizer when it exposes one (``tokenizer``, and ``render`` for chat
    prompts, else the tokenizer's chat template); every count is ``None`` otherwise. Runs on the worker thread."""

    def __init__(self, model: Any):
        tok = getattr(model, "tokenizer", None)
        self.tok = tok if callable(getattr(tok, "encode", None)) else None
        self.model = model

    def text(self, text: str, *, special: bool = False) -> int | None:
        if self.tok is None:
            return None
        return len(self.tok.encode(text, add_special_tokens=special))

    def chat_prompt(self, conversation: Sequence[Message]) -> int | None:
        if self.tok is None:
            return None
        render = getattr(self.model, "render", None)
        prompt = render(conversation) if callable(render) else None
        if prompt is None:
            try:
                prompt = self.tok.apply_chat_template(
                    list(conversation), tokenize=False, add_generation_prompt=True
                )
            except Exception:  # no chat template: not countable
                return None
        return self.text(prompt)


class MicroBatcher:
    """Collects requests into batches and runs them on one model thread (see the module docstring)."""

    def __init__(
        self, model: ServedModel, *, max_batch: int = 32, max_wait_s: float = 0.005, queue_size: int = 256
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.model = model
        self.counter = TokenCounter(model)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self._queue: collections.deque[Job] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._enough: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.running = 0  # requests in the call now on the model thread
        self.batches = 0  # model calls made
        self.batched_requests = 0  # requests served by those calls
        self.largest_batch = 0

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the batching task on the running event loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._arrived, self._enough = asyncio.Event(), asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop batching; waiting requests fail with an error saying the server is shutting down."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    @property
    def alive(self) -> bool:
        """Whether the batching task is running (``/health`` reports it)."""
        return self._task is not None and not self._task.done()

    @property
    def waiting(self) -> int:
        """Requests in the queue that are still wanted."""
        return sum(1 for j in self._queue if not j.future.done())

    # --- submitting -----------------------------------------------------------------------------------------

    def submit(self, kind: Kind, payloads: Sequence[Any], sampling: Sampling) -> list[Job]:
        """Queue one job per payload, all or none; raises :class:`QueueFull` when they do not fit."""
        self.start()
        self._drop_abandoned()
        if len(self._queue) + len(payloads) > self.queue_size:
            raise QueueFull(
                f"the request queue is full ({len(self._queue)} waiting, bound {self.queue_size}); retry shortly"
            )
        loop = asyncio.get_running_loop()
        jobs = []
        for payload in payloads:
            job = Job(kind, payload, sampling, loop.create_future())
            if kind == "stream":
                job.chunks = asyncio.Queue()
            jobs.append(job)
        self._queue.extend(jobs)
        assert self._arrived is not None and self._enough is not None
        self._arrived.set()
        if len(self._queue) >= self.max_batch:
            self._enough.set()
        return jobs

    def _drop_abandoned(self) -> None:
        """Forget queued jobs whose client gave up (timed out or disconnected)."""
        if any(j.future.done() for j in self._queue):
            self._queue = collections.deque(j for j in self._queue if not j.future.done())

    # --- the batching loop ----------------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._arrived is not None and self._enough is not None
        loop = asyncio.get_running_loop()
        while True:
            self._drop_abandoned()
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if len(self._queue) < self.max_batch and self.max_wait_s > 0:
                self._enough.clear()
                with contextlib.suppress(asyncio.TimeoutError):  # give concurrent requests a moment to join
                    await asyncio.wait_for(self._enough.wait(), self.max_wait_s)
                self._drop_abandoned()
                if not self._queue:
                    continue
            batch = self._take_batch()
            self.running = len(batch)
            self.batches += 1
            self.batched_requests += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            try:
                if batch[0].kind == "stream":
                    await loop.run_in_executor(self._executor, self._run_stream, batch[0], loop)
                else:
                    results = await loop.run_in_executor(self._executor, self._run_batch, batch)
                    for job, res in zip(batch, results, strict=True):
                        if not job.future.done():
                            job.future.set_result(res)
            except Exception as exc:  # a model failure fails this batch, not the server
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
            finally:
                self.running = 0

    def _take_batch(self) -> list[Job]:
        """The oldest job and the waiting jobs that share its settings (a stream goes alone)."""
        first = self._queue.popleft()
        if first.kind == "stream":
            return [first]
        batch, rest = [first], collections.deque()
        while self._queue:
            job = self._queue.popleft()
            if len(batch) < self.max_batch and job.key == first.key:
                batch.append(job)
            else:
                rest.append(job)
        self._queue = rest
        return batch

    # --- on the model thread --------------------------------------------------------------------------------

    def _exact_counts(self, before: Any, n: int) -> list[tuple[int, int]] | None:
        """The model's exact (prompt, completion) token counts for its latest call, if it keeps them
        (``last_token_counts``, as ``ChatModelAdapter`` does for transformers models)."""
        after = getattr(self.model, "last_token_counts", None)
        return after if after is not before and isinstance(after, list) and len(after) == n else None

    def _finish(
        self, text: str, s: Sampling, prompt_tokens: int | None, exact_completion: int | None
    ) -> Result:
        """Cut at stop strings and count. ``finish_reason`` is ``length`` when the reply used every token it was
        allowed; token counts are exact when the model reports them, else the text is re-tokenized."""
        text, stopped = trim_at_stop(text, s.stop)
        n = exact_completion if exact_completion is not None and not stopped else self.counter.text(text)
        length = not stopped and n is not None and n >= s.max_tokens
        return Result(text, "length" if length else "stop", prompt_tokens, n)

    def _run_batch(self, batch: list[Job]) -> list[Result]:
        s = batch[0].sampling
        stop = list(s.stop) or None
        kwargs = {"max_tokens": s.max_tokens, "temperature": s.temperature, "seed": s.seed, "stop": stop}
        payloads = [j.payload for j in batch]
        before = getattr(self.model, "last_token_counts", None)
        if batch[0].kind == "chat":
            texts = self.model.generate(payloads, **kwargs)
        else:
            texts = self.model.complete(payloads, **kwargs)
        if len(texts) != len(batch):
            raise RuntimeError(f"the model returned {len(texts)} replies for a batch of {len(batch)}")
        exact = self._exact_counts(before, len(batch))
        if exact is not None:
            return [self._finish(t, s, p, c) for t, (p, c) in zip(texts, exact, strict=True)]
        count = (
            self.counter.chat_prompt if batch[0].kind == "chat" else partial(self.counter.text, special=True)
        )
        return [self._finish(t, s, count(p), None) for t, p in zip(texts, payloads, strict=True)]

    def _run_stream(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        """Iterate the model's stream, passing pieces to the event loop; ends with a Result or an exception."""
        assert job.chunks is not None
        put = job.chunks.put_nowait
        s = job.sampling
        filt = StopFilter(s.stop)
        sent: list[str] = []
        before = getattr(self.model, "last_token_counts", None)
        pieces = self.model.stream(
            job.payload,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            seed=s.seed,
            stop=list(s.stop) or None,
        )
        try:
            for piece in pieces:
                if job.cancel.is_set():
                    break
                out = filt.feed(piece)
                if out:
                    sent.append(out)
                    loop.call_soon_threadsafe(put, out)
                if filt.stopped:
                    break
            else:
                tail = filt.flush()
                if tail:
                    sent.append(tail)
                    loop.call_soon_threadsafe(put, tail)
        except Exception as exc:
            loop.call_soon_threadsafe(put, exc)
            return
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()  # stops generation early when the client left or a stop string came
        exact = self._exact_counts(before, 1)
        if exact is not None and not filt.stopped:
            result = self._finish("".join(sent), s, *exact[0])
        else:
            result = self._finish("".join(sent), s, self.counter.chat_prompt(job.payload), None)
            if filt.stopped:
                result.finish_reason = "stop"
        loop.call_soon_threadsafe(put, result)
