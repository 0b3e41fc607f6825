"""An OpenAI-compatible HTTP server (FastAPI + uvicorn) for any clinic-env model.

    clinic-env serve --model PATH [--draft PATH] [--quant int8|int4] [--host 127.0.0.1 --port 8000]
    python -m deploy.server --model PATH ...             # the same without the clinic-env CLI

Endpoints: ``POST /v1/chat/completions`` (plain, or SSE streaming with ``"stream": true``), ``POST
/v1/completions``, ``GET /v1/models``, ``GET /health`` and ``GET /metrics`` (Prometheus text, counters named like
vLLM's). Concurrent requests are batched into one ``generate`` call (``deploy/serve_batcher.py``).

Limits, each with a clear error: request body size (413), ``max_tokens`` cap (422 naming the cap), a bound on
waiting requests (429 with ``Retry-After``), a per-request timeout counted from arrival (504). Malformed JSON is a
400; a body of the wrong shape or types is a 422 listing every bad field. Errors use OpenAI's body,
``{"error": {"message", "type", "param", "code"}}``, so OpenAI clients show the message.

The model is a ``deploy.engine.Engine`` when that module exists; otherwise a plain ``TransformersChatModel``
(no quantization, no speculative decoding), wrapped by ``deploy.serve_models.ChatModelAdapter``. ``create_app``
takes any ``ChatModel`` or ``ServedModel``: tests serve a ``CallableChatModel``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clinic_env.llm.base import Message

from .serve_batcher import Job, MicroBatcher, QueueFull, Result, Sampling
from .serve_models import SPEC_KEYS, ServedModel, as_served

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("the server needs fastapi and uvicorn: pip install 'clinic-env[serve]'") from exc

QUANT_CHOICES = ("int8", "int4")


# --- configuration ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """The server's limits and batching settings (CLI options of the same names)."""

    max_batch: int = 32  # requests per generate call
    batch_wait_ms: float = 5.0  # how long a lone request waits for company
    queue_size: int = 256  # waiting requests beyond this get 429
    max_tokens_cap: int = 1024  # a request asking for more gets 422
    default_max_tokens: int = 256  # chat requests that do not say (completions default to 16, like OpenAI)
    timeout_s: float = 120.0  # per request, from arrival to the last token; 504 after
    max_body_bytes: int = 1_000_000  # 413 above
    model_name: str | None = None  # the id clients send as "model"; default: the model's own name

    def __post_init__(self) -> None:
        for name in ("max_batch", "queue_size", "max_tokens_cap", "default_max_tokens", "max_body_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ServerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"ServerConfig.batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if self.timeout_s <= 0:
            raise ValueError(f"ServerConfig.timeout_s must be > 0, got {self.timeout_s}")


# --- request bodies (OpenAI's shapes; strict types, unknown fields rejected) -------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessageIn(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def as_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return Message(role=self.role, content=text)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampled(_Strict):
    """Fields shared by chat and text completions; values this server cannot honour are refused, not ignored."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @model_validator(mode="after")
    def _supported(self) -> _Sampled:
        if self.top_p != 1.0:
            raise ValueError(f"top_p={self.top_p} is not supported: send top_p=1 or leave it out")
        if self.n != 1:
            raise ValueError(f"n={self.n} is not supported: send one request per choice")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) != 0:
                raise ValueError(f"{name} is not supported: send 0 or leave it out")
        stops = self.stop_list()
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop must be a non-empty string or a list of at most 4 non-empty strings")
        return self

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampled):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream_options: StreamOptions | None = None

    def conversation(self) -> list[Message]:
        return [m.as_message() for m in self.messages]


class CompletionRequest(_Sampled):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None

    @model_validator(mode="after")
    def _completion_supported(self) -> CompletionRequest:
        if self.stream:
            raise ValueError(
                "stream=true is not supported on /v1/completions; stream with /v1/chat/completions"
            )
        if self.echo or self.logprobs is not None:
            raise ValueError("echo and logprobs are not supported on /v1/completions")
        prompts = self.prompts()
        if not prompts or any(not p for p in prompts):
            raise ValueError("prompt must be a non-empty string or a non-empty list of non-empty strings")
        return self

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


# --- errors ------------------------------------------------------------------------------------------------------


class APIError(Exception):
    """An error answered in OpenAI's format."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.headers = (
            status,
            message,
            type_,
            param,
            headers,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}
        }


