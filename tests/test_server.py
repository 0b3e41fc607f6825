"""The OpenAI-compatible server (deploy/server.py) on real sockets on 127.0.0.1: endpoints, batching, limits,
errors, metrics, the official openai client, our OpenAIChatModel client, and a tiny transformers model."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from clinic_env.llm.callable import CallableChatModel  # noqa: E402
from deploy.serve_batcher import Sampling  # noqa: E402
from deploy.serve_models import ChatModelAdapter, StopFilter, as_served, trim_at_stop  # noqa: E402
from deploy.server import ServerConfig, ServerThread, build_model, create_app, engine_available  # noqa: E402

USER = [{"role": "user", "content": "Where is the pain?"}]


def echo(conv) -> str:
    return "echo: " + conv[-1]["content"]


def wait_until(pred, timeout: float = 10.0, what: str = "condition") -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Gate:
    """A model function that blocks every call until released, and says when a call has started."""

    def __init__(self, fn=echo):
        self.fn = fn
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conv) -> str:
        self.entered.set()
        assert self.release.wait(20), "test never released the gate"
        return self.fn(conv)


def chat(client, content: str = "hi", **extra):
    body = {"model": "echo", "messages": [{"role": "user", "content": content}], **extra}
    return client.post("/v1/chat/completions", json=body)


@pytest.fixture(scope="module")
def echo_server():
    model = CallableChatModel(echo, name="echo")
    cfg = ServerConfig(max_tokens_cap=64, max_body_bytes=20_000)
    with ServerThread(create_app(model, cfg)) as srv:
        srv.model = model
        with httpx.Client(base_url=srv.url, timeout=20) as client:
            srv.client = client
            yield srv


# --- a small Prometheus text-format parser (strict about the parts we emit) -----------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\",?)*)\}})? (\S+)$")


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """``{(name, labels): value}``; raises on any line that is not valid text format 0.0.4."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset], float] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert re.match(rf"^# HELP {_NAME} .+$", line), line
        elif line.startswith("# TYPE "):
            m = re.match(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$", line)
            assert m, line
            typed[m.group(1)] = m.group(2)
        else:
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.groups()
            assert name in typed, f"{name} has no TYPE line"
            pairs = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
            samples[(name, pairs)] = float(value)
            if typed[name] == "counter":
                assert float(value) >= 0
    try:  # the reference parser too, when installed
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        pass
    else:
        assert list(text_string_to_metric_families(text))
    return samples


def metric(samples, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    hits = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    assert hits, f"no sample {name} {labels}"
    return sum(hits)


# --- endpoints ---------------------------------------------------------------------------------------------------


def test_chat_completion_shape(echo_server):
    r = chat(echo_server.client, "Does it hurt?", max_tokens=8, temperature=0)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "echo"
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "echo: Does it hurt?"}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] is None  # a CallableChatModel has no tokenizer: no counts rather than made-up ones


def test_content_parts_system_and_history(echo_server):
    seen = []
    model = CallableChatModel(lambda conv: seen.append(conv) or "ok", name="m")
    with ServerThread(create_app(model)) as srv:
        msgs = [
            {"role": "system", "content": "You are a patient."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Any "}, {"type": "text", "text": "allergies?"}],
            },
            {"role": "assistant", "content": "No."},
            {"role": "user", "content": "Do you smoke?"},
        ]
        r = httpx.post(srv.url + "/v1/chat/completions", json={"messages": msgs})
    assert r.status_code == 200, r.text
    assert [m["content"] for m in seen[0]] == ["You are a patient.", "Any allergies?", "No.", "Do you smoke?"]


