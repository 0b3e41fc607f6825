"""CPU end-to-end proof of the GRPO trainer (issue 7): tiny Llama, SFT to convergence, multi-turn GRPO in the rule
simulator, evaluation on held-out library cases before and after.

Target: the mean rubric score on the held-out cases rises by >= 0.10 absolute within 20 minutes on a 2-core
machine. Writes benchmarks/results/train_demo.json (score_before, score_after, held_out_cases, minutes, ...) and
train_demo.png (SFT loss, reward against step, before/after).

    python -m benchmarks.train_demo [--quick] [--budget-minutes 20] [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, write_result


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Three panels: the SFT loss curve, the GRPO reward against step, held-out scores before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    sft = summary["sft"]
    if sft["train_loss_curve"]:
        ax[0].plot(*zip(*sft["train_loss_curve"], strict=True), label="train (doctor tokens)")
    if sft["eval_loss_curve"]:
        ax[0].plot(*zip(*sft["eval_loss_curve"], strict=True), "o-", label="validation (other seeds)")
    ax[0].set(title="SFT warm start: loss", xlabel="optimizer step", ylabel="cross-entropy (nats/token)")
    ax[0].set_yscale("log")
    ax[0].legend()
    curve = summary["grpo"]["rubric_curve"]
    if curve:
        steps = [c["step"] for c in curve]
        means = [c["rubric_mean"] for c in curve]
        ax[1].plot(steps, means, ".", alpha=0.5, label="mean rubric score per batch (training cases)")
        k = max(1, len(means) // 10)
        smooth = [
            sum(means[max(0, i - k + 1) : i + 1]) / len(means[max(0, i - k + 1) : i + 1])
            for i in range(len(means))
        ]
        ax[1].plot(steps, smooth, "-", label=f"running mean ({k} batches)")
    ax[1].axhline(summary["score_before"], color="grey", ls="--", lw=1, label="held-out before (sampled)")
    ax[1].axhline(summary["score_after"], color="green", ls="--", lw=1, label="held-out after (sampled)")
    ax[1].set(title="multi-turn GRPO: reward against step", xlabel="optimizer step", ylabel="rubric score")
    ax[1].legend(fontsize=7)
    labels = ["sampled", "greedy"]
    before = [summary["score_before"], summary["greedy_before"]]
    after = [summary["score_after"], summary["greedy_after"]]
    x = range(len(labels))
    ax[2].bar([i - 0.2 for i in x], before, 0.4, label="after SFT")
    ax[2].bar([i + 0.2 for i in x], after, 0.4, label="after GRPO")
    ax[2].set_xticks(list(x), labels)
    title = f"{len(summary['held_out_cases'])} held-out cases"
    if "well_formed_turns_before" in summary:
        title += (
            f"\nwell-formed doctor turns (sampled): {summary['well_formed_turns_before']:.2f} -> "
            f"{summary['well_formed_turns_after']:.2f}"
        )
    ax[2].set(title=title, ylabel="mean rubric score")
    ax[2].legend(loc="lower right")
    fig.suptitle(
        f"CPU end-to-end proof: {summary['minutes']:.1f} min wall, {summary['threads']} threads"
        + (" (quick)" if summary["quick"] else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few cases and steps (checks the pipeline)")
    ap.add_argument("--budget-minutes", type=float, default=None, help="default 20 (quick: 8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/train_demo", help="where the run's models and logs go")
    args = ap.parse_args(argv)
    from training.demo import run_demo

    budget = args.budget_minutes if args.budget_minutes is not None else (8.0 if args.quick else 20.0)
    s = run_demo(args.out, budget_minutes=budget, quick=args.quick, threads=args.threads)
    payload = {
        "score_before": s["score_before"],
        "score_after": s["score_after"],
        "gain": s["gain"],
        "target_gain": 0.10,
        "meets_target": bool(s["gain"] >= 0.10 and s["minutes"] <= 20.0),
        "held_out_cases": s["held_out_cases"],
        "minutes": s["minutes"],
        **{
            k: v
            for k, v in s.items()
            if k not in ("score_before", "score_after", "gain", "held_out_cases", "minutes")
        },
    }
    path = write_result("train_demo", payload)
    png = plot(s, RESULTS / "train_demo.png")
    print(
        f"held-out score {s['score_before']:.3f} -> {s['score_after']:.3f} (gain {s['gain']:+.3f}, target +0.10) "
        f"in {s['minutes']:.1f} min -> {path}, {png}"
    )
    return payload


if __name__ == "__main__":
    main()
