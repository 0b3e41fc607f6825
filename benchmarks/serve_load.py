"""Load test of the OpenAI-compatible server on loopback: N concurrent clients for D seconds against a tiny model.

Spawns ``python -m deploy.server`` (a tiny random Llama built at run time) twice: with micro-batching
(``--max-batch 32``) and without (``--max-batch 1``), each under the same load, so the batching gain is a ratio
measured within one run. Reports requests, p50/p99 latency, tokens/s, 5xx count, lost requests (sent, never
answered with an HTTP status) and malformed answers. A benchmark, not a CI test.

    python -m benchmarks.serve_load [--quick] [--clients 32] [--duration 30] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import write_result

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "Where exactly is the pain, and does it spread anywhere?",
    "When did this start, and was it sudden or gradual?",
    "Do you have any allergies to medicines?",
    "Which medicines do you take at the moment?",
    "Have you had anything like this before?",
    "Do you smoke or drink alcohol?",
    "Any fever, chills or night sweats?",
    "Is there anyone in your family with heart disease?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric(text: str, name: str) -> float:
    """Sum of a metric's samples in Prometheus text (0 when absent)."""
    pat = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.M)
    return sum(float(v) for v in pat.findall(text))


class Server:
    """``python -m deploy.server`` in a subprocess, on a free loopback port."""

    def __init__(self, model: Path, *, max_batch: int, threads: int, queue_size: int, timeout: float):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        cmd = [
            sys.executable,
            "-m",
            "deploy.server",
            "--model",
            str(model),
            "--port",
            str(self.port),
            "--max-batch",
            str(max_batch),
            "--queue-size",
            str(queue_size),
            "--timeout",
            str(timeout),
            "--log-level",
            "warning",
        ]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the server did not become ready in {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def _client(
    c: Any, deadline: float, rng: random.Random, args: argparse.Namespace, out: list[dict[str, Any]]
) -> None:
    import httpx

    while time.monotonic() < deadline:
        stream = rng.random() < args.stream_fraction
        body = {
            "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
            "max_tokens": args.max_tokens,
            "temperature": 1.0,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        rec: dict[str, Any] = {"stream": stream, "status": None, "tokens": 0, "ok": False}
        t0 = time.perf_counter()
        try:
            if stream:
                async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                    rec["status"] = r.status_code
                    events = [line async for line in r.aiter_lines() if line.startswith("data: ")]
                if r.status_code == 200:
                    chunks = [json.loads(e[6:]) for e in events[:-1]]
                    rec["ok"] = events[-1] == "data: [DONE]" and all("error" not in ch for ch in chunks)
                    rec["tokens"] = (chunks[-1].get("usage") or {}).get("completion_tokens", 0)
            else:
                r = await c.post("/v1/chat/completions", json=body)
                rec["status"] = r.status_code
                if r.status_code == 200:
                    data = r.json()
                    rec["ok"] = isinstance(data["choices"][0]["message"]["content"], str)
                    rec["tokens"] = (data.get("usage") or {}).get("completion_tokens", 0)
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"[:200]
        rec["latency_s"] = time.perf_counter() - t0
        out.append(rec)


async def _load(url: str, args: argparse.Namespace, duration: float, seed: int) -> tuple[list[dict], float]:
    import httpx

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    out: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=args.client_timeout, limits=limits) as c:
        t0 = time.monotonic()
        deadline = t0 + duration
        await asyncio.gather(
            *(_client(c, deadline, random.Random(seed + i), args, out) for i in range(args.clients))
        )
        wall = time.monotonic() - t0
    return out, wall


def _quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def run_phase(model: Path, args: argparse.Namespace, *, max_batch: int, duration: float) -> dict[str, Any]:
    import httpx

    srv = Server(
        model, max_batch=max_batch, threads=args.server_threads, queue_size=args.queue_size, timeout=60
    )
    try:
        srv.wait_ready()
        # warm-up: first calls pay one-off costs (allocator, kernels); not counted
        for _ in range(3):
            httpx.post(
                srv.url + "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": args.max_tokens},
                timeout=60,
            )
        m0 = httpx.get(srv.url + "/metrics", timeout=30).text
        recs, wall = asyncio.run(_load(srv.url, args, duration, seed=1000 * max_batch))
        m1 = httpx.get(srv.url + "/metrics", timeout=30).text
        alive = srv.proc.poll() is None
    finally:
        srv.stop()
    statuses = collections.Counter(r["status"] for r in recs)
    ok = [r for r in recs if r["status"] == 200 and r["ok"]]
    lat = [r["latency_s"] for r in ok]
    batches = _metric(m1, "clinic_env:batches_total") - _metric(m0, "clinic_env:batches_total")
    batched = _metric(m1, "clinic_env:batched_requests_total") - _metric(
        m0, "clinic_env:batched_requests_total"
    )
    gen = _metric(m1, "vllm:generation_tokens_total") - _metric(m0, "vllm:generation_tokens_total")
    return {
        "max_batch": max_batch,
        "duration_s": wall,
        "requests": len(recs),
        "ok": len(ok),
        "streamed": sum(r["stream"] for r in recs),
        "status_counts": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "http_5xx": sum(v for k, v in statuses.items() if k is not None and k >= 500),
        "http_429": statuses.get(429, 0),
        "lost": statuses.get(None, 0),  # sent, never answered with an HTTP status
        "malformed_200": sum(1 for r in recs if r["status"] == 200 and not r["ok"]),
        "errors_sample": sorted({r["error"] for r in recs if "error" in r})[:5],
        "latency_p50_s": _quantile(lat, 0.5),
        "latency_p99_s": _quantile(lat, 0.99),
        "latency_mean_s": statistics.fmean(lat) if lat else None,
        "requests_per_s": len(ok) / wall,
        "completion_tokens_per_s_client": sum(r["tokens"] for r in ok) / wall,
        "generation_tokens_per_s_server": gen / wall,
        "model_calls": batches,
        "mean_batch_size": batched / batches if batches else None,
        "server_alive_after": alive,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds per phase")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, help="seconds of load per phase (default 30; quick 4)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--stream-fraction", type=float, default=0.125, help="share of requests that stream")
    ap.add_argument("--queue-size", type=int, default=256)
    ap.add_argument(
        "--server-threads",
        type=int,
        default=1,
        help="torch threads in the server process (1: the 2 cores are shared with the clients)",
    )
    ap.add_argument("--client-timeout", type=float, default=120.0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the --max-batch 1 phase")
    args = ap.parse_args(argv)
    duration = args.duration or (4.0 if args.quick else 30.0)

    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_model(Path(tmp) / "tiny-llama")
        batched = run_phase(model, args, max_batch=32, duration=duration)
        baseline = None if args.no_baseline else run_phase(model, args, max_batch=1, duration=duration)

    result: dict[str, Any] = {
        "setup": {
            "clients": args.clients,
            "duration_s_per_phase": duration,
            "max_tokens": args.max_tokens,
            "stream_fraction": args.stream_fraction,
            "temperature": 1.0,
            "model": "tiny random Llama (tests/tiny_models.py: hidden 64, 2 layers), CPU",
            "server_threads": args.server_threads,
            "quick": args.quick,
        },
        "batched": batched,
        "unbatched": baseline,
        "no_5xx_no_lost": all(
            p["http_5xx"] == 0 and p["lost"] == 0 and p["malformed_200"] == 0
            for p in (batched, baseline)
            if p
        ),
    }
    if baseline and baseline["requests_per_s"]:
        result["batching_speedup_requests_per_s"] = batched["requests_per_s"] / baseline["requests_per_s"]
        if baseline["completion_tokens_per_s_client"]:
            result["batching_speedup_tokens_per_s"] = (
                batched["completion_tokens_per_s_client"] / baseline["completion_tokens_per_s_client"]
            )
    path = write_result("serve_load", result)
    for label, p in (("batched", batched), ("max_batch=1", baseline)):
        if p:
            print(
                f"{label}: {p['requests']} requests in {p['duration_s']:.1f} s, {p['requests_per_s']:.1f} req/s, "
                f"p50 {p['latency_p50_s'] or 0:.3f} s, p99 {p['latency_p99_s'] or 0:.3f} s, "
                f"{p['completion_tokens_per_s_client']:.0f} tok/s, mean batch {p['mean_batch_size'] or 0:.1f}, "
                f"5xx {p['http_5xx']}, 429 {p['http_429']}, lost {p['lost']}, malformed {p['malformed_200']}"
            )
    if "batching_speedup_requests_per_s" in result:
        print(f"batching speedup: {result['batching_speedup_requests_per_s']:.2f}x requests/s -> {path}")
    return result


if __name__ == "__main__":
    main()