_UNION_BRANCHES = frozenset({"str", "list[str]", "list[TextPart]"})


def _either(msgs: list[str]) -> str:
    """``Input should be a valid string or a valid array`` from the messages of a union's branches."""
    lead = "Input should be "
    if len(msgs) > 1 and all(m.startswith(lead) for m in msgs):
        return lead + " or ".join(m[len(lead) :] for m in msgs)
    return " or ".join(msgs)


def _describe_validation(exc: ValidationError) -> tuple[str, str | None]:
    """Every problem as ``field: message (got value)``, and the first bad field's name. A value that fits no
    branch of a union (``stop``: string or list) gets one line listing what each branch wanted."""
    by_field: dict[str, tuple[list[str], str]] = {}
    for err in exc.errors(include_url=False):
        # union branches add their type names to the location; keep the field path readable
        loc = ".".join(str(x) for x in err["loc"] if str(x) not in _UNION_BRANCHES)
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) or err["type"] == "missing" else f" (got {got!r:.60})"
        msgs, _ = by_field.setdefault(loc, ([], shown))
        if msg not in msgs:
            msgs.append(msg)
    parts = [
        f"{loc}: {_either(msgs)}{shown}" if loc else " ".join(msgs) for loc, (msgs, shown) in by_field.items()
    ]
    first = next((loc for loc in by_field if loc), None)
    return "; ".join(parts), first


