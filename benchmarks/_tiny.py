"""A tiny local transformers chat model for benchmarks, built in-process: nothing is downloaded.

The same recipe as ``tests/tiny_models.py`` (tests/tiny_models.py re-exports it): a byte-level
BPE tokenizer trained on the project's docs and case files, and a small randomly initialised Llama. Its text is
noise; benchmarks use it to measure the cost of the plumbing around an LLM patient (prompting, batching, padding,
generation loop), not quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def project_text() -> list[str]:
    """Docs and case files: enough varied English and clinical vocabulary for a small BPE."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    texts += [
        p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "clinic_env" / "cases" / "library").rglob("*.json"))
    ]
    return texts


def train_tokenizer(vocab_size: int = 512) -> Any:
    """A fast tokenizer (``PreTrainedTokenizerFast``) with a chat template, trained on :func:`project_text`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(project_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        unk_token="<|unk|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(
    tokenizer: Any,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    max_positions: int = 4096,
) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` sized for CPU benchmarks (eval mode).

    ``max_positions`` is larger than the test model's 512 because patient prompts (persona, released facts,
    eight turns of history) run to several hundred tokens with a 512-token vocabulary.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_chat_model(*, vocab_size: int = 512, hidden: int = 64, layers: int = 2, device: str = "cpu") -> Any:
    """A :class:`clinic_env.llm.hf.TransformersChatModel` wrapping a freshly built tiny Llama."""
    from clinic_env.llm.hf import TransformersChatModel

    tok = train_tokenizer(vocab_size)
    model = build_tiny_llama(tok, hidden=hidden, layers=layers)
    return TransformersChatModel(
        f"tiny-llama-h{hidden}-l{layers}", model=model, tokenizer=tok, device=device, dtype="float32"
    )