def test_models_and_health(echo_server):
    models = echo_server.client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["echo"]
    health = echo_server.client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_completions_single_and_list(echo_server):
    r = echo_server.client.post(
        "/v1/completions", json={"model": "echo", "prompt": ["one", "two"], "max_tokens": 4}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion"
    # a ChatModel without a raw-prompt mode gets each prompt as one user message
    assert [c["text"] for c in body["choices"]] == ["echo: one", "echo: two"]
    assert [c["index"] for c in body["choices"]] == [0, 1]


def test_stop_strings_plain_and_streamed(echo_server):
    r = chat(echo_server.client, "alpha STOP beta", stop=["STOP", "zzz"])
    assert r.json()["choices"][0]["message"]["content"] == "echo: alpha "
    with echo_server.client.stream(
        "POST", "/v1/chat/completions", json={"messages": USER, "stream": True, "stop": "pain"}
    ) as resp:
        events = [line for line in resp.iter_lines() if line]
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "echo: Where is the "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_sse_stream_format(echo_server):
    body = {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    with echo_server.client.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert len({p["id"] for p in payloads}) == 1
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert payloads[-1]["choices"] == [] and "usage" in payloads[-1]  # the include_usage chunk
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert (
        "".join(p["choices"][0]["delta"].get("content", "") for p in payloads[:-1])
        == "echo: Where is the pain?"
    )


# --- bad requests ------------------------------------------------------------------------------------------------


def test_malformed_json_is_400(echo_server):
    r = echo_server.client.post(
        "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


def test_wrong_types_are_422_naming_each_field(echo_server):
    r = echo_server.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "doctor", "content": 3}], "max_tokens": "lots", "temperature": "hot"},
    )
    assert r.status_code == 422
    err = r.json()["error"]
    msg = err["message"]
    for field in ("messages.0.role", "messages.0.content", "max_tokens", "temperature"):
        assert field in msg, msg
    assert "'doctor'" in msg and err["param"] in ("messages.0.role", "max_tokens")
    assert chat(echo_server.client, messages_missing=True).status_code == 422  # unknown field
    r = echo_server.client.post("/v1/chat/completions", json={"messages": []})
    assert r.status_code == 422 and "messages" in r.json()["error"]["message"]
    r = echo_server.client.post("/v1/chat/completions", json=[1, 2])
    assert r.status_code == 422


def test_unsupported_values_are_refused_not_ignored(echo_server):
    r = chat(echo_server.client, top_p=0.5)
    assert r.status_code == 422 and "top_p" in r.json()["error"]["message"]
    r = chat(echo_server.client, n=3)
    assert r.status_code == 422 and "n=3" in r.json()["error"]["message"]
    r = echo_server.client.post("/v1/completions", json={"prompt": "x", "stream": True})
    assert r.status_code == 422 and "/v1/chat/completions" in r.json()["error"]["message"]


def test_max_tokens_cap_is_named(echo_server):
    r = chat(echo_server.client, max_tokens=65)
    assert r.status_code == 422
    err = r.json()["error"]
    assert "64" in err["message"] and err["param"] == "max_tokens"
    assert chat(echo_server.client, max_completion_tokens=1000).status_code == 422
    assert chat(echo_server.client, max_tokens=64).status_code == 200


def test_body_too_large_is_413(echo_server):
    big = {"messages": [{"role": "user", "content": "x" * 30_000}]}
    r = echo_server.client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and "20000 bytes" in r.json()["error"]["message"]

    def chunked():  # no content-length: the server counts while reading
        for _ in range(30):
            yield b"x" * 1000

    r = echo_server.client.post("/v1/chat/completions", content=chunked())
    assert r.status_code == 413


def test_unknown_model_and_route(echo_server):
    r = echo_server.client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": USER})
    assert r.status_code == 404 and "'echo'" in r.json()["error"]["message"]
    assert echo_server.client.get("/v1/nothing").status_code == 404


def test_model_failure_is_500_and_server_survives():
    def fn(conv):
        if "boom" in conv[-1]["content"]:
            raise ValueError("cannot answer that")
        return "fine"

    with (
        ServerThread(create_app(CallableChatModel(fn, name="m"))) as srv,
        httpx.Client(base_url=srv.url) as c,
    ):
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "boom"}]})
        assert r.status_code == 500 and "ValueError: cannot answer that" in r.json()["error"]["message"]
        r = c.post("/v1/chat/completions", json={"messages": USER})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fine"


# --- batching, queue bound, timeout ------------------------------------------------------------------------------


async def _parallel(url: str, contents: list[str], **extra) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        return await asyncio.gather(
            *(
                c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": t}], **extra})
                for t in contents
            )
        )


