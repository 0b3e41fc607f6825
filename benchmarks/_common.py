"""Shared helpers: result files with machine metadata, and a robust timer."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
RESULTS_ENV = "CLINIC_ENV_BENCH_RESULTS"


def results_dir() -> Path:
    """Where results go: ``$CLINIC_ENV_BENCH_RESULTS`` when set (tests point it at a temp folder), else
    ``benchmarks/results/``. Read at call time, so setting the variable after import works."""
    override = os.environ.get(RESULTS_ENV)
    return Path(override) if override else RESULTS


def machine() -> dict[str, Any]:
    """Python, platform and CPU facts recorded with every result."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results_dir()/NAME.json`` atomically, with the time and machine facts; returns the path."""
    out_dir = results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.json"
    doc = {
        "benchmark": name,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out


def time_calls(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Seconds per call: median, p99 and min over ``repeats`` timed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return {"median_s": statistics.median(samples), "p99_s": p99, "min_s": samples[0], "n": len(samples)}
