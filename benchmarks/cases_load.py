"""How long loading the shipped case library takes: in-process (warm) and in a fresh interpreter (cold).

Target (issue 2): well under a second for the whole library.

    python -m benchmarks.cases_load [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from benchmarks._common import time_calls, write_result

COLD_SNIPPET = (
    "import time; t0 = time.perf_counter(); import clinic_env; t1 = time.perf_counter(); "
    "cs = clinic_env.load_cases('builtin'); t2 = time.perf_counter(); "
    "print(len(cs), t1 - t0, t2 - t1)"
)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args(argv)
    repeats = 5 if args.quick else 30

    from clinic_env.cases import check_cases, load_cases

    n = len(load_cases("builtin"))
    warm = time_calls(lambda: load_cases("builtin"), repeats=repeats)
    with_rules = time_calls(lambda: check_cases("builtin", library=True), repeats=max(3, repeats // 3))
    cold = []
    for _ in range(3 if args.quick else 7):
        out = subprocess.run(
            [sys.executable, "-c", COLD_SNIPPET], capture_output=True, text=True, check=True
        ).stdout.split()
        cold.append({"import_s": float(out[1]), "load_s": float(out[2])})
    cold_load = sorted(c["load_s"] for c in cold)[len(cold) // 2]
    cold_import = sorted(c["import_s"] for c in cold)[len(cold) // 2]
    result = {
        "n_cases": n,
        "warm_load_s": warm["median_s"],
        "warm_load_p99_s": warm["p99_s"],
        "cold_load_s": cold_load,
        "cold_import_clinic_env_s": cold_import,
        "validate_with_library_rules_s": with_rules["median_s"],
        "ms_per_case_warm": 1000 * warm["median_s"] / max(n, 1),
        "target_s": 1.0,
        "meets_target": cold_load < 1.0,
    }
    path = write_result("cases_load", result)
    print(
        f"{n} cases: warm {warm['median_s'] * 1000:.1f} ms, cold {cold_load * 1000:.1f} ms "
        f"(+ import {cold_import * 1000:.0f} ms); with library rules {with_rules['median_s'] * 1000:.1f} ms -> {path}"
    )
    return result


if __name__ == "__main__":
    main()
