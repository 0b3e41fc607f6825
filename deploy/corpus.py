"""Project transcripts for training tiny models and measuring held-out perplexity.

Consultations are played by ``clinic_env.policies.ChecklistDoctor`` against the rule patient in
``clinic_env.env.ConsultationEnv`` over the shipped case library, several seeds per case (the patient's persona and
wording vary with the seed). Cases are split into train and held-out by case id, so no held-out case's facts are
seen in training. Messages use the env's roles: the patient is ``user``, the doctor ``assistant``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SYSTEM_PROMPT = (
    "You are the doctor in a clinical consultation. Take a history, examine, test, then diagnose and plan."
)


@dataclass
class Corpus:
    """Conversations (lists of role/content messages) split by case id."""

    train: list[list[dict[str, str]]] = field(default_factory=list)
    heldout: list[list[dict[str, str]]] = field(default_factory=list)
    train_cases: list[str] = field(default_factory=list)
    heldout_cases: list[str] = field(default_factory=list)


def split_case_ids(case_ids: Sequence[str], heldout_fraction: float = 0.15) -> tuple[list[str], list[str]]:
    """Deterministic split by a hash of the case id (stable when cases are added): (train, held-out)."""
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    ranked = sorted(case_ids, key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    n_held = max(1, round(len(ranked) * heldout_fraction))
    held = set(ranked[:n_held])
    return [c for c in case_ids if c not in held], [c for c in case_ids if c in held]


def play(case_id: str, seed: int, env: Any = None, max_turns: int = 20) -> list[dict[str, str]]:
    """One consultation's messages (system prompt first) between the checklist doctor and the rule patient."""
    from clinic_env.env import ConsultationEnv
    from clinic_env.policies import ChecklistDoctor

    env = env or ConsultationEnv(cases="builtin", patient="rule", max_turns=max_turns)
    doctor = ChecklistDoctor()
    obs, info = env.reset(seed=seed, options={"case_id": case_id})
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(doctor.act(obs, info))
        done = terminated or truncated
    return [{"role": "system", "content": SYSTEM_PROMPT}, *info["messages"]]


def build_corpus(
    episodes_per_case: int = 8, heldout_fraction: float = 0.15, max_cases: int | None = None
) -> Corpus:
    """Play ``episodes_per_case`` seeded consultations for every library case and split them by case id."""
    from clinic_env.cases import load_cases
    from clinic_env.env import ConsultationEnv

    if episodes_per_case < 1:
        raise ValueError(f"episodes_per_case must be >= 1, got {episodes_per_case}")
    ids = [c.id for c in load_cases("builtin")][:max_cases]
    train_ids, held_ids = split_case_ids(ids, heldout_fraction)
    env = ConsultationEnv(cases="builtin", patient="rule", max_turns=20)
    corpus = Corpus(train_cases=train_ids, heldout_cases=held_ids)
    for cid in ids:
        convs = [play(cid, seed, env) for seed in range(episodes_per_case)]
        (corpus.heldout if cid in held_ids else corpus.train).extend(convs)
    return corpus


def render(conversation: Sequence[dict[str, str]], tokenizer: Any) -> str:
    """A whole conversation as training text with the tokenizer's chat template."""
    return tokenizer.apply_chat_template(list(conversation), tokenize=False)


def doctor_prompts(
    conversations: Sequence[Sequence[dict[str, str]]], tokenizer: Any, max_chars: int = 1500
) -> list[str]:
    """Prompts that end where a doctor turn begins: one per assistant message, the history before it rendered with
    ``add_generation_prompt``. Early messages are dropped (keeping the system prompt) to stay under ``max_chars``."""
    out = []
    for conv in conversations:
        for i, m in enumerate(conv):
            if m["role"] != "assistant":
                continue
            hist = list(conv[:i])
            text = tokenizer.apply_chat_template(hist, tokenize=False, add_generation_prompt=True)
            while len(text) > max_chars and len(hist) > 2:
                hist = [hist[0], *hist[2:]] if hist[0]["role"] == "system" else hist[1:]
                text = tokenizer.apply_chat_template(hist, tokenize=False, add_generation_prompt=True)
            out.append(text)
    return out
