"""Tiny Llama models on project text: a briefly trained target for the benchmarks, and random ones for tests.

``python -m deploy.tiny --out runs/bench-models/target`` plays the transcript corpus (``deploy.corpus``), trains a
byte-level BPE tokenizer with a chat template on it, trains a small ``LlamaForCausalLM`` (bfloat16 autocast on CPU)
and saves both with ``save_pretrained``. ``save_tiny_engine_model(path)`` builds a random tiny model in about a
second, for tests of anything that loads an ``Engine``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SPECIAL = ["<|pad|>", "<|bos|>", "<|end|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>"]
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
# <|end|> closes every message and is the eos: generation of a reply stops there.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass
class TinyConfig:
    """Hyperparameters of the benchmark target (about 26M parameters)."""

    vocab_size: int = 2048
    hidden: int = 512
    layers: int = 8
    heads: int = 8
    kv_heads: int = 4
    intermediate: int = 1536
    seq_len: int = 256
    batch: int = 16
    steps: int = 300
    lr: float = 2e-3
    warmup: int = 30
    weight_decay: float = 0.05
    episodes_per_case: int = 8
    threads: int = 1  # on a shared CPU, idle OpenMP threads spin and slow everyone down
    seed: int = 0
    max_minutes: float = 30.0  # a safety cap: training stops early (and says so) past this


def train_tokenizer(texts: Sequence[str], vocab_size: int = 2048) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, with role tokens and the chat template above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|end|>",
        unk_token="<|unk|>",
        additional_special_tokens=ROLE_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def llama_config(
    tokenizer: Any, *, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int
) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )


def pack(token_lists: Sequence[Sequence[int]], seq_len: int) -> Any:
    """Concatenate token lists and cut them into ``[n, seq_len]`` blocks (the remainder is dropped)."""
    import torch

    flat = [t for ids in token_lists for t in ids]
    n = len(flat) // seq_len
    if n == 0:
        raise ValueError(f"only {len(flat)} tokens: not one block of {seq_len}")
    return torch.tensor(flat[: n * seq_len]).view(n, seq_len)


def heldout_perplexity(forward_logits: Any, blocks: Any, batch: int = 8) -> float:
    """exp(mean next-token cross-entropy) over ``blocks`` ``[n, T]``; ``forward_logits(tokens) -> [b, T, V]``."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(blocks), batch):
            x = blocks[i : i + batch]
            logits = forward_logits(x)[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += x[:, 1:].numel()
    return math.exp(total / count)


def train_target(
    out: str | Path, cfg: TinyConfig | None = None, corpus: Any = None, log: Any = print
) -> Path:
    """Train the tokenizer and a small Llama on the transcript corpus; save to ``out`` with a training log."""
    import torch

    from .corpus import build_corpus, render

    cfg = cfg or TinyConfig()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    corpus = corpus or build_corpus(cfg.episodes_per_case)
    tok = train_tokenizer([render(c, _PlainTemplate()) for c in corpus.train], cfg.vocab_size)
    train_ids = [tok(render(c, tok), add_special_tokens=False)["input_ids"] for c in corpus.train]
    held_ids = [tok(render(c, tok), add_special_tokens=False)["input_ids"] for c in corpus.heldout]
    blocks, held_blocks = pack(train_ids, cfg.seq_len), pack(held_ids, cfg.seq_len)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(
        llama_config(
            tok,
            hidden=cfg.hidden,
            layers=cfg.layers,
            heads=cfg.heads,
            kv_heads=cfg.kv_heads,
            intermediate=cfg.intermediate,
        )
    )
    losses = train_causal_lm(model, blocks, cfg, log=log, t_start=t_start)
    model.eval()
    ppl = heldout_perplexity(lambda x: model(input_ids=x).logits, held_blocks[:64])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    info = {
        "config": asdict(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens_available": int(blocks.numel()),
        "train_cases": len(corpus.train_cases),
        "heldout_cases": len(corpus.heldout_cases),
        "losses": losses,
        "heldout_perplexity": ppl,
        "seconds": time.perf_counter() - t_start,
    }
    (out / "training_log.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log(
        f"target: {info['parameters'] / 1e6:.1f}M params, held-out ppl {ppl:.2f}, {info['seconds']:.0f}s -> {out}"
    )
    return out


def train_causal_lm(
    model: Any, blocks: Any, cfg: Any, *, log: Any = print, t_start: float | None = None
) -> list[float]:
    """Next-token training on ``blocks`` with AdamW, warmup + cosine, bfloat16 autocast; returns the losses."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    model.train()
    losses: list[float] = []
    t0 = t_start or time.perf_counter()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        idx = torch.randint(0, len(blocks), (cfg.batch,), generator=gen)
        x = blocks[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 25 == 0 or step == cfg.steps - 1:
            log(f"step {step}/{cfg.steps} loss {losses[-1]:.3f} ({time.perf_counter() - t0:.0f}s)")
        if (time.perf_counter() - t0) / 60 > cfg.max_minutes:
            log(f"stopping at step {step}: past max_minutes={cfg.max_minutes}")
            break
    return losses


class _PlainTemplate:
    """Renders conversations for tokenizer training before the tokenizer exists (same text as CHAT_TEMPLATE)."""

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False, **_: Any) -> str:
        return "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)


def save_tiny_engine_model(
    path: str | Path,
    *,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vocab_size: int = 384,
) -> Path:
    """A random tiny Llama (hidden 64, 2 layers) and a tokenizer trained on a little project text, saved for tests.

    Random weights: its text is noise, good for plumbing (batching, seeds, stop strings, the server), not quality.
    """
    import torch
    from transformers import LlamaForCausalLM

    from .corpus import SYSTEM_PROMPT

    texts = [SYSTEM_PROMPT, *(_project_sample())]
    tok = train_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    cfg = llama_config(
        tok, hidden=hidden, layers=layers, heads=heads, kv_heads=heads, intermediate=2 * hidden
    )
    model = LlamaForCausalLM(cfg).eval()
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(p)
    tok.save_pretrained(p)
    return p


def _project_sample() -> list[str]:
    """A few case files and the checklist doctor's lines: enough text for a small BPE, read in milliseconds."""
    from clinic_env.cases import LIBRARY_DIR
    from clinic_env.policies import CLOSING, HISTORY

    files = sorted(Path(LIBRARY_DIR).rglob("*.json"))[:12]
    return [*HISTORY, CLOSING, *(f.read_text(encoding="utf-8") for f in files)]


def main(argv: list[str] | None = None) -> int:
    """``python -m deploy.tiny --out PATH [--steps N] [--threads T]``: train and save the benchmark target."""
    import argparse

    ap = argparse.ArgumentParser(description="Train a tiny Llama target on project transcripts.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=TinyConfig.steps)
    ap.add_argument("--threads", type=int, default=TinyConfig.threads)
    ap.add_argument("--episodes-per-case", type=int, default=TinyConfig.episodes_per_case)
    args = ap.parse_args(argv)
    train_target(
        args.out, TinyConfig(steps=args.steps, threads=args.threads, episodes_per_case=args.episodes_per_case)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
