"""The simulator audit (privacy, fact, personification) of the rule backend over the whole library.

Targets for the rule backend (issue 3): privacy >= 0.99 and fact >= 0.99.

    python -m benchmarks.patient_audit [--quick]
"""

from __future__ import annotations

import argparse
import time

from benchmarks._common import write_result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed instead of three")
    args = ap.parse_args(argv)

    import clinic_env
    from clinic_env.patient.audit import audit

    cases = clinic_env.load_cases("builtin")
    runs = []
    t0 = time.perf_counter()
    for seed in [0] if args.quick else [0, 1, 2]:
        runs.append(audit(cases, seed=seed))
    seconds = time.perf_counter() - t0
    result = {
        "backend": "rule",
        "seeds": len(runs),
        "privacy": min(r["privacy"] for r in runs),
        "fact": min(r["fact"] for r in runs),
        "personification": min(r["personification"] for r in runs),
        "n_cases": runs[0]["n_cases"],
        "n_turns": sum(r["n_turns"] for r in runs),
        "failures": runs[0]["failures"],
        "turns_per_s": sum(r["n_turns"] for r in runs) / seconds,
        "targets": {"privacy": 0.99, "fact": 0.99},
        "note": "worst value over seeds",
    }
    result["meets_target"] = result["privacy"] >= 0.99 and result["fact"] >= 0.99
    path = write_result("patient_audit", result)
    print(
        f"privacy {result['privacy']:.4f} fact {result['fact']:.4f} personification {result['personification']:.4f} "
        f"over {result['n_turns']} turns -> {path}"
    )
    return result


if __name__ == "__main__":
    main()
