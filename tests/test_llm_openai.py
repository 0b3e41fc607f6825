"""The OpenAI-compatible client against a small HTTP server on 127.0.0.1 with scripted faults."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("httpx")

from clinic_env.llm import LLMError, OpenAIChatModel, load_chat_model


class Script:
    """What the server answers to each successive request: a list of actions, then 'ok' forever."""

    def __init__(self, actions=()):
        self.actions = list(actions)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            return self.actions.pop(0) if self.actions else "ok"


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, body: str, headers: dict | None = None):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.requests.append(body)
                script.headers.append(dict(self.headers))
            action = script.next()
            if action == "429":
                return self._send(429, '{"error": {"message": "slow down"}}', {"Retry-After": "0"})
            if action == "503":
                return self._send(503, '{"error": "overloaded"}')
            if action == "400":
                return self._send(400, '{"error": {"message": "max_tokens too large"}}')
            if action == "sleep":
                time.sleep(0.6)
            if action == "malformed":
                return self._send(200, '{"choices": []}')
            last = body["messages"][-1]["content"]
            reply = {
                "choices": [{"message": {"role": "assistant", "content": f"echo: {last}"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            }
            return self._send(200, json.dumps(reply))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield script
    httpd.shutdown()
    httpd.server_close()


def _model(server, **kw):
    kw.setdefault("backoff", 0.01)
    return OpenAIChatModel("tiny", server.url, **kw)


def conv(text):
    return [{"role": "user", "content": text}]


def test_batch_is_answered_in_order_with_usage(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    m = load_chat_model(f"openai:tiny@{server.url}", concurrency=4)
    out = m.generate([conv(f"q{i}") for i in range(6)], max_tokens=5, temperature=0.0, seed=3)
    assert out == [f"echo: q{i}" for i in range(6)]
    assert len(server.requests) == 6
    assert all(r["model"] == "tiny" and r["max_tokens"] == 5 and r["seed"] == 3 for r in server.requests)
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert (m.usage.prompt_tokens, m.usage.completion_tokens, m.usage.requests) == (18, 12, 6)


def test_429_then_success_is_retried(server):
    server.actions = ["429", "503"]
    assert _model(server).generate([conv("hi")]) == ["echo: hi"]
    assert len(server.requests) == 3


def test_timeout_is_retried_then_succeeds(server):
    server.actions = ["sleep"]
    m = _model(server, timeout=0.3)
    assert m.generate([conv("late")]) == ["echo: late"]
    assert len(server.requests) == 2


def test_retries_are_bounded(server):
    server.actions = ["503"] * 10
    with pytest.raises(LLMError, match="gave up after 3 attempts; last problem: HTTP 503"):
        _model(server, max_retries=2).generate([conv("x")])
    assert len(server.requests) == 3


def test_client_errors_are_not_retried_and_say_why(server):
    server.actions = ["400"]
    with pytest.raises(LLMError, match=r"HTTP 400 \(not retried\): max_tokens too large"):
        _model(server).generate([conv("x")])
    assert len(server.requests) == 1


def test_malformed_body_is_a_clear_error(server):
    server.actions = ["malformed"]
    with pytest.raises(LLMError, match="malformed response body"):
        _model(server).generate([conv("x")])


def test_unreachable_server(server):
    m = OpenAIChatModel("tiny", "http://127.0.0.1:9/v1", max_retries=1, backoff=0.01, timeout=0.5)
    with pytest.raises(LLMError, match="gave up after 2 attempts"):
        m.generate([conv("x")])
