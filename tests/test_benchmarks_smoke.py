"""Smoke test of the issue-9 benchmarks: ``python -m benchmarks --quick --only env llm_patient`` into a temporary
results folder (``$CLINIC_ENV_BENCH_RESULTS``), then the JSON keys, the plots and the summary.

The numbers themselves are not asserted (timings belong in benchmark results, not in tests); their shape and
sanity are.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import _common
from benchmarks.__main__ import main as run_all

ENV_KEYS = {
    "step_ratio_vs_cartpole",
    "step_p99_ratio_vs_cartpole",
    "reset_ratio_vs_cartpole",
    "reset_cold_ratio_vs_cartpole",
    "grade_ratio_vs_cartpole",
    "unique_text",
    "bytes_per_env",
    "seconds",
    "steps_per_s",
    "vector",
    "memory",
    "targets",
    "meets",
}
LLM_KEYS = {"replies_per_s", "speedup_32_over_1", "comparison", "batched_over_peer_ratio", "prefill", "model"}


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_results_dir_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(_common.RESULTS_ENV, raising=False)
    assert _common.results_dir() == _common.RESULTS
    monkeypatch.setenv(_common.RESULTS_ENV, str(tmp_path / "r"))
    path = _common.write_result("probe", {"x": 1})
    assert path == tmp_path / "r" / "probe.json"
    assert json.loads(path.read_text())["x"] == 1


def test_unknown_benchmark_name_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        run_all(["--only", "no_such_benchmark"])
    assert "no_such_benchmark" in capsys.readouterr().err


def test_quick_benchmarks_write_results_plots_and_summary(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("matplotlib")
    committed = {p.name: p.stat().st_mtime_ns for p in _common.RESULTS.glob("*")}
    monkeypatch.setenv(_common.RESULTS_ENV, str(tmp_path))

    assert run_all(["--quick", "--only", "env", "llm_patient"]) == 0

    env = json.loads((tmp_path / "env.json").read_text())
    assert env.keys() >= ENV_KEYS
    assert env["quick"] is True
    for key in (
        "step_ratio_vs_cartpole",
        "reset_ratio_vs_cartpole",
        "grade_ratio_vs_cartpole",
        "bytes_per_env",
    ):
        assert _positive(env[key]), (key, env[key])
    # A consultation step does strictly more work than a CartPole step, and grading more than a step.
    assert env["step_ratio_vs_cartpole"] > 1
    assert env["seconds"]["grade_p50"] > env["seconds"]["step_p50"]
    assert env["samples"]["termination_reasons"] == {"diagnosis_and_plan": env["samples"]["episodes"]}
    for who in ("clinic_env", "cartpole"):
        for mode in ("sync", "async"):
            assert all(_positive(v["steps_per_s"]) for v in env["vector"][who][mode].values())
    assert env["memory"]["bytes_per_env"] == env["bytes_per_env"]

    llm = json.loads((tmp_path / "llm_patient.json").read_text())
    assert llm.keys() >= LLM_KEYS
    assert set(llm["replies_per_s"]) == {"1", "8", "32"}
    assert all(_positive(v) for v in llm["replies_per_s"].values())
    assert llm["speedup_32_over_1"] == pytest.approx(llm["replies_per_s"]["32"] / llm["replies_per_s"]["1"])
    by_batch = llm["by_batch"]
    assert by_batch["1"]["replies"] == by_batch["32"]["replies"] > 0  # same work at every batch size
    assert by_batch["1"]["generate_calls"] >= by_batch["1"]["replies"]  # batch 1: a call per reply (or more)
    assert (
        by_batch["32"]["generate_calls"] < by_batch["8"]["generate_calls"] < by_batch["1"]["generate_calls"]
    )
    cmp = llm["comparison"]
    assert (
        cmp["peer_sequential"]["replies"]
        == cmp["ours_batched"]["replies"]
        == cmp["conversations"] * cmp["turns"]
    )
    assert cmp["peer_sequential"]["generate_calls"] == cmp["peer_sequential"]["replies"]
    assert cmp["ours_batched"]["generate_calls"] < cmp["peer_sequential"]["generate_calls"]

    for png in ("env.png", "llm_patient.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert "## env" in summary and "## llm_patient" in summary and "| metric | value |" in summary
    assert "(quick)" in summary
    # Nothing was written into the committed results folder.
    assert {p.name: p.stat().st_mtime_ns for p in _common.RESULTS.glob("*")} == committed