async def _read_body(request: Request, cls: type[BaseModel], limit: int) -> Any:
    """The body parsed into ``cls``: 413 when too large, 400 when not JSON, 422 when the wrong shape."""
    too_large = APIError(
        413,
        f"request body is larger than this server's limit of {limit} bytes (--max-body-bytes); send less",
        param=None,
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        return cls.model_validate_json(bytes(body))
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            detail = exc.errors()[0].get("ctx", {}).get("error", "")
            raise APIError(
                400, f"request body is not valid JSON ({detail}); send a JSON object", param=None
            ) from None
        message, param = _describe_validation(exc)
        raise APIError(422, f"invalid request: {message}", param=param) from None


# --- metrics -----------------------------------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ServerMetrics:
    """Counters kept by the server (everything runs on the event loop thread, so no lock is needed)."""

    def __init__(self) -> None:
        self.success: collections.Counter[str] = collections.Counter()  # by finish_reason
        self.responses: collections.Counter[int] = collections.Counter()  # by HTTP status
        self.rejected: collections.Counter[str] = collections.Counter()  # by reason

    def render(self, model: ServedModel, batcher: MicroBatcher, name: str) -> str:
        """Prometheus text format 0.0.4. Written by hand rather than with prometheus_client: every value is a
        snapshot pulled at scrape time (engine stats, batcher state), which is a few lines here and keeps the
        ``serve`` extra free of another dependency."""
        stats = model.stats()
        label = f'model_name="{_escape(name)}"'
        lines: list[str] = []

        def family(metric: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {metric} {help_}")
            lines.append(f"# TYPE {metric} {kind}")
            for labels, value in samples:
                lines.append(f"{metric}{{{labels}}} {float(value)!r}")

        family(
            "vllm:request_success_total",
            "counter",
            "Count of successfully processed requests.",
            [(f'{label},finished_reason="{r}"', self.success[r]) for r in ("stop", "length")],
        )
        family(
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            [(label, stats.get("prompt_tokens", 0))],
        )
        family(
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            [(label, stats.get("generation_tokens", 0))],
        )
        helps = {
            "spec_decode_num_drafts": "Number of spec decoding drafts.",
            "spec_decode_num_draft_tokens": "Number of draft tokens.",
            "spec_decode_num_accepted_tokens": "Number of accepted tokens.",
        }
        for key in SPEC_KEYS:
            family(f"vllm:{key}_total", "counter", helps[key], [(label, stats.get(key, 0))])
        family(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            [(label, batcher.running)],
        )
        family(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            [(label, batcher.waiting)],
        )
        family(
            "clinic_env:model_requests_total",
            "counter",
            "Requests the model has generated for (engine count).",
            [(label, stats.get("requests", 0))],
        )
        family(
            "clinic_env:batches_total",
            "counter",
            "Model calls made by the micro-batcher.",
            [(label, batcher.batches)],
        )
        family(
            "clinic_env:batched_requests_total",
            "counter",
            "Requests served by those model calls (divide by batches_total for the mean batch size).",
            [(label, batcher.batched_requests)],
        )
        family(
            "clinic_env:requests_rejected_total",
            "counter",
            "Requests refused or abandoned by the server, by reason.",
            [(f'{label},reason="{r}"', self.rejected[r]) for r in ("queue_full", "timeout")],
        )
        family(
            "clinic_env:http_responses_total",
            "counter",
            "HTTP responses by status code.",
            [(f'{label},code="{c}"', n) for c, n in sorted(self.responses.items())],
        )
        return "\n".join(lines) + "\n"


class _CountResponses:
    """ASGI middleware counting responses by status (for ``clinic_env:http_responses_total``)."""

    def __init__(self, app: Any, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.metrics.responses[int(message["status"])] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


# --- the app -----------------------------------------------------------------------------------------------------


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


def _usage(results: Sequence[Result]) -> dict[str, int] | None:
    if any(r.prompt_tokens is None or r.completion_tokens is None for r in results):
        return None  # the model exposes no tokenizer: no honest count to give
    p = sum(r.prompt_tokens or 0 for r in results)
    c = sum(r.completion_tokens or 0 for r in results)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def create_app(model: Any, config: ServerConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``model`` (a ``ServedModel``, or any ``ChatModel``, which gets an adapter)."""
    cfg = config or ServerConfig()
    served = as_served(model, model_name=cfg.model_name)
    name = cfg.model_name or served.model_name
    batcher = MicroBatcher(
        served, max_batch=cfg.max_batch, max_wait_s=cfg.batch_wait_ms / 1000, queue_size=cfg.queue_size
    )
    metrics = ServerMetrics()
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="clinic-env OpenAI-compatible server", lifespan=lifespan)
    app.state.model, app.state.batcher, app.state.metrics, app.state.config = served, batcher, metrics, cfg
    app.add_middleware(_CountResponses, metrics=metrics)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        hint = (
            " (see GET /v1/models, POST /v1/chat/completions, POST /v1/completions)"
            if exc.status_code == 404
            else ""
        )
        err = APIError(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}{hint}")
        return JSONResponse(err.body(), status_code=exc.status_code)

    def check_request(req: _Sampled, max_tokens: int | None, default: int) -> Sampling:
        if req.model is not None and req.model != name:
            raise APIError(
                404,
                f"the model {req.model!r} is not served here; this server serves {name!r} (GET /v1/models)",
                "model_not_found",
                param="model",
            )
        wanted = default if max_tokens is None else max_tokens
        if wanted > cfg.max_tokens_cap:
            raise APIError(
                422,
                f"max_tokens={wanted} exceeds this server's cap of {cfg.max_tokens_cap} (--max-tokens-cap); "
                f"ask for at most {cfg.max_tokens_cap}",
                param="max_tokens",
            )
        return Sampling(min(wanted, cfg.max_tokens_cap), req.temperature, req.seed, req.stop_list())

    def enqueue(kind: Literal["chat", "completion", "stream"], payloads: list[Any], s: Sampling) -> list[Job]:
        try:
            return batcher.submit(kind, payloads, s)
        except QueueFull as exc:
            metrics.rejected["queue_full"] += 1
            raise APIError(429, str(exc), "rate_limit_exceeded", headers={"Retry-After": "1"}) from None

    def timed_out() -> APIError:
        metrics.rejected["timeout"] += 1
        return APIError(
            504,
            f"the request did not finish within the server's timeout of {cfg.timeout_s:g} s (--timeout); "
            "the server is busy or max_tokens is large: retry later or ask for fewer tokens",
            "timeout",
        )

    def model_failed(exc: BaseException) -> APIError:
        if isinstance(exc, RuntimeError) and "shutting down" in str(exc):
            return APIError(503, str(exc), "server_error")
        return APIError(500, f"the model failed: {type(exc).__name__}: {exc}", "server_error")

    async def results_of(jobs: list[Job], deadline: float) -> list[Result]:
        try:
            return list(
                await asyncio.wait_for(
                    asyncio.gather(*(j.future for j in jobs)), max(0.0, deadline - time.monotonic())
                )
            )
        except asyncio.TimeoutError:
            for j in jobs:
                j.future.cancel()
            raise timed_out() from None
        except (APIError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise model_failed(exc) from None

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = batcher.alive
        body = {"status": "ok" if ok else "unavailable", "model": name, "waiting": batcher.waiting}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "clinic-env", "root": name}
        return {"object": "list", "data": [card]}

    @app.get("/metrics")
    async def prometheus() -> Response:
        text = metrics.render(served, batcher, name)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/completions")
    async def completions(request: Request) -> JSONResponse:
        deadline = time.monotonic() + cfg.timeout_s
        req = await _read_body(request, CompletionRequest, cfg.max_body_bytes)
        s = check_request(req, req.max_tokens, min(16, cfg.max_tokens_cap))
        results = await results_of(enqueue("completion", req.prompts(), s), deadline)
        for r in results:
            metrics.success[r.finish_reason] += 1
        choices = [
            {"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
            for i, r in enumerate(results)
        ]
        return JSONResponse(
            {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": name,
                "choices": choices,
                "usage": _usage(results),
            }
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        deadline = time.monotonic() + cfg.timeout_s
        req = await _read_body(request, ChatCompletionRequest, cfg.max_body_bytes)
        wanted = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        s = check_request(req, wanted, min(cfg.default_max_tokens, cfg.max_tokens_cap))
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return await stream_chat(req.conversation(), s, deadline, include_usage)
        (result,) = await results_of(enqueue("chat", [req.conversation()], s), deadline)
        metrics.success[result.finish_reason] += 1
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": result.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": _usage([result]),
            }
        )

    async def stream_chat(
        conversation: list[Message], s: Sampling, deadline: float, include_usage: bool
    ) -> StreamingResponse:
        (job,) = enqueue("stream", [conversation], s)
        assert job.chunks is not None
        chunks = job.chunks

        def abandon() -> None:
            job.cancel.set()
            if not job.future.done():
                job.future.cancel()

        # Wait for the first piece before answering, so a timeout or a model failure is still a plain HTTP error.
        try:
            first = await asyncio.wait_for(chunks.get(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            abandon()
            raise timed_out() from None
        if isinstance(first, BaseException):
            abandon()
            raise model_failed(first)
        rid, made = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            body: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": made,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            if include_usage:
                body["usage"] = None
            return _sse(body)

        async def events() -> AsyncIterator[str]:
            try:
                yield chunk({"role": "assistant", "content": ""}, None)
                item = first
                while not isinstance(item, Result):
                    if isinstance(item, BaseException):
                        yield _sse(model_failed(item).body())
                        yield "data: [DONE]\n\n"
                        return
                    yield chunk({"content": item}, None)
                    try:
                        item = await asyncio.wait_for(chunks.get(), max(0.0, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        yield _sse(timed_out().body())
                        yield "data: [DONE]\n\n"
                        return
                metrics.success[item.finish_reason] += 1
                yield chunk({}, item.finish_reason)
                if include_usage:
                    yield _sse(
                        {
                            "id": rid,
                            "object": "chat.completion.chunk",
                            "created": made,
                            "model": name,
                            "choices": [],
                            "usage": _usage([item]),
                        }
                    )
                yield "data: [DONE]\n\n"
            finally:
                abandon()  # the client left early, or we are done: stop the worker either way

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


# --- running it --------------------------------------------------------------------------------------------------


class ServerThread:
    """Serve an app with uvicorn in a background thread on ``host`` and a free port (tests, notebooks, benchmarks).

    >>> from clinic_env.llm.callable import CallableChatModel
    >>> with ServerThread(create_app(CallableChatModel(lambda conv: "hi"))) as srv:  # doctest: +SKIP
    ...     print(srv.url)
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self.server: Any = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level=self.log_level, lifespan="on", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
        )
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > 30:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)


def engine_available() -> bool:
    """Whether ``deploy.engine`` (the quantized speculative engine) is present in this checkout."""
    return importlib.util.find_spec("deploy.engine") is not None


def build_model(
    model: str | Path,
    *,
    draft: str | Path | None = None,
    quant: str | None = None,
    gamma: int = 4,
    device: str = "cpu",
    dtype: str = "float32",
    max_batch: int = 32,
) -> tuple[Any, str]:
    """The model to serve and a one-line note on which backend it is.

    ``deploy.engine.Engine`` when that module exists (imported here, never at module import); otherwise a plain
    ``TransformersChatModel``, which cannot quantize or speculate, so ``draft``/``quant`` are refused then.
    """
    if quant is not None and quant not in QUANT_CHOICES:
        raise ValueError(f"--quant must be one of {', '.join(QUANT_CHOICES)}, got {quant!r}")
    if gamma < 1:
        raise ValueError(f"--gamma (draft tokens per step) must be >= 1, got {gamma}")
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(
            f"model path {str(path)!r} does not exist (models load from local folders only)"
        )
    if draft is not None and not Path(draft).exists():
        raise FileNotFoundError(f"draft model path {str(draft)!r} does not exist")
    if engine_available():
        from deploy.engine import Engine

        engine = Engine(
            path, draft=draft, quant=quant, gamma=gamma, device=device, dtype=dtype, max_batch=max_batch
        )
        extras = [f"quant={quant}" if quant else "", f"draft={draft} gamma={gamma}" if draft else ""]
        return engine, "deploy.engine.Engine " + " ".join(e for e in extras if e)
    if draft is not None or quant is not None:
        raise RuntimeError(
            "--draft and --quant need deploy/engine.py (the quantized speculative engine), which is not in this "
            "checkout; serve without them to use the plain transformers backend"
        )
    from clinic_env.llm.hf import TransformersChatModel

    hf = TransformersChatModel(path, dtype=dtype, device=device)
    note = (
        "deploy.engine is not available: serving with the plain transformers backend "
        "(no quantization, no speculative decoding)"
    )
    return as_served(hf, model_name=str(model)), note


def serve(
    model: str | Path,
    *,
    draft: str | Path | None = None,
    quant: str | None = None,
    gamma: int = 4,
    device: str = "cpu",
    dtype: str = "float32",
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    log_level: str = "info",
    announce: Any = print,
) -> None:
    """Build the model and serve it until interrupted (blocking)."""
    import uvicorn

    cfg = config or ServerConfig()
    served, note = build_model(
        model, draft=draft, quant=quant, gamma=gamma, device=device, dtype=dtype, max_batch=cfg.max_batch
    )
    app = create_app(served, cfg)
    announce(f"serving {app.state.model.model_name!r} on http://{host}:{port}/v1 ({note})")
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)


def main(argv: list[str] | None = None) -> None:
    """``python -m deploy.server``: the same options as ``clinic-env serve``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="local model folder")
    ap.add_argument("--draft", help="draft model folder (speculative decoding; needs deploy.engine)")
    ap.add_argument("--quant", choices=QUANT_CHOICES, help="weight quantization (needs deploy.engine)")
    ap.add_argument("--gamma", type=int, default=4, help="draft tokens per speculative step")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-batch", type=int, default=ServerConfig.max_batch)
    ap.add_argument("--max-tokens-cap", type=int, default=ServerConfig.max_tokens_cap)
    ap.add_argument("--queue-size", type=int, default=ServerConfig.queue_size)
    ap.add_argument("--timeout", type=float, default=ServerConfig.timeout_s, help="seconds per request")
    ap.add_argument("--max-body-bytes", type=int, default=ServerConfig.max_body_bytes)
    ap.add_argument("--batch-wait-ms", type=float, default=ServerConfig.batch_wait_ms)
    ap.add_argument("--log-level", default="info")
    a = ap.parse_args(argv)
    cfg = ServerConfig(
        max_batch=a.max_batch,
        max_tokens_cap=a.max_tokens_cap,
        queue_size=a.queue_size,
        timeout_s=a.timeout,
        max_body_bytes=a.max_body_bytes,
        batch_wait_ms=a.batch_wait_ms,
    )
    serve(
        a.model,
        draft=a.draft,
        quant=a.quant,
        gamma=a.gamma,
        device=a.device,
        dtype=a.dtype,
        host=a.host,
        port=a.port,
        config=cfg,
        log_level=a.log_level,
    )


if __name__ == "__main__":
    main()
