"""The CPU end-to-end proof: tiny model -> SFT to convergence -> multi-turn GRPO -> held-out evaluation.

    python -m training.demo [--quick] [--budget-minutes 20] [--threads 2] [--out runs/train_demo]

1. Split the library with the fixed held-out rule (``training.data.is_held_out``, 20%). Held-out cases are used
   for nothing but the before/after evaluation: not in the tokenizer corpus, the SFT data or the RL data, and no
   setting was chosen by looking at them.
2. Train a BPE tokenizer on project text (docs, training cases, teacher transcripts) and build a tiny Llama.
3. SFT (``configs/demo_sft.yaml``) on the varied checklist doctor's consultations until the validation loss (other
   seeds, same training cases) stops improving.
4. Evaluate the SFT model on the held-out cases: ``samples`` episodes per case at the training temperature (the
   policy GRPO optimises) and one greedy episode per case.
5. Multi-turn GRPO (``configs/demo_multi_turn.yaml``) in the rule simulator until the wall-clock budget (what is
   left of ``--budget-minutes`` after a reserve for the final evaluation) runs out.
6. Evaluate again with the same seeds (paired by case) and write ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs"


def _specs() -> tuple[Any, Any]:
    from .tiny import TinySpec

    # 2 layers of width 128 and a 2048-token vocabulary: enough to learn the teacher's turns, cheap on 2 cores.
    return TinySpec(vocab_size=2048, hidden=128, layers=2, intermediate=256), TinySpec(
        vocab_size=1024, hidden=64, layers=2, intermediate=128
    )


def _config(name: str, overrides: dict[str, Any]) -> Any:
    from .config import load_config

    return load_config(CONFIGS / name, overrides)


def _rollout_curve(path: Path) -> list[dict[str, float]]:
    """Mean rubric score, reward spread and lengths per generation batch, from rollouts.jsonl."""
    import statistics

    by_step: dict[int, list[dict[str, Any]]] = {}
    if not path.is_file():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        by_step.setdefault(rec["step"], []).append(rec)
    curve = []
    for step in sorted(by_step):
        recs = by_step[step]
        groups: dict[tuple[str, int], list[float]] = {}
        for r in recs:
            groups.setdefault((r["case_id"], r["seed"]), []).append(r["score"])
        curve.append(
            {
                "step": step,
                "rubric_mean": statistics.fmean(r["score"] for r in recs),
                "group_std_mean": statistics.fmean(statistics.pstdev(v) for v in groups.values()),
                "doctor_tokens": statistics.fmean(r["doctor_tokens"] for r in recs),
                "turns": statistics.fmean(r["turns"] for r in recs),
                "episodes": len(recs),
            }
        )
    return curve


def teacher_repertoire(transcripts: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The teacher's exact doctor turns, and the items its EXAM:/TEST: lists use."""
    turns, items = set(), set()
    for t in transcripts:
        for m in t["messages"]:
            if m["role"] == "assistant":
                turns.add(m["content"])
                for prefix in ("EXAM:", "TEST:"):
                    if m["content"].startswith(prefix):
                        items.update(x.strip() for x in m["content"][len(prefix) :].split(","))
    return turns, items


def well_formed_rate(transcripts: list[list[dict[str, str]]], repertoire: tuple[set[str], set[str]]) -> float:
    """Fraction of doctor turns that are a turn the teacher could have written: one of its exact utterances, or an
    EXAM:/TEST: list of items it uses. A degenerate policy (spliced sentences, keyword salad) scores low here even
    when a rule-based grader pays it; the demo reports it next to the rubric score."""
    turns, items = repertoire
    ok = n = 0
    for msgs in transcripts:
        for m in msgs:
            if m["role"] != "assistant":
                continue
            n += 1
            c = m["content"]
            if c in turns:
                ok += 1
            elif c.startswith(("EXAM:", "TEST:")):
                listed = [x.strip() for x in c.split(":", 1)[1].split(",")]
                ok += all(x in items for x in listed)
    return ok / n if n else float("nan")


def garbled_rate(transcripts: list[list[dict[str, str]]]) -> float:
    """Fraction of doctor turns the patient could not make sense of (``clinic_env.patient.coherence``); such turns
    release nothing, cost patience and earn no rubric points."""
    from clinic_env.patient.coherence import is_garbled

    flags = [is_garbled(m["content"]) for msgs in transcripts for m in msgs if m["role"] == "assistant"]
    return sum(flags) / len(flags) if flags else float("nan")


