"""Tiny transformers models built at test time: a BPE tokenizer trained on project text and a small Llama.

Nothing is downloaded. The model is randomly initialised, so its text is noise: tests use it for plumbing
(batching, padding, seeding, saving and loading), not for quality. The recipe lives in ``benchmarks/_tiny.py``
(benchmarks need it too); tests use a 512-position model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._tiny import CHAT_TEMPLATE, ROOT, SPECIAL, project_text, train_tokenizer
from benchmarks._tiny import build_tiny_llama as _build

__all__ = [
    "CHAT_TEMPLATE",
    "ROOT",
    "SPECIAL",
    "build_tiny_llama",
    "project_text",
    "save_tiny_model",
    "train_tokenizer",
]


def build_tiny_llama(
    tokenizer: Any, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0
) -> Any:
    return _build(tokenizer, hidden=hidden, layers=layers, heads=heads, seed=seed, max_positions=512)


def save_tiny_model(path: Path) -> Path:
    tok = train_tokenizer()
    model = build_tiny_llama(tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
