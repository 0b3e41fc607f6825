"""Weight-only quantization on CPU, per scheme: weight bytes, held-out perplexity, greedy agreement with the float32
model, and tokens/s.

Targets (issue 8): int8 at least as fast as fp32 with <= 1% perplexity increase; int4 <= 5% perplexity increase
and >= 6x fewer weight bytes than fp32.

    python -m benchmarks.quantization [--quick]

The model is the speculative benchmark's trained target (``runs/bench-models/``, trained on first use). Perplexity
is over blocks of held-out transcripts (cases never trained on); greedy agreement is the share of those positions
where the scheme's argmax equals float32's (teacher-forced), plus how much of float32's greedy continuation each
scheme reproduces before its first different token. ``weight_bytes`` is the checkpoint's weight bytes (tied tensors
once); ``resident_bytes`` what the runtime model holds (the int4 kernel layout plus the embedding's portable copy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks._common import write_result
from benchmarks.speculative import ROOT, bench_models, heldout_prompts

SCHEMES = ["fp32", "bf16", "int8", "int4-g32", "int4-g64", "int4-g128", "int8-torchao", "int4-torchao"]
KV_VARIANTS = {"fp32 + fp8 KV cache": ("fp32", "fp8"), "int4-g32 + fp8 KV cache": ("int4-g32", "fp8")}


def heldout_blocks(tokenizer: Any, n_blocks: int, seq_len: int) -> Any:
    from deploy.corpus import build_corpus, render
    from deploy.tiny import pack

    corpus = build_corpus(episodes_per_case=2)
    ids = [tokenizer(render(c, tokenizer), add_special_tokens=False)["input_ids"] for c in corpus.heldout]
    return pack(ids, seq_len)[:n_blocks]


def forward_logits(model: Any, x: Any, kv: str = "auto") -> Any:
    import torch

    B, T = x.shape
    return model(x, torch.arange(T).expand(B, T), model.new_cache(B, T, kv_cache_dtype=kv)).float()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, few blocks (a smoke test)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from deploy.generate import Decoder
    from deploy.model import load_transformer, pack_linears
    from deploy.quantize import get_scheme, model_weight_bytes, quantize_model, state_dict_bytes, tensor_bytes
    from deploy.tiny import heldout_perplexity

    target_path, _ = bench_models(args.quick)
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(target_path)
    n_blocks, seq_len, n_prompts, max_new = (4, 128, 2, 16) if args.quick else (48, 256, 8, 96)
    blocks = heldout_blocks(tok, n_blocks, seq_len)
    prompts = heldout_prompts(tok, n_prompts, max_tokens=256, seed=1)

    base = load_transformer(target_path, dtype="float32")
    models: dict[str, Any] = {}
    weight_bytes: dict[str, int] = {}
    for name in SCHEMES:
        if name in ("fp32", "bf16"):
            m = load_transformer(target_path, dtype="float32" if name == "fp32" else "bfloat16")
            weight_bytes[name] = model_weight_bytes(m)
            if name == "bf16":
                pack_linears(m)  # as the Engine runs bf16 on CPU
        else:
            m = load_transformer(target_path, dtype="float32")
            scheme = get_scheme(name)
            state = scheme.create_quantized_state_dict(m)
            weight_bytes[name] = (
                state_dict_bytes(state) if not scheme.in_memory_only else tensor_bytes(list(state.values()))
            )
            m = quantize_model(m, name)
        models[name] = m

    # ---- quality: perplexity and teacher-forced agreement with float32
    with torch.inference_mode():
        ref_logits = [forward_logits(base, blocks[i : i + 8]) for i in range(0, len(blocks), 8)]
    ref_top = torch.cat([r[:, :-1].argmax(-1) for r in ref_logits])
    quality: dict[str, dict[str, float]] = {}
    variants = {n: (n, "auto") for n in SCHEMES} | KV_VARIANTS
    for label, (name, kv) in variants.items():
        m = models[name]
        ppl = heldout_perplexity(lambda x, m=m, kv=kv: forward_logits(m, x, kv), blocks)
        with torch.inference_mode():
            top = torch.cat(
                [
                    forward_logits(m, blocks[i : i + 8], kv)[:, :-1].argmax(-1)
                    for i in range(0, len(blocks), 8)
                ]
            )
        quality[label] = {"perplexity": ppl, "greedy_agreement": float((top == ref_top).float().mean())}
    fp32_ppl = quality["fp32"]["perplexity"]
    for q in quality.values():
        q["perplexity_increase"] = q["perplexity"] / fp32_ppl - 1

    # ---- speed: greedy decode, batch 1, round-robin over schemes per prompt
    timing = {label: {"prefill_s": 0.0, "decode_s": 0.0, "tokens": 0, "outputs": []} for label in variants}
    from deploy.speculative import SpecStats

    for p in prompts:
        for label, (name, kv) in variants.items():
            st = SpecStats()
            t0 = time.perf_counter()
            out = Decoder(models[name], [p], max_new_tokens=max_new, stats=st, kv_cache_dtype=kv).run()[0]
            wall = time.perf_counter() - t0
            tm = timing[label]
            tm["prefill_s"] += st.prefill_s
            tm["decode_s"] += wall - st.prefill_s
            tm["tokens"] += len(out)
            tm["outputs"].append(out)

    def prefix_match(a: list[int], b: list[int]) -> float:
        n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        return n / max(1, len(b))

    fp32_tps = timing["fp32"]["tokens"] / timing["fp32"]["decode_s"]
    schemes: dict[str, Any] = {}
    for label, (name, kv) in variants.items():
        tm = timing[label]
        tps = tm["tokens"] / tm["decode_s"]
        schemes[label] = {
            "weight_bytes": weight_bytes[name],
            "weight_bytes_ratio_vs_fp32": weight_bytes["fp32"] / weight_bytes[name],
            "resident_bytes": model_weight_bytes(models[name]),
            **quality[label],
            "tokens_per_s": tps,
            "speed_vs_fp32": tps / fp32_tps,
            "prefill_tokens_per_s": sum(len(p) for p in prompts) / tm["prefill_s"],
            "greedy_prefix_match": sum(
                prefix_match(o, r) for o, r in zip(tm["outputs"], timing["fp32"]["outputs"], strict=True)
            )
            / len(prompts),
            "kv_cache_dtype": kv,
        }
    s = schemes
    int4 = [k for k in ("int4-g32", "int4-g64", "int4-g128")]
    targets = {
        "int8_at_least_as_fast_as_fp32": s["int8"]["tokens_per_s"] >= s["fp32"]["tokens_per_s"],
        "int8_perplexity_increase_le_1pct": s["int8"]["perplexity_increase"] <= 0.01,
        **{f"{k}_perplexity_increase_le_5pct": s[k]["perplexity_increase"] <= 0.05 for k in int4},
        **{f"{k}_weight_bytes_ge_6x_fewer": s[k]["weight_bytes_ratio_vs_fp32"] >= 6 for k in int4},
    }
    payload = {
        "quick": args.quick,
        "threads": args.threads,
        "model": str(target_path.relative_to(ROOT)),
        "parameters": sum(p.numel() for p in base.parameters()),
        "perplexity_tokens": int(blocks[:, 1:].numel()),
        "speed_prompts": len(prompts),
        "max_new_tokens": max_new,
        "activation_dtype_in_quantized_linears": "bfloat16 (W8A16 / W4A16)",
        "targets": targets,
        "schemes": schemes,
    }
    path = write_result("quantization", payload)
    _plot(payload, path.with_suffix(".png"))
    for k, v in schemes.items():
        print(
            f"{k:>24}: {v['weight_bytes'] / 1e6:7.2f} MB ({v['weight_bytes_ratio_vs_fp32']:.1f}x), ppl "
            f"{v['perplexity']:.3f} ({100 * v['perplexity_increase']:+.2f}%), agree {v['greedy_agreement']:.3f}, "
            f"{v['tokens_per_s']:.1f} tok/s ({v['speed_vs_fp32']:.2f}x fp32)"
        )
    print(f"-> {path}")
    return payload


def _plot(payload: dict[str, Any], out: Path) -> None:
    """The PNG beside the JSON."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    s = payload["schemes"]
    names = list(s)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key, label in (
        (axes[0], "weight_bytes", "weight MB"),
        (axes[1], "perplexity_increase", "perplexity increase vs fp32 (%)"),
        (axes[2], "tokens_per_s", "decode tokens/s, batch 1"),
    ):
        vals = [
            s[n][key] / (1e6 if key == "weight_bytes" else 1) * (100 if key == "perplexity_increase" else 1)
            for n in names
        ]
        ax.barh(range(len(names)), vals, color="#4477aa")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
    axes[1].axvline(1, color="grey", ls=":", lw=0.8)
    axes[1].axvline(5, color="grey", ls=":", lw=0.8)
    fig.suptitle(f"weight-only quantization of a {payload['parameters'] / 1e6:.0f}M-parameter Llama on CPU")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
