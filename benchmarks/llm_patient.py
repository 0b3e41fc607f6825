"""LLM patient throughput with a tiny local transformers model, batched, and against a peer-style sequential loop.

1. Patient replies/s at batch 1, 8 and 32: the same conversations advanced with
   :func:`clinic_env.patient.respond_batch` in groups of 1, 8 or 32 (one ``generate`` call per group per turn).
   Target (issue 9): >= 5x at 32 over 1. Measured for both generation paths of
   :class:`clinic_env.llm.hf.TransformersChatModel` on the same weights, interleaved batch size by batch size:
   ``right_padded`` (our loop, the default) and ``hf`` (transformers' ``generate`` on a left-padded batch, the
   path before issue 9's change). The headline numbers are the default path's.
2. Side by side, same tiny model, same cases, same doctor turns, same generation settings, for each path:
   - *peer-style sequential*: how AgentClinic runs its patient (one LLM call per turn per conversation, one
     conversation after another, no batching; the patient prompt is the persona plus the whole case history
     and the dialogue so far, and nothing checks the reply);
   - *ours, batched*: our patient simulator for every conversation, all conversations advanced together, one
     batched ``generate`` call per turn (what a vector env step with an LLM patient calls), with the Fact Unit's
     checks, retries and template fallback included in the time.
3. Prefill probe, for each path: seconds per prompt of a one-token generation of the first-turn patient prompts.

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

    Only the ``respond_batch`` calls are timed (prompting, generation, checks, retries, fallbacks), in wall time
    and in this process's CPU time (less sensitive to other jobs on a shared machine taking the core away).
    """
    from clinic_env.patient import respond_batch

    calls0 = model.usage.calls
    seconds, cpu_seconds, replies, backends = 0.0, 0.0, 0, Counter()
    for g in range(0, len(cases), batch):
        sims = make_sims(model, cases[g : g + batch], max_tokens=max_tokens, temperature=temperature)
        for t in range(turns):
            live = [s for s in sims if not s.done]
            if not live:
                break
            t0, c0 = time.perf_counter(), time.process_time()
            out = respond_batch(live, [scripted_action(t)] * len(live))
            seconds += time.perf_counter() - t0
            cpu_seconds += time.process_time() - c0
            replies += len(out)
            backends.update(turn.backend for turn in out)
    return {
        "batch": batch,
        "replies": replies,
        "seconds": seconds,
        "replies_per_s": replies / seconds,
        "cpu_seconds": cpu_seconds,
        "replies_per_cpu_s": replies / cpu_seconds,
        "generate_calls": model.usage.calls - calls0,
        "backends": dict(backends),
    }