def run_demo(
    out: str | Path = "runs/train_demo",
    *,
    budget_minutes: float = 20.0,
    quick: bool = False,
    threads: int = 2,
    seed: int = 0,
    eval_samples: int = 4,
    eval_reserve_minutes: float | None = None,
) -> dict[str, Any]:
    """Run the whole proof; returns (and writes to ``out/summary.json``) the numbers."""
    import torch

    from clinic_env.cases import load_cases

    from .data import select_cases, split_case_ids, teacher_transcripts
    from .evaluate import evaluate_model, paired_difference
    from .grpo import run_stage
    from .tiny import build_tiny_model, project_text

    DEMO_SPEC, QUICK_SPEC = _specs()

    t_start = time.monotonic()
    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    timings: dict[str, float] = {}

    cpu_minutes: dict[str, float] = {}

    def lap(name: str, t0: tuple[float, float]) -> None:
        """Wall minutes and this process's CPU minutes (all threads) of one phase."""
        timings[name] = round((time.monotonic() - t0[0]) / 60, 3)
        cpu_minutes[name] = round((time.process_time() - t0[1]) / 60, 3)

    # 1-2: split, tokenizer, tiny model ------------------------------------------------------------------------
    t0 = (time.monotonic(), time.process_time())
    quick_data: dict[str, Any] = {"data": {"max_cases": 12}} if quick else {}
    sft_cfg = _config(
        "demo_sft.yaml",
        {
            "model_path": str(out / "base"),
            "output_dir": str(out / "sft"),
            "seed": seed,
            **quick_data,
            **(
                {
                    "teacher": {"episodes_per_case": 3},
                    "sft": {"num_train_epochs": 2, "eval_steps": 10},
                    "checkpoint": {"save_steps": 10},
                }
                if quick
                else {}
            ),
        },
    )
    library = load_cases(sft_cfg.data.cases)
    train_ids, _held_ids = split_case_ids([c.id for c in library], sft_cfg.data.held_out_fraction)
    train_cases = select_cases(sft_cfg.data)
    held_cases = select_cases(
        sft_cfg.data.model_copy(update={"split": "held_out", "max_cases": 6 if quick else None})
    )
    corpus_transcripts = teacher_transcripts(
        train_cases, sft_cfg.teacher, sft_cfg.env, episodes_per_case=sft_cfg.teacher.episodes_per_case
    )
    spec = QUICK_SPEC if quick else DEMO_SPEC
    # The BPE also sees the training transcripts' text, so the doctors' phrases become few tokens (the chat's
    # role markers are special tokens and need no merges).
    dialogue = ["\n".join(m["content"] for m in t["messages"]) for t in corpus_transcripts]
    build_tiny_model(out / "base", project_text(train_ids) + dialogue, spec)
    repertoire = teacher_repertoire(corpus_transcripts)
    lap("build_model", t0)

    # 3: SFT to convergence ----------------------------------------------------------------------------------
    t0 = (time.monotonic(), time.process_time())
    sft = run_stage(sft_cfg)
    lap("sft", t0)

    # 4: evaluate the warm start on held-out cases ------------------------------------------------------------
    from transformers import AutoModelForCausalLM, AutoTokenizer

    grpo_overrides: dict[str, Any] = {
        "model_path": sft["model"],
        "output_dir": str(out / "grpo"),
        "seed": seed,
        **quick_data,
    }
    grpo_cfg = _config("demo_multi_turn.yaml", grpo_overrides)
    env = grpo_cfg.env
    samples = 2 if quick else eval_samples

    def evaluate(path: str) -> dict[str, Any]:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        kw = dict(max_completion_length=grpo_cfg.grpo.max_completion_length, seed=seed + 1234)
        sampled = evaluate_model(
            model,
            tok,
            held_cases,
            env,
            samples_per_case=samples,
            temperature=grpo_cfg.grpo.temperature,
            keep_transcripts=True,
            **kw,
        )
        greedy = evaluate_model(
            model, tok, held_cases, env, samples_per_case=1, temperature=0.0, keep_transcripts=True, **kw
        )
        for r in (sampled, greedy):
            transcripts = r.pop("transcripts")
            r["well_formed_turns"] = well_formed_rate(transcripts, repertoire)
            r["garbled_turns"] = garbled_rate(transcripts)
            r["example_transcript"] = transcripts[0] if transcripts else []
        return {"sampled": sampled, "greedy": greedy}

    t0 = (time.monotonic(), time.process_time())
    before = evaluate(sft["model"])
    lap("eval_before", t0)

    # 5: GRPO until the budget runs out --------------------------------------------------------------------
    elapsed = (time.monotonic() - t_start) / 60
    reserve = eval_reserve_minutes if eval_reserve_minutes is not None else 1.2 * timings["eval_before"] + 0.3
    grpo_minutes = budget_minutes - elapsed - reserve
    if quick:
        grpo_overrides["grpo"] = {"max_steps": 4}
        grpo_overrides["checkpoint"] = {"save_steps": 2}
    if grpo_minutes <= 0.2:
        raise RuntimeError(
            f"no time left for GRPO: {elapsed:.1f} of {budget_minutes} minutes went to building, SFT and the first "
            "evaluation; raise --budget-minutes"
        )
    grpo_overrides["wall_clock_minutes"] = grpo_minutes
    grpo_cfg = _config("demo_multi_turn.yaml", grpo_overrides)
    t0 = (time.monotonic(), time.process_time())
    grpo = run_stage(grpo_cfg)
    lap("grpo", t0)

    # 6: evaluate again, paired -----------------------------------------------------------------------------
    t0 = (time.monotonic(), time.process_time())
    after = evaluate(grpo["model"])
    lap("eval_after", t0)
    minutes = (time.monotonic() - t_start) / 60
    curve = _rollout_curve(out / "grpo" / "rollouts.jsonl")
    gen_batches = len(curve)
    summary = {
        "score_before": before["sampled"]["score"],
        "score_after": after["sampled"]["score"],
        "gain": after["sampled"]["score"] - before["sampled"]["score"],
        "paired_gain": paired_difference(before["sampled"]["per_case"], after["sampled"]["per_case"]),
        "greedy_before": before["greedy"]["score"],
        "greedy_after": after["greedy"]["score"],
        "greedy_paired_gain": paired_difference(before["greedy"]["per_case"], after["greedy"]["per_case"]),
        "well_formed_turns_before": before["sampled"]["well_formed_turns"],
        "well_formed_turns_after": after["sampled"]["well_formed_turns"],
        "garbled_turns_before": before["sampled"]["garbled_turns"],
        "garbled_turns_after": after["sampled"]["garbled_turns"],
        "held_out_cases": [c.id for c in held_cases],
        "n_train_cases": len(train_cases),
        "minutes": minutes,
        "budget_minutes": budget_minutes,
        "threads": threads,
        "quick": quick,
        "timings_minutes": timings,
        "cpu_minutes": cpu_minutes,  # this process's CPU time per phase (the machine is shared: see docs)
        "teacher": {"name": sft_cfg.teacher.name, "variation": sft_cfg.teacher.variation},
        "teacher_train_mean_score": sft["teacher_mean_score"],
        "model": {"tiny_spec": spec.__dict__},
        "sft": {
            k: sft[k]
            for k in (
                "steps",
                "max_steps",
                "stopped_early",
                "best_eval_loss",
                "train_loss_curve",
                "eval_loss_curve",
                "train_transcripts",
                "val_transcripts",
            )
        },
        "grpo": {
            "optimizer_steps": grpo["steps"],
            "generation_batches": gen_batches,
            "episodes": sum(c["episodes"] for c in curve),
            "minutes": timings["grpo"],
            "optimizer_steps_per_minute": grpo["steps"] / max(timings["grpo"], 1e-9),
            "reward_curve": grpo["reward_curve"],
            "rubric_curve": curve,
            "learning_rate": grpo_cfg.grpo.learning_rate,
            "num_generations": grpo_cfg.grpo.num_generations,
        },
        "eval": {
            "samples_per_case": samples,
            "before": {k: {kk: vv for kk, vv in v.items() if kk != "example"} for k, v in before.items()},
            "after": {k: {kk: vv for kk, vv in v.items() if kk != "example"} for k, v in after.items()},
            "example_after": after["sampled"]["example"],
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description="CPU end-to-end proof: tiny model, SFT, multi-turn GRPO, held-out eval."
    )
    ap.add_argument(
        "--quick", action="store_true", help="a few cases and steps: checks the pipeline in minutes"
    )
    ap.add_argument("--budget-minutes", type=float, default=20.0, help="wall-clock budget of the whole run")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", default="runs/train_demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-samples", type=int, default=4, help="sampled episodes per held-out case")
    args = ap.parse_args(argv)
    s = run_demo(
        args.out,
        budget_minutes=args.budget_minutes,
        quick=args.quick,
        threads=args.threads,
        seed=args.seed,
        eval_samples=args.eval_samples,
    )
    print(
        f"held-out rubric score {s['score_before']:.3f} -> {s['score_after']:.3f} "
        f"(gain {s['gain']:+.3f}; greedy {s['greedy_before']:.3f} -> {s['greedy_after']:.3f}) on "
        f"{len(s['held_out_cases'])} held-out cases in {s['minutes']:.1f} min; wrote {Path(args.out) / 'summary.json'}"
    )
    return s


if __name__ == "__main__":
    main()
