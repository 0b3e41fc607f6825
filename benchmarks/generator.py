"""Stratified case generator throughput: `python -m benchmarks.generator [--quick]` -> results/generator.json.

Target (issue 10): >= 1000 cases/s. Measures end-to-end generation of validated ``Case`` objects (pydantic
validation included) and, separately, writing them as JSONL.
"""

from __future__ import annotations

import argparse
import collections
import io
import time
from typing import Any

from benchmarks._common import write_result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from clinic_env.cases.generator import CaseGenerator
    from clinic_env.cases.knowledge import load_knowledge

    t0 = time.perf_counter()
    kb = load_knowledge()
    load_s = time.perf_counter() - t0
    gen = CaseGenerator(kb)
    n = 500 if args.quick else 5000
    list(gen.iter_cases(50, seed=0))  # warm-up
    runs = []
    for rep in range(3):
        t0 = time.perf_counter()
        cases = list(gen.iter_cases(n, seed=rep))
        runs.append(time.perf_counter() - t0)
    best = min(runs)
    buf = io.StringIO()
    t0 = time.perf_counter()
    for c in cases:
        buf.write(c.model_dump_json(exclude_none=True) + "\n")
    write_s = time.perf_counter() - t0
    spec = collections.Counter(c.specialty.value for c in cases)
    result = {
        "conditions": len(kb),
        "comorbidities": len(kb.comorbidities),
        "knowledge_base_load_s": round(load_s, 4),
        "cases": n,
        "cases_per_s": round(n / best, 1),
        "cases_per_s_median": round(n / sorted(runs)[1], 1),
        "jsonl_cases_per_s": round(n / write_s, 1),
        "target_cases_per_s": 1000,
        "meets_target": n / best >= 1000,
        "mean_facts_per_case": round(sum(len(c.facts) for c in cases) / n, 2),
        "cases_with_contraindication": sum(bool(c.management.contraindications) for c in cases),
        "contraindication_traps": sum("contraindication_trap" in {t.value for t in c.tags} for c in cases),
        "specialty_counts": dict(sorted(spec.items())),
        "quick": args.quick,
    }
    print(f"{result['cases_per_s']} cases/s ({n} cases, {len(kb)} conditions)")
    write_result("generator", result)
    return result


if __name__ == "__main__":
    main()
