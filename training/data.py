"""Case selection (with the fixed held-out rule), teacher transcripts and the datasets of the three stages."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .config import ConfigError

if TYPE_CHECKING:
    from clinic_env.cases import CaseSet

    from .config import DataConfig, EnvConfig, TeacherConfig

HOLD_OUT_SALT = "clinic-env/held-out/v1"


def is_held_out(case_id: str, fraction: float) -> bool:
    """The fixed held-out rule: the first 8 hex digits of sha256(salt + case id), as a fraction of 2^32, < fraction.

    It depends only on the id, so adding cases never moves an existing case between the splits, and no choice of
    hyperparameters can look at which cases are held out.
    """
    h = int(hashlib.sha256((HOLD_OUT_SALT + case_id).encode("utf-8")).hexdigest()[:8], 16)
    return h / 2**32 < fraction


def split_case_ids(case_ids: Iterable[str], fraction: float) -> tuple[list[str], list[str]]:
    """(train ids, held-out ids), each in the input order."""
    ids = list(case_ids)
    held = [c for c in ids if is_held_out(c, fraction)]
    held_set = set(held)
    return [c for c in ids if c not in held_set], held


def select_cases(data: DataConfig) -> CaseSet:
    """The cases a stage trains on; raises :class:`ConfigError` when the selection is empty or names unknown ids."""
    from clinic_env.cases import CaseLoadError, CaseSet, load_cases

    try:
        cases = load_cases(data.cases)
    except (CaseLoadError, FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"data.cases {data.cases!r}: {exc}") from None
    train, held = split_case_ids([c.id for c in cases], data.held_out_fraction)
    keep = {"train": set(train), "held_out": set(held), "all": {c.id for c in cases}}[data.split]
    if data.case_ids is not None:
        unknown = [c for c in data.case_ids if c not in cases]
        if unknown:
            raise ConfigError(f"data.case_ids: unknown case ids {unknown[:5]} in {data.cases!r}")
        outside = [c for c in data.case_ids if c not in keep]
        if outside:
            raise ConfigError(
                f"data.case_ids: {outside[:5]} are not in the {data.split!r} split (held_out_fraction="
                f"{data.held_out_fraction}); set data.split: all to use them"
            )
        keep &= set(data.case_ids)
    chosen = [c for c in cases if c.id in keep]
    if data.max_cases is not None:
        chosen = chosen[: data.max_cases]
    if not chosen:
        raise ConfigError(
            f"the case set is empty: data.cases={data.cases!r}, split={data.split!r}, "
            f"held_out_fraction={data.held_out_fraction}, case_ids={data.case_ids}; widen the selection"
        )
    return CaseSet(chosen, origin=cases.origin)


def make_env(cases: CaseSet, env: EnvConfig, *, patient: Any = None, verifier: Any = None) -> Any:
    """A ``ChatMessages(ConsultationEnv)`` for these cases (patient / verifier objects may be shared)."""
    from clinic_env.env import ConsultationEnv
    from clinic_env.wrappers import ChatMessages

    base = ConsultationEnv(
        cases=cases,
        patient=patient if patient is not None else "rule",
        max_turns=env.max_turns,
        verifier=verifier,
        rubric_seed=env.rubric_seed,
    )
    return ChatMessages(base, system_prompt=env.system_prompt)


def policy_view(messages: Any, max_chars: int | None) -> list[dict[str, str]]:
    """The chat as the policy reads it: patient ("user") messages clipped to ``max_chars`` (``...`` marks a cut).

    Used for the SFT data, the RL prompts and the rollout alike, so all three show the policy the same text.
    """
    out = []
    for m in messages:
        content = m["content"]
        if max_chars is not None and m["role"] == "user" and len(content) > max_chars:
            content = content[: max_chars - 4].rstrip() + " ..."
        out.append({"role": m["role"], "content": content})
    return out


def load_patient(spec: str) -> Any:
    """``"rule"`` or a ``ChatModel`` built from a model spec (one instance shared by every env)."""
    if spec == "rule":
        return "rule"
    from clinic_env.llm import load_chat_model

    return load_chat_model(spec)


def load_verifier(spec: str) -> Any:
    """``None`` (the env's rule verifier) or an ``LLMVerifier`` over a model spec (``llm:openai:MODEL@URL``)."""
    if spec == "rule":
        return None
    from clinic_env.llm import load_chat_model
    from clinic_env.rubrics.verify import LLMVerifier

    return LLMVerifier(load_chat_model(spec[len("llm:") :]))


def teacher_transcripts(
    cases: CaseSet,
    teacher: TeacherConfig,
    env: EnvConfig,
    *,
    episodes_per_case: int,
    seed_offset: int = 0,
) -> list[dict[str, Any]]:
    """Play the teacher against the rule patient: one dict per episode with ``messages`` (as the policy reads
    them: system first, ending with the doctor's last turn), ``full_messages`` (the exact consultation, as graded),
    ``case_id``, ``seed``, ``score`` and ``termination_reason``."""
    import numpy as np

    from .teachers import make_teacher

    e = make_env(cases, env)
    out = []
    for k in range(episodes_per_case):
        for i, case in enumerate(cases):
            seed = teacher.seed + seed_offset + 1000 * k + i
            doctor = make_teacher(teacher.name, variation=teacher.variation, rng=np.random.default_rng(seed))
            obs, info = e.reset(seed=seed, options={"case_id": case.id})
            doctor.reset()
            done = False
            while not done:
                obs, _r, terminated, truncated, info = e.step(doctor.act(obs[-1]["content"], info))
                done = terminated or truncated
            messages = policy_view(obs, env.max_observation_chars)
            full = [dict(m) for m in info["messages"]]  # exact text, no system message: what grading reads
            while messages and messages[-1]["role"] == "user":
                messages.pop()  # the patient's last reply is not part of what the doctor learns to write
                full.pop()
            out.append(
                {
                    "case_id": case.id,
                    "seed": seed,
                    "messages": messages,
                    "full_messages": full,
                    "score": float(info["score"]),
                    "termination_reason": info["termination_reason"],
                }
            )
    return out


def opening_prompt(env: Any, case_id: str, max_chars: int | None = None) -> list[dict[str, str]]:
    """The system prompt and the patient's opening statement, as the policy reads them."""
    obs, _ = env.reset(seed=0, options={"case_id": case_id})
    return policy_view(obs, max_chars)


def prompt_key(prompt: Sequence[dict[str, str]]) -> str:
    """A stable key for a conversational prompt (the rollout maps prompts back to their case this way)."""
    return json.dumps([[m["role"], m["content"]] for m in prompt], ensure_ascii=False)


def multi_turn_rows(cases: CaseSet, env_cfg: EnvConfig) -> list[dict[str, Any]]:
    """One row per case: ``prompt`` (system + opening statement) and ``case_id``. Prompts must be unique."""
    e = make_env(cases, env_cfg)
    rows, seen = [], {}
    for c in cases:
        prompt = opening_prompt(e, c.id, env_cfg.max_observation_chars)
        key = prompt_key(prompt)
        if key in seen:
            raise ConfigError(
                f"cases {seen[key]!r} and {c.id!r} open with the same words, so the rollout cannot tell them apart; "
                "drop one of them from the training set (data.case_ids)"
            )
        seen[key] = c.id
        rows.append({"prompt": prompt, "case_id": c.id})
    return rows


def single_turn_rows(
    cases: CaseSet, teacher: TeacherConfig, env_cfg: EnvConfig, *, episodes_per_case: int
) -> list[dict[str, Any]]:
    """Rubric-based single-turn RL data: the teacher's consultation up to (not including) its final turn.

    The policy writes that one answer; the reward grades the whole consultation with it (``rewards.py``).
    """
    rows = []
    for t in teacher_transcripts(cases, teacher, env_cfg, episodes_per_case=episodes_per_case):
        msgs, full = t["messages"], t["full_messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        last_full = max(i for i, m in enumerate(full) if m["role"] == "assistant")
        rows.append(
            {
                "prompt": msgs[:last],
                "history": full[
                    :last_full
                ],  # graded with the answer (policy_view may have clipped the prompt)
                "case_id": t["case_id"],
                "teacher_answer": msgs[last]["content"],
            }
        )
    return rows
