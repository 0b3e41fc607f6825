"""Doctor agents over the case library and over generated cases: diagnostic accuracy and mean rubric score.

`python -m benchmarks.agents [--quick]` -> results/agents.json

Every agent plays each case once with the rule patient and the rule verifier (episode seed = case index). The
diagnostic accuracy is the share of episodes where the rubric's "names the correct diagnosis" criterion was met;
the score is the HealthBench-style rubric score (mean over cases, and the aggregate clipped to [0, 1] with its
bootstrap std, as HealthBench reports it).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks._common import write_result


def _play(agent_factory, cases, *, max_turns: int = 20) -> dict[str, Any]:
    import gymnasium as gym

    import clinic_env  # noqa: F401
    from agents import run_episode
    from clinic_env.rubrics.scoring import aggregate

    env = gym.make("clinic_env/Consultation-v0", cases=cases, max_turns=max_turns)
    scores, dx, turns, reasons = [], [], [], {}
    by_spec: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for i, case in enumerate(cases):
        info = run_episode(env, agent_factory(i), seed=i, options={"case_id": case.id})
        scores.append(info["score"])
        dx.append(any(c["id"] == "diagnosis" and c["met"] for c in info["rubric"]))
        turns.append(info["turns"])
        reasons[info["termination_reason"]] = reasons.get(info["termination_reason"], 0) + 1
        by_spec.setdefault(case.specialty.value, []).append(info["score"])
    agg = aggregate([{"overall_score": s} for s in scores], seed=0)
    return {
        "episodes": len(cases),
        "diagnostic_accuracy": float(np.mean(dx)),
        "mean_score": float(np.mean(scores)),
        "aggregate_score": agg.get("overall_score"),
        "aggregate_bootstrap_std": agg.get("overall_score:bootstrap_std"),
        "mean_turns": float(np.mean(turns)),
        "termination_reasons": reasons,
        "mean_score_by_specialty": {k: round(float(np.mean(v)), 4) for k, v in sorted(by_spec.items())},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few cases only (smoke test)")
    ap.add_argument("--generated", type=int, default=300, help="generated cases to evaluate on")
    args = ap.parse_args(argv)

    from agents import RandomDoctor, ScriptedDoctor
    from clinic_env.cases import load_cases
    from clinic_env.cases.generator import generate_cases
    from clinic_env.cases.knowledge import load_knowledge
    from clinic_env.policies import ChecklistDoctor

    kb = load_knowledge()
    library = list(load_cases("builtin"))
    generated = generate_cases(args.generated if not args.quick else 10, seed=2026)
    if args.quick:
        library = library[:8]
    scripted = ScriptedDoctor(kb)
    agents = {
        "scripted": lambda i: scripted,
        "checklist": lambda i: ChecklistDoctor(),
        "random": lambda i: RandomDoctor(seed=i),
    }
    results: dict[str, Any] = {"knowledge_base_conditions": len(kb), "library": {}, "generated": {}}
    for name, factory in agents.items():
        results["library"][name] = _play(factory, library)
        results["generated"][name] = _play(factory, generated)
        print(
            f"{name:10s} library: acc {results['library'][name]['diagnostic_accuracy']:.3f} "
            f"score {results['library'][name]['mean_score']:.3f} | generated: acc "
            f"{results['generated'][name]['diagnostic_accuracy']:.3f} "
            f"score {results['generated'][name]['mean_score']:.3f}",
            flush=True,
        )
    results["note"] = (
        "The library's 105 cases were written independently of the knowledge base (one case per condition, "
        "with case-specific twists); the generated cases are drawn from the same knowledge base the scripted "
        "doctor reasons with, so its numbers there are an upper bound on what a perfect-knowledge naive-Bayes "
        "doctor achieves against the rule patient."
    )
    results["quick"] = args.quick
    write_result("agents", results)
    return results


if __name__ == "__main__":
    main()
