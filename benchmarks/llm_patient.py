"""LLM patient throughput with a tiny local transformers model, batched, and against a peer-style sequential loop.

1. Patient replies/s at batch 1, 8 and 32: the same conversations advanced with
   :func:`clinic_env.patient.respond_batch` in groups of 1, 8 or 32 (one ``generate`` call per group per turn).
   Target (issue 9): >= 5x at 32 over 1.
2. Side by side, same tiny model, same cases, same doctor turns, same generation settings:
   - *peer-style sequential*: how AgentClinic runs its patient (one LLM call per turn per conversation, one
     conversation after another, no batching; the patient prompt is the persona plus the whole case history
     and the dialogue so far, and nothing checks the reply);
   - *ours, batched*: our patient simulator for every conversation, all conversations advanced together, one
     batched ``generate`` call per turn (what a vector env step with an LLM patient calls), with the Fact Unit's
     checks, retries and template fallback included in the time.

The model is random (its text is noise), so replies always run to ``max_tokens``; see ``benchmarks/_tiny.py``.

    python -m benchmarks.llm_patient [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from benchmarks._common import results_dir, write_result
from benchmarks.env import SCRIPT, scripted_action

TARGET_SPEEDUP_32 = 5.0
BATCHES = (1, 8, 32)


def make_sims(model: Any, cases: list, *, max_tokens: int, temperature: float) -> list:
    """One fresh LLM-backed :class:`PatientSimulator` per case, reset with a per-conversation seed."""
    from clinic_env.patient import PatientSimulator

    sims = []
    for i, case in enumerate(cases):
        sim = PatientSimulator(model, max_turns=40, llm_max_tokens=max_tokens, llm_temperature=temperature)
        sim.reset(case, rng=i)
        sims.append(sim)
    return sims


def run_batched(
    model: Any, cases: list, *, batch: int, turns: int, max_tokens: int, temperature: float
) -> dict:
    """Advance every conversation ``turns`` doctor turns, ``batch`` conversations per ``respond_batch`` call.

    Only the ``respond_batch`` calls are timed (prompting, generation, checks, retries, fallbacks).
    """
    from clinic_env.patient import respond_batch

    calls0 = model.usage.calls
    seconds, replies, backends = 0.0, 0, Counter()
    for g in range(0, len(cases), batch):
        sims = make_sims(model, cases[g : g + batch], max_tokens=max_tokens, temperature=temperature)
        for t in range(turns):
            live = [s for s in sims if not s.done]
            if not live:
                break
            t0 = time.perf_counter()
            out = respond_batch(live, [scripted_action(t)] * len(live))
            seconds += time.perf_counter() - t0
            replies += len(out)
            backends.update(turn.backend for turn in out)
    return {
        "batch": batch,
        "replies": replies,
        "seconds": seconds,
        "replies_per_s": replies / seconds,
        "generate_calls": model.usage.calls - calls0,
        "backends": dict(backends),
    }


def peer_messages(case: Any, history: list[tuple[str, str]], doctor: str) -> list[dict[str, str]]:
    """An AgentClinic-style patient prompt (written from its description, not copied): a system prompt holding
    the persona and the whole case history the patient knows, and one user message with the dialogue so far."""
    p = case.persona
    facts = "\n".join(f"- {f.patient_text}" for f in case.facts)
    system = (
        f"You are a patient in a clinic who only responds in the form of dialogue. Your name is {p.name}, "
        f"age {case.demographics.age_years:g}, {case.demographics.sex.value}. You are being examined by a doctor "
        "who will ask you questions in order to understand your disease. You are not aware of your diagnosis. "
        "Answer in 1-3 sentences.\nBelow is all of your information:\n" + facts
    )
    dialogue = "\n".join(f"{who}: {text}" for who, text in history)
    user = f"Here is the dialogue history:\n{dialogue}\nDoctor: {doctor}\nProvide the patient's response."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def run_peer_sequential(model: Any, cases: list, *, turns: int, max_tokens: int, temperature: float) -> dict:
    """One conversation after another, one ``generate`` call of batch 1 per turn; the whole loop is timed."""
    calls0 = model.usage.calls
    replies = 0
    t0 = time.perf_counter()
    for i, case in enumerate(cases):
        history = [("Patient", case.opening_statement)]
        for t in range(turns):
            doctor = scripted_action(t)
            reply = model.generate(
                [peer_messages(case, history, doctor)],
                max_tokens=max_tokens,
                temperature=temperature,
                seed=1000 * i + t,
            )[0]
            history += [("Doctor", doctor), ("Patient", reply)]
            replies += 1
    seconds = time.perf_counter() - t0
    return {
        "replies": replies,
        "seconds": seconds,
        "replies_per_s": replies / seconds,
        "generate_calls": model.usage.calls - calls0,
    }


def prefill_probe(model: Any, cases: list) -> dict:
    """Why batching gains less than hoped on CPU: seconds per prompt of a one-token generation (prefill only) of
    the first-turn patient prompts, one at a time, all in one left-padded batch, and in one batch of copies of a
    single prompt (same length: no padding, so no attention mask)."""
    from clinic_env.patient import PatientSimulator

    prompts = []
    for i, case in enumerate(cases):
        sim = PatientSimulator(model, max_turns=40)
        sim.reset(case, rng=i)
        prompts.append(sim.llm_messages(sim._prepare(scripted_action(0))))
    lengths = [len(model.tokenizer(model.render(p))["input_ids"]) for p in prompts]

    def per_prompt(batches: list[list]) -> float:
        t0 = time.perf_counter()
        for b in batches:
            model.generate(b, max_tokens=1, temperature=0.0)
        return (time.perf_counter() - t0) / sum(len(b) for b in batches)

    per_prompt([prompts[:2]])  # warm-up
    return {
        "prompts": len(prompts),
        "prompt_tokens_min": min(lengths),
        "prompt_tokens_max": max(lengths),
        "s_per_prompt_batch1": per_prompt([[p] for p in prompts]),
        "s_per_prompt_batched_padded": per_prompt([prompts]),
        "s_per_prompt_batched_same_length": per_prompt([[prompts[0]] * len(prompts)]),
    }


def summary_rows(doc: dict) -> list[tuple[str, Any]]:
    """Rows of this benchmark's table in ``SUMMARY.md`` (see ``benchmarks/__main__.py``)."""
    c, pf = doc["comparison"], doc["prefill"]
    rows: list[tuple[str, Any]] = [
        (
            "model",
            f"{doc['model']['name']}, {doc['model']['params']:,} params, {doc['model']['device']}, "
            f"{doc['model']['torch_threads']} thread(s)",
        ),
        ("reply length / temperature", f"{doc['max_tokens']} tokens / {doc['temperature']}"),
    ]
    rows += [(f"replies/s at batch {b}", f"{v:.1f}") for b, v in doc["replies_per_s"].items()]
    rows += [
        (
            "speedup 32 over 1",
            f"{doc['speedup_32_over_1']:.2f}x (target >= {doc['target_speedup_32_over_1']:g}x)",
        ),
        (
            f"peer-style sequential vs ours batched ({c['conversations']} conversations x {c['turns']} turns)",
            f"{c['peer_sequential']['replies_per_s']:.1f} vs {c['ours_batched']['replies_per_s']:.1f} replies/s",
        ),
        ("batched over peer-style ratio", f"{c['batched_over_peer_ratio']:.2f}x"),
        (
            "prefill s/prompt: batch 1, batched padded, batched same length",
            f"{pf['s_per_prompt_batch1'] * 1e3:.1f} ms, {pf['s_per_prompt_batched_padded'] * 1e3:.1f} ms, "
            f"{pf['s_per_prompt_batched_same_length'] * 1e3:.1f} ms",
        ),
    ]
    return rows