def test_concurrent_requests_are_batched():
    gate = Gate()
    model = CallableChatModel(gate, name="m")
    n = 12
    with ServerThread(create_app(model, ServerConfig(max_batch=32, batch_wait_ms=2))) as srv:
        batcher = srv.app.state.batcher

        def run():
            run.out = asyncio.run(_parallel(srv.url, [f"q{i}" for i in range(n)]))

        t = threading.Thread(target=run)
        t.start()
        assert gate.entered.wait(10)
        wait_until(lambda: batcher.waiting + batcher.running == n, what="all requests to arrive")
        gate.release.set()
        t.join(30)
        responses = run.out
        metrics = parse_prometheus(httpx.get(srv.url + "/metrics").text)
    assert [r.status_code for r in responses] == [200] * n
    # each client got the reply to its own question, though they were answered together
    assert [r.json()["choices"][0]["message"]["content"] for r in responses] == [
        f"echo: q{i}" for i in range(n)
    ]
    assert len(model.calls) <= 2 < n
    assert sum(len(c) for c in model.calls) == n
    assert metric(metrics, "clinic_env:batches_total") == len(model.calls)
    assert metric(metrics, "clinic_env:batched_requests_total") == n


class RecordingModel:
    """A ChatModel that records the sampling settings of each call."""

    name = "rec"

    def __init__(self):
        from clinic_env.llm.base import Usage

        self.usage = Usage()
        self.calls: list[tuple[int, float, int | None, int]] = []
        self.gate = threading.Event()

    def generate(self, batch, *, max_tokens=256, temperature=0.0, seed=None):
        self.gate.wait(20)
        self.calls.append((max_tokens, temperature, seed, len(batch)))
        return [f"t={temperature}" for _ in batch]


def test_batches_group_by_sampling_settings():
    model = RecordingModel()
    with ServerThread(create_app(model, ServerConfig(batch_wait_ms=2))) as srv:
        batcher = srv.app.state.batcher

        async def mixed():
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
                bodies = [{"messages": USER, "temperature": t, "max_tokens": 5} for t in (0.0, 0.5) * 4]
                # greedy requests batch across seeds: the seed does not matter when temperature is 0
                bodies += [{"messages": USER, "temperature": 0.0, "max_tokens": 5, "seed": s} for s in (1, 2)]
                return await asyncio.gather(*(c.post("/v1/chat/completions", json=b) for b in bodies))

        def run():
            run.out = asyncio.run(mixed())

        t = threading.Thread(target=run)
        t.start()
        wait_until(lambda: batcher.waiting + batcher.running == 10, what="all requests to arrive")
        model.gate.set()
        t.join(30)
    assert all(r.status_code == 200 for r in run.out)
    assert [r.json()["choices"][0]["message"]["content"] for r in run.out] == ["t=0.0", "t=0.5"] * 4 + [
        "t=0.0"
    ] * 2
    assert all(max_tokens == 5 and seed is None for max_tokens, _, seed, _ in model.calls)
    by_temp = {t: sum(size for _, tt, _, size in model.calls if tt == t) for t in (0.0, 0.5)}
    assert by_temp == {0.0: 6, 0.5: 4}
    assert len(model.calls) <= 3  # the first call may have started alone; the rest grouped by settings
    assert Sampling(5, 0.0, 7) == Sampling(5, 0.0, None)


def test_queue_bound_answers_429():
    gate = Gate()
    cfg = ServerConfig(max_batch=1, queue_size=1, batch_wait_ms=0)
    with ServerThread(create_app(CallableChatModel(gate, name="m"), cfg)) as srv:
        batcher = srv.app.state.batcher
        results = {}

        def send(key):
            results[key] = httpx.post(srv.url + "/v1/chat/completions", json={"messages": USER}, timeout=30)

        a = threading.Thread(target=send, args=("running",))
        a.start()
        assert gate.entered.wait(10)  # the first request is on the model
        b = threading.Thread(target=send, args=("queued",))
        b.start()
        wait_until(lambda: batcher.waiting == 1, what="a queued request")
        r = httpx.post(srv.url + "/v1/chat/completions", json={"messages": USER})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert "queue is full" in r.json()["error"]["message"]
        metrics = parse_prometheus(httpx.get(srv.url + "/metrics").text)
        assert metric(metrics, "vllm:num_requests_waiting") == 1
        assert metric(metrics, "vllm:num_requests_running") == 1
        assert metric(metrics, "clinic_env:requests_rejected_total", reason="queue_full") == 1
        gate.release.set()
        a.join(30)
        b.join(30)
    assert results["running"].status_code == 200 and results["queued"].status_code == 200


