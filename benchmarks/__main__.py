"""Run every benchmark: ``python -m benchmarks [--quick] [--only NAME ...] [--summary]`` (``make bench``).

Each benchmark writes ``NAME.json`` (and its own plots) into the results folder (``benchmarks/results/``, or
``$CLINIC_ENV_BENCH_RESULTS``). Afterwards this draws a plot for each result that has none of its own, and writes
``SUMMARY.md``: one table per benchmark, from every JSON present (so ``--only`` refreshes the whole summary).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import results_dir

BENCHMARKS = [
    "cases_load",
    "generator",
    "patient_audit",
    "patient_understanding",
    "rubric_validation",
    "env",
    "llm_patient",
    "agents",
    "sb3_ppo",
    "train_demo",
    "quantization",
    "speculative",
    "serve_load",
]

# Keys that are bookkeeping rather than results, left out of the summary tables.
SKIP_KEYS = ("benchmark", "when", "machine", "failures", "plot", "quick")
SKIP_PARTS = (
    "dev_sweep",
    "by_criterion_kind",
    "dev_by_criterion_kind",
    "dev_parts",
    "per_round_ratios",
    "what",
    "startup_s",
    "transitions",
)


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested results as dotted keys, scalars only (lists are left out)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def summary_rows(doc: dict) -> list[tuple[str, Any]]:
    """The rows of a benchmark's table: its own ``summary_rows(doc)`` when the module defines one, else every
    scalar result (bookkeeping left out)."""
    name = doc.get("benchmark", "")
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ImportError:
        module = None
    hook = getattr(module, "summary_rows", None)
    if callable(hook):
        return list(hook(doc))
    return [
        (k, v)
        for k, v in _flat(doc).items()
        if not k.startswith(SKIP_KEYS) and not any(p in k.split(".") for p in SKIP_PARTS)
    ]


# ------------------------------------------------------------------------------------------------ plots


def _bars(
    path: Path, title: str, labels: list[str], values: list[float], targets: list[float | None]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 3.4))
    ax.bar(labels, values, color="tab:blue")
    first = next((i for i, t in enumerate(targets) if t is not None), None)
    for i, t in enumerate(targets):
        if t is not None:
            ax.hlines(
                t, i - 0.4, i + 0.4, colors="tab:red", linestyles="--", label="target" if i == first else None
            )
    for i, v in enumerate(values):
        ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    ax.set_title(title, fontsize=10)
    if any(t is not None for t in targets):
        ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_cases_load(doc: dict, path: Path) -> None:
    _bars(
        path,
        f"loading {doc['n_cases']} cases (seconds)",
        ["warm", "cold (fresh interpreter)", "import clinic_env", "validate + library rules"],
        [
            doc["warm_load_s"],
            doc["cold_load_s"],
            doc["cold_import_clinic_env_s"],
            doc["validate_with_library_rules_s"],
        ],
        [None, doc.get("target_s"), None, None],
    )


def _plot_patient_audit(doc: dict, path: Path) -> None:
    t = doc.get("targets", {})
    _bars(
        path,
        f"patient audit ({doc.get('backend')} backend, worst of {doc.get('seeds')} seeds)",
        ["privacy", "fact", "personification"],
        [doc["privacy"], doc["fact"], doc["personification"]],
        [t.get("privacy"), t.get("fact"), None],
    )


def _plot_patient_understanding(doc: dict, path: Path) -> None:
    labels, values, targets = [], [], []
    t = doc.get("targets", {})
    for method in ("lexicon", "lexicon_plus_embeddings"):
        for what in ("facts", "exam_and_test"):
            m = doc.get(method, {}).get("test", {}).get(what)
            if not m:
                continue
            for metric in ("precision", "recall"):
                labels.append(f"{'lex' if method == 'lexicon' else 'lex+emb'}\n{what}\n{metric}")
                values.append(m[metric])
                targets.append(t.get(metric))
    _bars(path, "held-out question understanding", labels, values, targets)


def _plot_rubric_validation(doc: dict, path: Path) -> None:
    va, sep = doc["verifier_agreement"], doc["separation"]
    t = sep.get("targets", {})
    _bars(
        path,
        "rule verifier vs labels; rubric separation of good and bad consultations",
        ["macro F1 (held out)", "accuracy", "score gap", "AUROC"],
        [va["macro_f1"], va["accuracy"], sep["gap"], sep["auroc"]],
        [None, None, t.get("gap"), t.get("auroc")],
    )


PLOTS: dict[str, Callable[[dict, Path], None]] = {
    "cases_load": _plot_cases_load,
    "patient_audit": _plot_patient_audit,
    "patient_understanding": _plot_patient_understanding,
    "rubric_validation": _plot_rubric_validation,
}


def make_plots(out: Path) -> list[str]:
    """A PNG for each result that has no plot of its own; returns the problems met (never raises)."""
    problems = []
    for f in sorted(out.glob("*.json")):
        doc = json.loads(f.read_text(encoding="utf-8"))
        name = doc.get("benchmark", f.stem)
        if name in PLOTS and not doc.get("plot"):
            try:
                PLOTS[name](doc, out / f"{name}.png")
            except (KeyError, TypeError, ValueError) as exc:  # a result whose layout changed: say so, go on
                problems.append(f"no plot for {name}: {exc!r}")
    return problems


# ------------------------------------------------------------------------------------------------ summary


def write_summary(out: Path) -> Path:
    """``SUMMARY.md`` from every result JSON in ``out``: an overview of targets, then a table per benchmark."""
    docs = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(out.glob("*.json"))]
    order = {n: i for i, n in enumerate(BENCHMARKS)}
    docs.sort(key=lambda d: (order.get(d.get("benchmark", ""), len(order)), d.get("benchmark", "")))
    lines = [
        "# Benchmark summary",
        "",
        "Generated by `make bench` (`python -m benchmarks`); one JSON file per benchmark beside this file, with the",
        "machine it ran on. Ratios against CartPole were measured side by side in the same process.",
        "",
        "| benchmark | run | meets target |",
        "|---|---|---|",
    ]
    for d in docs:
        meets = d.get("meets_target", d.get("meets", ""))
        if isinstance(meets, dict):
            meets = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in meets.items())
        elif isinstance(meets, bool):
            meets = "yes" if meets else "no"
        quick = " (quick)" if d.get("quick") else ""
        lines.append(
            f"| [{d.get('benchmark')}](#{d.get('benchmark')}) | {d.get('when', '')}{quick} | {meets} |"
        )
    lines.append("")
    for d in docs:
        name = d.get("benchmark", "?")
        lines += [f"## {name}", ""]
        png = d.get("plot") or (f"{name}.png" if (out / f"{name}.png").exists() else None)
        if png:
            lines += [f"![{name}]({png})", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in summary_rows(d)]
        lines.append("")
    path = out / "SUMMARY.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run all clinic-env benchmarks.")
    ap.add_argument("--quick", action="store_true", help="each benchmark's smoke-sized run")
    ap.add_argument(
        "--only", nargs="*", metavar="NAME", help=f"run only these (known: {', '.join(BENCHMARKS)})"
    )
    ap.add_argument(
        "--summary",
        action="store_true",
        help="run nothing: redraw plots and rewrite SUMMARY.md from the results",
    )
    args = ap.parse_args(argv)
    if args.only is not None and not args.only:
        ap.error("--only needs at least one benchmark name")
    unknown = sorted(set(args.only or ()) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {BENCHMARKS}")
    failed = []
    for name in [] if args.summary else args.only or BENCHMARKS:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").main(["--quick"] if args.quick else [])
        except Exception as exc:  # keep going: one broken benchmark must not hide the others
            print(f"!! {name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
        print(f"   ({time.perf_counter() - t0:.1f} s)")
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    for problem in make_plots(out):
        print(f"!! {problem}", file=sys.stderr)
    print(f"summary -> {write_summary(out)}")
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
