"""Distil a small draft model from a target on the target's own outputs (as Baichuan-M2 trained its draft).

    python -m deploy.distill --target runs/bench-models/target --out runs/bench-models/draft

1. Prompts: doctor-turn prompts from the training half of the transcript corpus (``deploy.corpus``; held-out
   cases are never used), rendered with the target's chat template and cut to the last tokens that fit.
2. The target continues every prompt (greedy by default, through end-of-turn tokens, so continuations cover
   doctor and patient text alike); prompt + continuation is one training sequence.
3. The target scores each sequence once; its top-k next-token probabilities (renormalised) are kept.
4. A small Llama with the target's tokenizer is trained to minimise the cross-entropy to those probabilities
   (forward KL up to a constant) at every position: what maximises speculative acceptance is matching the
   target's distribution, not just its argmax.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class DistillConfig:
    """Draft architecture and distillation hyperparameters."""

    hidden: int = 256
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 768
    prompts: int = 1536
    prompt_tokens: int = 192
    gen_tokens: int = 96
    gen_batch: int = 32
    temperature: float = 0.0
    top_k: int = 32
    steps: int = 1500
    batch: int = 16
    lr: float = 3e-3
    warmup: int = 30
    threads: int = 1  # on a shared CPU, idle OpenMP threads spin and slow everyone down
    seed: int = 0


def build_sequences(target: Any, tokenizer: Any, cfg: DistillConfig, log: Any = print) -> list[list[int]]:
    """Prompt + target continuation token lists (step 1 and 2)."""
    import random

    from .corpus import build_corpus, doctor_prompts
    from .generate import generate_tokens

    corpus = build_corpus()
    prompts = doctor_prompts(corpus.train, tokenizer)
    random.Random(cfg.seed).shuffle(prompts)
    prompts = prompts[: cfg.prompts]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"][-cfg.prompt_tokens :] for p in prompts]
    seqs: list[list[int]] = []
    t0 = time.perf_counter()
    for i in range(0, len(ids), cfg.gen_batch):
        chunk = ids[i : i + cfg.gen_batch]
        outs = generate_tokens(
            target, chunk, max_new_tokens=cfg.gen_tokens, temperature=cfg.temperature, seed=cfg.seed + i
        )
        seqs += [p + o for p, o in zip(chunk, outs, strict=True)]
        log(f"generated {len(seqs)}/{len(ids)} continuations ({time.perf_counter() - t0:.0f}s)")
    return seqs


def teacher_topk(target: Any, seqs: list[list[int]], k: int, batch: int = 16) -> tuple[Any, Any, Any]:
    """Right-padded sequences ``[N, T]``, the target's top-k next-token ids and probabilities at every position
    (``[N, T, k]``, renormalised over the k), and a mask of real positions (step 3)."""
    import torch

    T = max(len(s) for s in seqs)
    tokens = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s) - 1] = True  # the last token has no next token to predict
    top_ids = torch.zeros(len(seqs), T, k, dtype=torch.int32)
    top_p = torch.zeros(len(seqs), T, k, dtype=torch.bfloat16)
    with torch.inference_mode():
        for i in range(0, len(seqs), batch):
            x = tokens[i : i + batch]
            cache = target.new_cache(len(x), T)
            logits = target(x, torch.arange(T).expand(len(x), T), cache).float()
            p, idx = torch.softmax(logits, -1).topk(k, dim=-1)
            top_ids[i : i + batch] = idx.to(torch.int32)
            top_p[i : i + batch] = (p / p.sum(-1, keepdim=True)).to(torch.bfloat16)
    return tokens, (top_ids, top_p), mask


def train_draft(
    draft: Any, tokens: Any, teacher: tuple[Any, Any], mask: Any, cfg: DistillConfig, log: Any = print
) -> list[float]:
    """Minimise the cross-entropy from the teacher's top-k probabilities to the draft (step 4)."""
    import torch

    top_ids, top_p = teacher
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(draft.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    losses: list[float] = []
    t0 = time.perf_counter()
    draft.train()
    for step in range(cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(tokens), (cfg.batch,), generator=gen)
        x, m = tokens[idx], mask[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = draft(input_ids=x).logits
        logq = torch.log_softmax(logits.float(), -1).gather(-1, top_ids[idx].long())
        loss = -((top_p[idx].float() * logq).sum(-1) * m).sum() / m.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"draft step {step}/{cfg.steps} soft CE {losses[-1]:.3f} ({time.perf_counter() - t0:.0f}s)")
    draft.eval()
    return losses


def distill(
    target_path: str | Path, out: str | Path, cfg: DistillConfig | None = None, log: Any = print
) -> Path:
    """Run all four steps and save the draft (``save_pretrained``, the target's tokenizer, ``distill_log.json``)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from .model import load_transformer
    from .tiny import llama_config

    cfg = cfg or DistillConfig()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(target_path, local_files_only=True)
    target = load_transformer(target_path, dtype="float32")
    seqs = build_sequences(target, tokenizer, cfg, log)
    tokens, teacher, mask = teacher_topk(target, seqs, cfg.top_k)
    log(f"teacher scored {len(seqs)} sequences ({time.perf_counter() - t_start:.0f}s)")
    dcfg = llama_config(
        tokenizer,
        hidden=cfg.hidden,
        layers=cfg.layers,
        heads=cfg.heads,
        kv_heads=cfg.kv_heads,
        intermediate=cfg.intermediate,
    )
    if dcfg.vocab_size != target.args.vocab_size:
        dcfg.vocab_size = target.args.vocab_size
    draft = LlamaForCausalLM(dcfg)
    losses = train_draft(draft, tokens, teacher, mask, cfg, log)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    draft.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "config": asdict(cfg),
        "target": str(target_path),
        "parameters": sum(p.numel() for p in draft.parameters()),
        "sequences": len(seqs),
        "losses": losses,
        "seconds": time.perf_counter() - t_start,
    }
    (out / "distill_log.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log(f"draft: {info['parameters'] / 1e6:.2f}M params, final soft CE {losses[-1]:.3f} -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m deploy.distill --target PATH --out PATH [--steps N] [--prompts N] [--hidden H] [--layers L]``."""
    import argparse

    d = DistillConfig()
    ap = argparse.ArgumentParser(
        description="Distil a draft model from a target on the target's own outputs."
    )
    ap.add_argument("--target", required=True, help="target model folder")
    ap.add_argument("--out", required=True, help="where to save the draft")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--prompts", type=int, default=d.prompts)
    ap.add_argument("--gen-tokens", type=int, default=d.gen_tokens)
    ap.add_argument("--hidden", type=int, default=d.hidden)
    ap.add_argument("--layers", type=int, default=d.layers)
    ap.add_argument("--heads", type=int, default=d.heads)
    ap.add_argument("--kv-heads", type=int, default=d.kv_heads)
    ap.add_argument("--intermediate", type=int, default=d.intermediate)
    ap.add_argument("--temperature", type=float, default=d.temperature, help="0: the target's greedy outputs")
    ap.add_argument("--threads", type=int, default=d.threads)
    ap.add_argument("--seed", type=int, default=d.seed)
    a = ap.parse_args(argv)
    cfg = DistillConfig(
        hidden=a.hidden,
        layers=a.layers,
        heads=a.heads,
        kv_heads=a.kv_heads,
        intermediate=a.intermediate,
        prompts=a.prompts,
        gen_tokens=a.gen_tokens,
        temperature=a.temperature,
        steps=a.steps,
        threads=a.threads,
        seed=a.seed,
    )
    distill(a.target, a.out, cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