def test_timeout_is_504_and_abandoned_requests_are_not_generated():
    gate = Gate()
    model = CallableChatModel(gate, name="m")
    cfg = ServerConfig(max_batch=1, batch_wait_ms=0, timeout_s=0.5)
    with ServerThread(create_app(model, cfg)) as srv:
        results = {}

        def send(key, content, **extra):
            body = {"messages": [{"role": "user", "content": content}], **extra}
            results[key] = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=30)

        threads = [threading.Thread(target=send, args=("first", "a"))]
        threads[0].start()
        assert gate.entered.wait(10)
        threads.append(threading.Thread(target=send, args=("queued", "b")))
        threads.append(threading.Thread(target=send, args=("stream", "c"), kwargs={"stream": True}))
        for t in threads[1:]:
            t.start()
        for t in threads:
            t.join(30)
        gate.release.set()
        time.sleep(0.2)
        metrics = parse_prometheus(httpx.get(srv.url + "/metrics").text)
    for key in ("first", "queued", "stream"):
        r = results[key]
        assert r.status_code == 504, (key, r.text)
        assert "timeout of 0.5 s" in r.json()["error"]["message"]
    # only the request already on the model ran; the two that gave up in the queue were dropped
    assert [[m["content"] for m in conv] for call in model.calls for conv in call] == [["a"]]
    assert metric(metrics, "clinic_env:requests_rejected_total", reason="timeout") == 3


# --- metrics -----------------------------------------------------------------------------------------------------


def test_metrics_parse_and_counters_move(echo_server):
    c = echo_server.client
    before = parse_prometheus(c.get("/metrics").text)
    assert chat(c, "one").status_code == 200
    assert chat(c, "two", stream=True).status_code == 200
    assert chat(c, max_tokens=10_000).status_code == 422
    resp = c.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    after = parse_prometheus(resp.text)
    for name in (
        "vllm:request_success_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:spec_decode_num_drafts_total",
        "vllm:spec_decode_num_draft_tokens_total",
        "vllm:spec_decode_num_accepted_tokens_total",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
    ):
        assert metric(after, name, model_name="echo") >= 0
    success = metric(after, "vllm:request_success_total") - metric(before, "vllm:request_success_total")
    assert success == 2
    assert (
        metric(after, "clinic_env:model_requests_total") - metric(before, "clinic_env:model_requests_total")
        == 2
    )
    assert metric(after, "clinic_env:http_responses_total", code="422") >= 1
    assert (
        metric(after, "vllm:spec_decode_num_drafts_total") == 0
    )  # no speculation behind a CallableChatModel


# --- clients -----------------------------------------------------------------------------------------------------


def test_official_openai_client(echo_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=echo_server.url + "/v1", api_key="unused", max_retries=0, timeout=20)
    r = client.chat.completions.create(model="echo", messages=USER, max_tokens=16, temperature=0)
    assert r.choices[0].message.content == "echo: Where is the pain?"
    assert r.choices[0].finish_reason == "stop"
    pieces = [
        ch.choices[0].delta.content or ""
        for ch in client.chat.completions.create(model="echo", messages=USER, stream=True)
        if ch.choices
    ]
    assert "".join(pieces) == "echo: Where is the pain?"
    c = client.completions.create(model="echo", prompt="abc", max_tokens=4)
    assert c.choices[0].text == "echo: abc"
    assert [m.id for m in client.models.list()] == ["echo"]
    with pytest.raises(openai.UnprocessableEntityError, match="cap of 64"):
        client.chat.completions.create(model="echo", messages=USER, max_tokens=100)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="other", messages=USER)


