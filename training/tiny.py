"""Tiny Llama-style models for CPU runs: a byte-level BPE tokenizer trained on project text and a small Llama.

Nothing is downloaded. Unlike ``tests/tiny_models.py`` (plumbing only), these are meant to *learn*: the chat
template closes every doctor turn with ``<|eos|>`` inside ``{% generation %}`` markers, so SFT's assistant-only
loss teaches the model to stop, and the multi-turn rollout's token sequence is exactly the template's rendering
(``training.rollout`` relies on this; ``tests/test_grpo.py`` checks it).

    python -m training.tiny --out runs/tiny [--vocab 4096 --hidden 128 --layers 3]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>"]
# One turn per message; the doctor's (assistant's) turn ends with <|eos|>, which is part of what it generates.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' }}"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|eos|>' }}{% endgeneration %}"
    "{% else %}{{ m['content'] }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
# (Newlines are Jinja string literals: transformers renders templates with trim_blocks, which eats a raw newline
# that follows a block tag.)


@dataclass(frozen=True)
class TinySpec:
    """Size of a tiny Llama. The defaults learn the scripted doctors' turns in a few CPU minutes."""

    vocab_size: int = 4096
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    intermediate: int = 384
    max_positions: int = 2048
    seed: int = 0


def project_text(case_ids: Iterable[str] | None = None) -> list[str]:
    """Docs and case files (only the cases in ``case_ids`` when given, so held-out cases stay unseen)."""
    from clinic_env.cases import LIBRARY_DIR

    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    keep = set(case_ids) if case_ids is not None else None
    for p in sorted(Path(LIBRARY_DIR).rglob("*.json")):
        if keep is None or p.stem in keep:
            texts.append(p.read_text(encoding="utf-8"))
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` with the chat specials and :data:`CHAT_TEMPLATE`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < len(SPECIAL) + 256:
        raise ValueError(
            f"vocab_size must be at least {len(SPECIAL) + 256} (specials + bytes), got {vocab_size}"
        )
    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        unk_token="<|unk|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(tokenizer: Any, spec: TinySpec = TinySpec()) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` sized by ``spec`` for ``tokenizer``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(spec.seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return model


def build_tiny_model(
    out: str | Path, texts: Iterable[str] | None = None, spec: TinySpec = TinySpec()
) -> Path:
    """Train the tokenizer on ``texts`` (default: :func:`project_text`), build the model, save both to ``out``."""
    import json

    out = Path(out)
    tokenizer = train_tokenizer(project_text() if texts is None else texts, spec.vocab_size)
    model = build_tiny_llama(tokenizer, spec)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "tiny_spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        description="Build a tiny Llama and a BPE tokenizer trained on project text."
    )
    ap.add_argument("--out", required=True, help="folder to write the model and tokenizer to")
    ap.add_argument("--vocab", type=int, default=TinySpec.vocab_size)
    ap.add_argument("--hidden", type=int, default=TinySpec.hidden)
    ap.add_argument("--layers", type=int, default=TinySpec.layers)
    ap.add_argument("--heads", type=int, default=TinySpec.heads)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--held-out-fraction",
        type=float,
        default=0.2,
        help="leave the held-out library cases (training.data.split_case_ids) out of the tokenizer corpus",
    )
    args = ap.parse_args(argv)
    from clinic_env.cases import load_cases

    from .data import split_case_ids

    train_ids, _ = split_case_ids([c.id for c in load_cases("builtin")], args.held_out_fraction)
    spec = TinySpec(
        vocab_size=args.vocab,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        intermediate=3 * args.hidden,
        seed=args.seed,
    )
    path = build_tiny_model(args.out, project_text(train_ids), spec)
    print(f"wrote a tiny Llama ({spec}) to {path}")
    return path


if __name__ == "__main__":
    main()
