"""Evaluate a doctor model on cases with the same multi-turn rollout the trainer uses.

    python -m training.evaluate --model runs/multi_turn/final --split held_out [--samples 4 --temperature 1.0]

Episodes are seeded per (case, sample) and the sampler's torch seed is fixed, so two models evaluated with the same
arguments face the same patients: before/after comparisons are paired by case.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .config import DEFAULT_SYSTEM_PROMPT, DataConfig, EnvConfig


def evaluate_model(
    model: Any,
    tokenizer: Any,
    cases: Any,
    env: EnvConfig,
    *,
    samples_per_case: int = 4,
    temperature: float = 1.0,
    seed: int = 1234,
    max_completion_length: int = 2048,
    batch_size: int = 64,
    keep_transcripts: bool = False,
) -> dict[str, Any]:
    """Mean rubric score (and more) of ``model`` as the doctor on ``cases``; ``temperature=0`` is greedy.

    ``keep_transcripts`` adds ``transcripts``: every episode's messages (as the policy read them).
    """
    import torch

    from .data import make_env
    from .rollout import EpisodeRunner, HFGenerator, group_seed

    if samples_per_case < 1:
        raise ValueError(f"samples_per_case must be >= 1, got {samples_per_case}")
    t0 = time.monotonic()
    runner = EpisodeRunner(
        tokenizer,
        lambda: make_env(cases, env),
        max_turn_tokens=env.max_turn_tokens,
        max_completion_length=max_completion_length,
        max_observation_chars=env.max_observation_chars,
    )
    gen = HFGenerator(model, tokenizer, temperature=temperature)
    jobs = [(c.id, group_seed(seed, 0, j, c.id)) for c in cases for j in range(samples_per_case)]
    episodes = []
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start : start + batch_size]
                episodes += runner.run([j[0] for j in chunk], [j[1] for j in chunk], gen)
    finally:
        model.train(was_training)
    by_case: dict[str, list[float]] = {}
    for ep in episodes:
        by_case.setdefault(ep.case_id, []).append(ep.score)
    scores = [ep.score for ep in episodes]
    case_means = {k: statistics.fmean(v) for k, v in by_case.items()}
    within = [statistics.pstdev(v) for v in by_case.values() if len(v) > 1]
    return {
        "score": statistics.fmean(scores),
        "score_clipped": statistics.fmean(min(1.0, max(0.0, s)) for s in case_means.values()),
        "per_case": case_means,
        "within_case_std": statistics.fmean(within) if within else 0.0,
        "n_episodes": len(episodes),
        "turns": statistics.fmean(ep.turns for ep in episodes),
        "doctor_tokens": statistics.fmean(ep.doctor_tokens for ep in episodes),
        "completion_tokens": statistics.fmean(len(ep.completion_ids) for ep in episodes),
        "termination": dict(Counter(ep.termination_reason for ep in episodes)),
        "temperature": temperature,
        "samples_per_case": samples_per_case,
        "seconds": time.monotonic() - t0,
        "example": episodes[0].messages if episodes else [],
        **({"transcripts": [ep.messages for ep in episodes]} if keep_transcripts else {}),
    }


def paired_difference(
    before: dict[str, float], after: dict[str, float], *, n_boot: int = 2000, seed: int = 0
):
    """Mean of after - before over shared cases, with a bootstrap 95% interval over cases."""
    import numpy as np

    keys = sorted(set(before) & set(after))
    d = np.array([after[k] - before[k] for k in keys])
    if len(d) == 0:
        return {"mean": math.nan, "ci95": [math.nan, math.nan], "n_cases": 0}
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return {
        "mean": float(d.mean()),
        "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
        "n_cases": len(d),
        "better": int((d > 0).sum()),
        "worse": int((d < 0).sum()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="Evaluate a doctor model in the rule simulator.")
    ap.add_argument("--model", required=True, help="a local transformers model folder")
    ap.add_argument("--cases", default="builtin")
    ap.add_argument("--split", choices=["train", "held_out", "all"], default="held_out")
    ap.add_argument("--held-out-fraction", type=float, default=0.2)
    ap.add_argument("--samples", type=int, default=4, help="episodes per case")
    ap.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    ap.add_argument("--max-turns", type=int, default=12)
    ap.add_argument("--max-turn-tokens", type=int, default=64)
    ap.add_argument("--max-completion-length", type=int, default=2048)
    ap.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT, help="'none' for no system message")
    ap.add_argument("--max-observation-chars", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", type=Path, help="write the result JSON here")
    args = ap.parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .data import select_cases

    cases = select_cases(
        DataConfig(cases=args.cases, split=args.split, held_out_fraction=args.held_out_fraction)
    )
    env = EnvConfig(
        max_turns=args.max_turns,
        max_turn_tokens=args.max_turn_tokens,
        system_prompt=None if args.system_prompt == "none" else args.system_prompt,
        max_observation_chars=args.max_observation_chars,
    )
    tok = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True)
    res = evaluate_model(
        model,
        tok,
        cases,
        env,
        samples_per_case=args.samples,
        temperature=args.temperature,
        seed=args.seed,
        max_completion_length=args.max_completion_length,
    )
    text = json.dumps({k: v for k, v in res.items() if k != "example"}, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