def test_openai_http_client_against_our_server(echo_server):
    from clinic_env.llm import LLMError, OpenAIChatModel

    with OpenAIChatModel("echo", echo_server.url + "/v1", max_retries=0) as llm:
        batch = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
        assert llm.generate(batch, max_tokens=16) == [f"echo: question {i}" for i in range(5)]
        assert llm.usage.requests == 5
        with pytest.raises(LLMError, match="cap of 64"):
            llm.generate(batch[:1], max_tokens=500)


# --- a real transformers model -----------------------------------------------------------------------------------


def test_tiny_transformers_model_end_to_end(tiny_model_path):
    openai = pytest.importorskip("openai")
    import torch

    from clinic_env.llm.hf import TransformersChatModel

    torch.set_num_threads(1)
    served = as_served(
        TransformersChatModel(tiny_model_path, dtype="float32", device="cpu"), model_name="tiny"
    )
    assert isinstance(served, ChatModelAdapter)
    with ServerThread(create_app(served, ServerConfig(max_tokens_cap=32))) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        before = parse_prometheus(httpx.get(srv.url + "/metrics").text)
        kw = {"model": "tiny", "messages": USER, "max_tokens": 12, "temperature": 1.0, "seed": 1}
        plain = client.chat.completions.create(**kw)
        text = plain.choices[0].message.content
        assert text  # the random model samples some text with this seed
        streamed = client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
        chunks = list(streamed)
        pieces = [ch.choices[0].delta.content or "" for ch in chunks if ch.choices]
        assert "".join(pieces) == text  # streaming gives the same sample as one call with the same seed
        assert len([p for p in pieces if p]) > 1  # and it really came in pieces
        assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
        assert plain.usage.prompt_tokens > 0 and 0 < plain.usage.completion_tokens <= 12
        assert plain.choices[0].finish_reason == ("length" if plain.usage.completion_tokens == 12 else "stop")
        comp = client.completions.create(
            model="tiny", prompt=["The patient", "Chest pain"], max_tokens=6, temperature=0
        )
        assert len(comp.choices) == 2 and all(isinstance(c.text, str) for c in comp.choices)
        after = parse_prometheus(httpx.get(srv.url + "/metrics").text)
    used = plain.usage.completion_tokens * 2 + comp.usage.completion_tokens
    assert (
        metric(after, "vllm:generation_tokens_total") - metric(before, "vllm:generation_tokens_total") == used
    )
    prompt = plain.usage.prompt_tokens * 2 + comp.usage.prompt_tokens
    assert metric(after, "vllm:prompt_tokens_total") - metric(before, "vllm:prompt_tokens_total") == prompt


def test_build_model_picks_engine_or_says_why_not(tiny_model_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="--quant must be one of"):
        build_model(tiny_model_path, quant="int3")
    if engine_available():
        served, note = build_model(tiny_model_path)
        assert note.startswith("deploy.engine.Engine")
    else:
        served, note = build_model(tiny_model_path)
        assert "plain transformers backend" in note
        assert served.model_name == str(tiny_model_path)
        with pytest.raises(RuntimeError, match=r"deploy/engine\.py"):
            build_model(tiny_model_path, quant="int8")


# --- pieces ------------------------------------------------------------------------------------------------------


def test_stop_helpers():
    assert trim_at_stop("abc STOP def stop", ["stop", "STOP"]) == ("abc ", True)
    assert trim_at_stop("abc", ["x"]) == ("abc", False)
    f = StopFilter(["</end>"])
    out = "".join(f.feed(p) for p in ["hello </", "en", "d> never"]) + f.flush()
    assert out == "hello " and f.stopped
    f = StopFilter(["</end>"])
    out = "".join(f.feed(p) for p in ["a </e", "x> b"]) + f.flush()
    assert out == "a </ex> b" and not f.stopped


def test_server_config_validates():
    with pytest.raises(ValueError, match="max_batch"):
        ServerConfig(max_batch=0)
    with pytest.raises(ValueError, match="timeout_s"):
        ServerConfig(timeout_s=0)