def merge_runs(runs: list[dict]) -> dict:
    """Several :func:`run_batched` results of one batch size as one: totals, rates over the totals, and the
    replies/s of each run (their spread shows how noisy the machine was)."""
    replies = sum(r["replies"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    cpu_seconds = sum(r["cpu_seconds"] for r in runs)
    backends: Counter = Counter()
    for r in runs:
        backends.update(r["backends"])
    return {
        "batch": runs[0]["batch"],
        "replies": replies,
        "seconds": seconds,
        "replies_per_s": replies / seconds,
        "cpu_seconds": cpu_seconds,
        "replies_per_cpu_s": replies / cpu_seconds,
        "generate_calls": sum(r["generate_calls"] for r in runs),
        "backends": dict(backends),
        "replies_per_s_by_round": [r["replies_per_s"] for r in runs],
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
    t0, c0 = time.perf_counter(), time.process_time()
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
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    return {
        "replies": replies,
        "seconds": seconds,
        "replies_per_s": replies / seconds,
        "cpu_seconds": cpu_seconds,
        "replies_per_cpu_s": replies / cpu_seconds,
        "generate_calls": model.usage.calls - calls0,
    }


def prefill_probe(model: Any, cases: list, *, max_tokens: int, temperature: float) -> dict:
    """Where a reply's time goes, on the first-turn patient prompts (generate alone, no simulator).

    Seconds per prompt of a one-token generation (prefill only): one at a time, all in one batch (left-padded
    and masked on the ``hf`` path; right-padded, unmasked and prefilled in length-sorted chunks on the
    ``right_padded`` path), and in one batch of copies of a single prompt (same length: no padding at all). Then
    seconds per reply of full ``max_tokens`` replies at batch 1 and batched, and from these the speed-up that
    batching could reach if batched decoding cost nothing: (batch-1 reply) / (batched prefill per prompt).
    """
    from clinic_env.patient import PatientSimulator

    prompts = []
    for i, case in enumerate(cases):
        sim = PatientSimulator(model, max_turns=40)
        sim.reset(case, rng=i)
        prompts.append(sim.llm_messages(sim._prepare(scripted_action(0))))
    lengths = [len(model.tokenizer(model.render(p))["input_ids"]) for p in prompts]

    def per_prompt(batches: list[list], n_tokens: int = 1) -> float:
        t0 = time.perf_counter()
        for b in batches:
            model.generate(b, max_tokens=n_tokens, temperature=temperature, seed=0)
        return (time.perf_counter() - t0) / sum(len(b) for b in batches)

    per_prompt([prompts[:2]])  # warm-up
    out = {
        "prompts": len(prompts),
        "prompt_tokens_min": min(lengths),
        "prompt_tokens_max": max(lengths),
        "s_per_prompt_batch1": per_prompt([[p] for p in prompts]),
        "s_per_prompt_batched": per_prompt([prompts]),
        "s_per_prompt_batched_same_length": per_prompt([[prompts[0]] * len(prompts)]),
        "max_tokens": max_tokens,
        "s_per_reply_batch1": per_prompt([[p] for p in prompts], max_tokens),
        "s_per_reply_batched": per_prompt([prompts], max_tokens),
    }
    out["generate_speedup_batched_over_1"] = out["s_per_reply_batch1"] / out["s_per_reply_batched"]
    out["speedup_bound_if_batched_decode_were_free"] = out["s_per_reply_batch1"] / out["s_per_prompt_batched"]
    return out


def summary_rows(doc: dict) -> list[tuple[str, Any]]:
    """Rows of this benchmark's table in ``SUMMARY.md`` (see ``benchmarks/__main__.py``)."""
    c, pf = doc["comparison"], doc["prefill"]
    rows: list[tuple[str, Any]] = [
        (
            "model",
            f"{doc['model']['name']}, {doc['model']['params']:,} params, {doc['model']['device']}, "
            f"{doc['model']['torch_threads']} thread(s), generation={doc['model']['generation']}",
        ),
        ("reply length / temperature", f"{doc['max_tokens']} tokens / {doc['temperature']}"),
    ]
    rows += [(f"replies/s at batch {b}", f"{v:.1f}") for b, v in doc["replies_per_s"].items()]
    rows += [
        (
            "speedup 32 over 1",
            f"{doc['speedup_32_over_1']:.2f}x (target >= {doc['target_speedup_32_over_1']:g}x); "
            f"on CPU time {doc['speedup_32_over_1_cpu_time']:.2f}x",
        ),
        (
            f"peer-style sequential vs ours batched ({c['conversations']} conversations x {c['turns']} turns)",
            f"{c['peer_sequential']['replies_per_s']:.1f} vs {c['ours_batched']['replies_per_s']:.1f} replies/s",
        ),
        (
            "batched over peer-style ratio",
            f"{c['batched_over_peer_ratio']:.2f}x; on CPU time {c['batched_over_peer_ratio_cpu_time']:.2f}x",
        ),
    ]
    for path, d in doc.get("by_path", {}).items():
        rows.append(
            (
                f"path {path}: replies/s at batch 1 / 8 / 32; speedup; batched over peer-style (CPU time)",
                " / ".join(f"{v:.1f}" for v in d["replies_per_s"].values())
                + f"; {d['speedup_32_over_1']:.2f}x ({d['speedup_32_over_1_cpu_time']:.2f}x)"
                + f"; {d['batched_over_peer_ratio']:.2f}x ({d['batched_over_peer_ratio_cpu_time']:.2f}x)",
            )
        )
    for path, d in pf.items():
        rows.append(
            (
                f"path {path}: prefill s/prompt at batch 1, batched, batched same length",
                f"{d['s_per_prompt_batch1'] * 1e3:.1f} ms, {d['s_per_prompt_batched'] * 1e3:.1f} ms, "
                f"{d['s_per_prompt_batched_same_length'] * 1e3:.1f} ms",
            )
        )
        rows.append(
            (
                f"path {path}: generate alone, s/reply at batch 1 and batched; bound if batched decode were free",
                f"{d['s_per_reply_batch1'] * 1e3:.1f} ms, {d['s_per_reply_batched'] * 1e3:.1f} ms "
                f"({d['generate_speedup_batched_over_1']:.2f}x); "
                f"{d['speedup_bound_if_batched_decode_were_free']:.2f}x",
            )
        )
    return rows


def plot(by_path: dict[str, dict], default: str, path: Any) -> None:
    """Replies/s against batch size for each generation path, with its peer-style sequential loop as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for (name, d), color in zip(by_path.items(), ("tab:blue", "tab:gray"), strict=False):
        rps = d["replies_per_s"]
        bs = sorted(int(b) for b in rps)
        label = f"ours, {name}" + (" (default)" if name == default else "")
        ax.plot(bs, [rps[str(b)] for b in bs], "-o", color=color, label=label)
        ax.axhline(d["peer_replies_per_s"], color=color, ls="--", label=f"peer-style sequential, {name}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("conversations per generate call")
    ax.set_ylabel("patient replies per second")
    ax.set_title("LLM patient throughput (tiny Llama, CPU)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(model: Any, cases: list, *, turns: int, max_tokens: int, temperature: float) -> dict:
    """The peer-style sequential loop and ours batched over the same conversations, with ``model``."""
    peer = run_peer_sequential(model, cases, turns=turns, max_tokens=max_tokens, temperature=temperature)
    ours = run_batched(
        model, cases, batch=len(cases), turns=turns, max_tokens=max_tokens, temperature=temperature
    )
    return {
        "conversations": len(cases),
        "turns": turns,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "generation": model.generation,
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
        "batched_over_peer_ratio_cpu_time": ours["replies_per_cpu_s"] / peer["replies_per_cpu_s"],
    }


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
    from clinic_env.llm.hf import TransformersChatModel

    torch.set_num_threads(args.threads)
    q = args.quick
    max_tokens = 4 if q else 48  # a 1-3 sentence patient reply; a random model never stops early
    temperature = 0.7  # the simulator's default
    sweep_turns = 1 if q else 3
    rounds = 1 if q else 2
    cmp_convs, cmp_turns = (8, 2) if q else (32, len(SCRIPT))

    t0 = time.perf_counter()
    model = tiny_chat_model()
    build_s = time.perf_counter() - t0
    # The same weights and tokenizer behind transformers' generate (the path before issue 9's change).
    models = {
        model.generation: model,
        "hf": TransformersChatModel(
            model.name.removeprefix("hf:"),
            model=model.model,
            tokenizer=model.tokenizer,
            device=model.device,
            generation="hf",
        ),
    }
    cases = list(clinic_env.load_cases("builtin"))[:32]
    for (
        m
    ) in models.values():  # warm-up: first calls pay for lazy initialisation inside torch and transformers
        run_batched(m, cases[:2], batch=2, turns=1, max_tokens=2, temperature=temperature)

    # Interleaved rounds: each round runs every batch size on both paths, so load drift on a shared machine hits
    # every cell alike; a cell's numbers are totals over the rounds.
    runs: dict[str, dict[str, list[dict]]] = {name: {str(b): [] for b in BATCHES} for name in models}
    for _ in range(rounds):
        for b in BATCHES:
            for name, m in models.items():
                runs[name][str(b)].append(
                    run_batched(
                        m, cases, batch=b, turns=sweep_turns, max_tokens=max_tokens, temperature=temperature
                    )
                )
    sweeps = {name: {b: merge_runs(r) for b, r in by_b.items()} for name, by_b in runs.items()}
    cmp_cases = cases[:cmp_convs]
    comparisons = {
        name: compare(m, cmp_cases, turns=cmp_turns, max_tokens=max_tokens, temperature=temperature)
        for name, m in models.items()
    }
    prefill = {
        name: prefill_probe(m, cases[:8] if q else cases, max_tokens=max_tokens, temperature=temperature)
        for name, m in models.items()
    }

    by_path = {}
    for name, sweep in sweeps.items():
        rps = {b: v["replies_per_s"] for b, v in sweep.items()}
        by_path[name] = {
            "replies_per_s": rps,
            "speedup_32_over_1": rps["32"] / rps["1"],
            "speedup_32_over_1_cpu_time": sweep["32"]["replies_per_cpu_s"] / sweep["1"]["replies_per_cpu_s"],
            "batched_over_peer_ratio": comparisons[name]["batched_over_peer_ratio"],
            "batched_over_peer_ratio_cpu_time": comparisons[name]["batched_over_peer_ratio_cpu_time"],
            "peer_replies_per_s": comparisons[name]["peer_sequential"]["replies_per_s"],
            "by_batch": sweep,
        }
    default = model.generation
    by_batch, comparison = sweeps[default], comparisons[default]
    speedup = by_path[default]["speedup_32_over_1"]
    result = {
        "quick": q,
        "model": {
            "name": model.name,
            "params": sum(p.numel() for p in model.model.parameters()),
            "vocab": len(model.tokenizer),
            "build_s": build_s,
            "device": model.device,
            "torch_threads": args.threads,
            "generation": default,
            "prefill_chunk_tokens": model.prefill_chunk_tokens,
        },
        "max_tokens": max_tokens,
        "temperature": temperature,
        "sweep_conversations": len(cases),
        "sweep_turns": sweep_turns,
        "sweep_rounds": rounds,
        "replies_per_s": by_path[default]["replies_per_s"],
        "by_batch": by_batch,
        "speedup_32_over_1": speedup,
        "speedup_32_over_1_cpu_time": by_path[default]["speedup_32_over_1_cpu_time"],
        "target_speedup_32_over_1": TARGET_SPEEDUP_32,
        "meets_target": speedup >= TARGET_SPEEDUP_32,
        "comparison": comparison,
        "batched_over_peer_ratio": comparison["batched_over_peer_ratio"],
        "by_path": by_path,
        "comparison_by_path": comparisons,
        "prefill": prefill,
    }
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    plot(by_path, default, out / "llm_patient.png")
    result["plot"] = "llm_patient.png"
    path = write_result("llm_patient", result)
    for name, d in by_path.items():
        print(
            f"{name}: replies/s "
            + ", ".join(f"b{b} {v:.1f}" for b, v in d["replies_per_s"].items())
            + f"; 32 over 1: {d['speedup_32_over_1']:.2f}x (CPU time {d['speedup_32_over_1_cpu_time']:.2f}x)"
            + "; batched vs peer-style sequential: "
            f"{d['batched_over_peer_ratio']:.2f}x"
        )
    print(f"-> {path}")
    return result


if __name__ == "__main__":
    main()