def plot(by_batch: dict[str, dict], comparison: dict, path: Any) -> None:
    """Replies/s against batch size, with the peer-style sequential loop as a reference line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    bs = sorted(int(b) for b in by_batch)
    ax.plot(bs, [by_batch[str(b)]["replies_per_s"] for b in bs], "-o", label="ours: respond_batch")
    ax.axhline(
        comparison["peer_sequential"]["replies_per_s"],
        color="tab:red",
        ls="--",
        label="peer-style sequential",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("conversations per generate call")
    ax.set_ylabel("patient replies per second")
    ax.set_title("LLM patient throughput (tiny Llama, CPU)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds: 1-2 turns of 4 tokens")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")

    import torch

    import clinic_env
    from benchmarks._tiny import tiny_chat_model

    torch.set_num_threads(args.threads)
    q = args.quick
    max_tokens = 4 if q else 48  # a 1-3 sentence patient reply; a random model never stops early
    temperature = 0.7  # the simulator's default
    sweep_turns = 1 if q else 3
    cmp_convs, cmp_turns = (8, 2) if q else (32, len(SCRIPT))

    t0 = time.perf_counter()
    model = tiny_chat_model()
    build_s = time.perf_counter() - t0
    cases = list(clinic_env.load_cases("builtin"))[:32]
    # Warm-up: first calls pay for lazy initialisation inside torch and transformers.
    run_batched(model, cases[:2], batch=2, turns=1, max_tokens=2, temperature=temperature)

    by_batch = {
        str(b): run_batched(
            model, cases, batch=b, turns=sweep_turns, max_tokens=max_tokens, temperature=temperature
        )
        for b in BATCHES
    }
    speedup = by_batch["32"]["replies_per_s"] / by_batch["1"]["replies_per_s"]

    cmp_cases = cases[:cmp_convs]
    peer = run_peer_sequential(
        model, cmp_cases, turns=cmp_turns, max_tokens=max_tokens, temperature=temperature
    )
    ours = run_batched(
        model,
        cmp_cases,
        batch=len(cmp_cases),
        turns=cmp_turns,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    comparison = {
        "conversations": len(cmp_cases),
        "turns": cmp_turns,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "peer_sequential": {
            **peer,
            "what": (
                "AgentClinic-style loop: conversations one after another; per turn one generate call of batch 1 "
                "whose prompt is the persona, all the case's history facts and the dialogue so far; no checks"
            ),
        },
        "ours_batched": {
            **ours,
            "what": (
                "clinic_env PatientSimulator per conversation, all conversations advanced together: per turn "
                "one respond_batch call = one batched generate call for every live conversation (plus retries "
                "of replies the Fact Unit rejects, then the template fallback), as one vector-env step would"
            ),
        },
        "batched_over_peer_ratio": ours["replies_per_s"] / peer["replies_per_s"],
    }
    prefill = prefill_probe(model, cases[:8] if q else cases)
    result = {
        "quick": q,
        "model": {
            "name": model.name,
            "params": sum(p.numel() for p in model.model.parameters()),
            "vocab": len(model.tokenizer),
            "build_s": build_s,
            "device": model.device,
            "torch_threads": args.threads,
        },
        "max_tokens": max_tokens,
        "temperature": temperature,
        "sweep_conversations": len(cases),
        "sweep_turns": sweep_turns,
        "replies_per_s": {b: v["replies_per_s"] for b, v in by_batch.items()},
        "by_batch": by_batch,
        "speedup_32_over_1": speedup,
        "target_speedup_32_over_1": TARGET_SPEEDUP_32,
        "meets_target": speedup >= TARGET_SPEEDUP_32,
        "comparison": comparison,
        "batched_over_peer_ratio": comparison["batched_over_peer_ratio"],
        "prefill": prefill,
    }
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    plot(by_batch, comparison, out / "llm_patient.png")
    result["plot"] = "llm_patient.png"
    path = write_result("llm_patient", result)
    print(
        "replies/s "
        + ", ".join(f"b{b} {v['replies_per_s']:.1f}" for b, v in by_batch.items())
        + f"; 32 over 1: {speedup:.2f}x; batched vs peer-style sequential: "
        f"{comparison['batched_over_peer_ratio']:.2f}x -> {path}"
    )
    return result


if __name__ == "__main__":
    main()