def test_cli_serve_command(tmp_path):
    from typer.testing import CliRunner

    from clinic_env.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["serve", "--help"])
    if res.exit_code != 0 or "--max-tokens-cap" not in res.output:
        pytest.skip("the serve command is not in clinic_env/cli.py in this checkout")
    for opt in ("--model", "--draft", "--quant", "--gamma", "--queue-size", "--timeout", "--max-batch"):
        assert opt in res.output
    res = runner.invoke(app, ["serve", "--model", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output


class WordEngine:
    """Implements the whole ServedModel protocol (as deploy.engine.Engine does): served without an adapter."""

    model_name = "engine"

    def __init__(self):
        self.stops: list = []
        self.drafts = 0

    def generate(self, batch, *, max_tokens=256, temperature=0.0, seed=None, stop=None):
        self.stops.append(stop)
        self.drafts += len(batch)
        return [f"reply to {conv[-1]['content']}" for conv in batch]

    def complete(self, prompts, *, max_tokens, temperature, seed, stop=None):
        return [p[::-1] for p in prompts]

    def stream(self, conversation, *, max_tokens, temperature, seed, stop=None):
        self.stops.append(stop)
        yield from ["one ", "two ", "three ", "four"]

    def stats(self):
        return {
            "requests": 7,
            "prompt_tokens": 11,
            "generation_tokens": 13,
            "spec_decode_num_drafts": self.drafts,
            "spec_decode_num_draft_tokens": 4 * self.drafts,
            "spec_decode_num_accepted_tokens": 3 * self.drafts,
        }


def test_a_full_served_model_is_used_directly():
    engine = WordEngine()
    assert as_served(engine) is engine
    with ServerThread(create_app(engine)) as srv, httpx.Client(base_url=srv.url, timeout=20) as c:
        r = c.post("/v1/chat/completions", json={"model": "engine", "messages": USER, "stop": ["zz"]})
        assert r.json()["choices"][0]["message"]["content"] == "reply to Where is the pain?"
        assert c.post("/v1/completions", json={"prompt": "abc"}).json()["choices"][0]["text"] == "cba"
        with c.stream(
            "POST", "/v1/chat/completions", json={"messages": USER, "stream": True, "stop": "three"}
        ) as s:
            chunks = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
        pieces = [ch["choices"][0]["delta"].get("content") for ch in chunks]
        assert pieces == ["", "one ", "two ", None]  # the stop string and what follows are never sent
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        m = parse_prometheus(c.get("/metrics").text)
    assert engine.stops == [["zz"], ["three"]]  # stop strings reach the engine
    assert metric(m, "vllm:spec_decode_num_drafts_total", model_name="engine") == 1
    assert metric(m, "vllm:spec_decode_num_draft_tokens_total") == 4
    assert metric(m, "vllm:spec_decode_num_accepted_tokens_total") == 3
    assert metric(m, "vllm:generation_tokens_total") == 13 and metric(m, "vllm:prompt_tokens_total") == 11


class EndlessStream(WordEngine):
    """Streams forever until closed; records that it was closed."""

    def __init__(self):
        super().__init__()
        self.closed = threading.Event()
        self.sent = 0

    def stream(self, conversation, *, max_tokens, temperature, seed, stop=None):
        try:
            while True:
                self.sent += 1
                time.sleep(0.002)
                yield "word "
        finally:
            self.closed.set()


def test_client_leaving_a_stream_stops_generation():
    engine = EndlessStream()
    with ServerThread(create_app(engine)) as srv:
        with httpx.Client(base_url=srv.url, timeout=20) as c:
            body = {"messages": USER, "stream": True}
            with c.stream("POST", "/v1/chat/completions", json=body) as s:
                lines = s.iter_lines()
                got = [next(lines) for _ in range(6)]
            assert any("word" in line for line in got)
        assert engine.closed.wait(10), "the model kept generating for a client that left"
        sent = engine.sent
        time.sleep(0.1)
        assert engine.sent == sent
        # the model thread is free again
        r = httpx.post(srv.url + "/v1/chat/completions", json={"messages": USER}, timeout=20)
        assert r.status_code == 200
