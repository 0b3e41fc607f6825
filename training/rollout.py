"""Multi-turn rollouts: the policy writes the doctor's turns, the environment writes the patient's.

One episode becomes one GRPO sample: ``prompt_ids`` (system prompt + opening statement + the generation prompt)
and ``completion_ids``, the concatenated rest of the consultation, with ``env_mask`` = 1 on every token the policy
generated and 0 on every token the environment wrote (the patient's replies, the examiner's reports and the chat
template around them). TRL 1.16 reads ``env_mask`` from a ``rollout_func``'s output and uses it as its
``tool_mask``: the loss, the entropy and the logged completion lengths count only mask-1 tokens. The sample's
reward fields (``rubric_score``, ``doctor_tokens``, ...) go to the reward functions.

The token sequence is the chat template's own rendering: after each doctor turn (the sampled ids, ending with the
end-of-turn token) the patient's reply is appended as the template text between that turn and the next
generation prompt, tokenized on its own. A model therefore sees at rollout time exactly the tokens it is trained
on, and an SFT transcript tokenizes to the same ids as the rollout that plays it (tests/test_grpo.py checks both).

All episodes of a call (every case's ``num_generations`` copies together) advance in lock step: one batched
``generate`` per turn for the policy, and one ``respond_batch`` per turn for the patients (one LLM call per turn
when the patient is a ``ChatModel``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .data import policy_view

SENTINEL = "\u0000CLINIC_ENV_TURN\u0000"


def group_seed(base: int, step: int, group: int, case_id: str) -> int:
    """The patient seed of one group of episodes: fixed by (config seed, global step, group, case), so a resumed
    run replays the same consultations; shared by the group, so advantages compare the doctors, not the dice."""
    h = hashlib.sha256(f"{base}|{step}|{group}|{case_id}".encode()).hexdigest()
    return int(h[:8], 16)


class TokenGenerator(Protocol):
    """Continues token contexts: one ``(new_ids, logprobs or None)`` per context, stopping after an eos id."""

    def generate(
        self, contexts: Sequence[Sequence[int]], max_new_tokens: int
    ) -> list[tuple[list[int], list[float] | None]]: ...


@dataclass
class Episode:
    """One consultation as a GRPO sample, plus what the environment said about it."""

    case_id: str
    seed: int
    prompt_ids: list[int]
    messages: list[dict[str, str]]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float | None] = field(default_factory=list)
    score: float = math.nan
    termination_reason: str | None = None
    turns: int = 0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def doctor_tokens(self) -> int:
        """|o| for the length reward: tokens the policy wrote."""
        return int(sum(self.env_mask))

    def record(self, step: int | None = None, *, transcript: bool = False) -> dict[str, Any]:
        """A JSON-ready summary (for rollouts.jsonl)."""
        out: dict[str, Any] = {
            "case_id": self.case_id,
            "seed": self.seed,
            "score": self.score,
            "termination_reason": self.termination_reason,
            "turns": self.turns,
            "doctor_tokens": self.doctor_tokens,
            "completion_tokens": len(self.completion_ids),
        }
        if step is not None:
            out = {"step": step, **out}
        if transcript:
            out["messages"] = self.messages
        return out


class HFGenerator:
    """Batched sampling from a transformers causal LM, over token contexts (left padding)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        eos_token_ids: Sequence[int] | None = None,
        suppress_special: bool = True,
        max_batch: int = 64,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        eos = list(eos_token_ids) if eos_token_ids else [tokenizer.eos_token_id]
        self.eos_token_ids = [e for e in eos if e is not None]
        if not self.eos_token_ids:
            raise ValueError("the tokenizer has no eos token: the doctor's turns could never end")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        # Role and padding tokens inside a doctor turn would break the chat format; only eos may end a turn.
        self.suppress = (
            sorted(set(tokenizer.all_special_ids) - set(self.eos_token_ids)) if suppress_special else []
        )
        self.max_batch = max_batch

    def generate(
        self, contexts: Sequence[Sequence[int]], max_new_tokens: int
    ) -> list[tuple[list[int], list[float] | None]]:
        import torch
        from transformers import GenerationConfig

        out: list[tuple[list[int], list[float] | None]] = []
        device = next(self.model.parameters()).device
        sample = self.temperature > 0
        gen_cfg = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=self.top_k if sample else None,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_id,
            suppress_tokens=self.suppress or None,
        )
        for start in range(0, len(contexts), self.max_batch):
            chunk = contexts[start : start + self.max_batch]
            width = max(len(c) for c in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, c in enumerate(chunk):
                ids[i, width - len(c) :] = torch.tensor(list(c), dtype=torch.long)
                mask[i, width - len(c) :] = 1
            with torch.no_grad():
                gen = self.model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gen_cfg
                )
            for row in gen[:, width:].tolist():
                cut = next((j + 1 for j, t in enumerate(row) if t in self.eos_token_ids), len(row))
                out.append((row[:cut], None))
        return out


class VLLMGenerator:
    """Per-turn sampling through TRL's vLLM integration (``use_vllm``, server or colocate). Not run in CI.

    Every process must make the same number of ``generate`` calls (server mode gathers prompts across processes),
    so :class:`EpisodeRunner` keeps calling with an empty list once its own episodes are done, until all
    processes' episodes are (``any_active``).
    """

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.vllm = trainer.vllm_generation

    def generate(
        self, contexts: Sequence[Sequence[int]], max_new_tokens: int
    ) -> list[tuple[list[int], list[float] | None]]:
        saved = self.vllm.max_completion_length
        self.vllm.max_completion_length = max_new_tokens  # one doctor turn, not the whole episode
        try:
            _, completion_ids, logprobs, _ = self.vllm.generate(
                prompts=[list(c) for c in contexts], images=None, num_generations=1
            )
        finally:
            self.vllm.max_completion_length = saved
        lps = [[lp[0] for lp in seq] for seq in logprobs] if logprobs is not None else [None] * len(contexts)
        return [(list(ids), lp) for ids, lp in zip(completion_ids, lps, strict=True)]

    def any_active(self, local_active: bool) -> bool:
        import torch

        acc = self.trainer.accelerator
        flag = torch.tensor([1 if local_active else 0], device=acc.device)
        return bool(acc.gather(flag).max().item())


def step_batch(envs: Sequence[Any], actions: Sequence[str]) -> list[tuple[Any, float, bool, bool, dict]]:
    """``env.step`` for many ``ConsultationEnv``s (possibly wrapped), with one ``respond_batch`` for the patients.

    ``ConsultationEnv.step`` asks its patient for one reply (``PatientSimulator.respond``, itself
    ``respond_batch([self], [utterance])[0]``). Here the replies of all envs are computed in one ``respond_batch``
    call first, then each env's ``step`` runs its own bookkeeping (messages, termination, grading, logs) on the
    precomputed reply, handed over by shadowing ``respond`` on that patient instance for the one call. clinic_env
    has no batched step yet; a public ``step_batch`` there would replace this (see docs/training.md).
    """
    from clinic_env.patient import respond_batch

    bases = [e.unwrapped for e in envs]
    if any(b.shaping.get("essential_fact", 0.0) for b in bases):
        # Shaping counts facts disclosed *during* step(); with the reply precomputed it would count none.
        return [e.step(a) for e, a in zip(envs, actions, strict=True)]
    turns = respond_batch([b.patient for b in bases], list(actions))
    results = []
    for env, base, turn, action in zip(envs, bases, turns, actions, strict=True):
        base.patient.respond = lambda _utterance, _turn=turn: _turn
        try:
            results.append(env.step(action))
        finally:
            del base.patient.respond
    return results


class EpisodeRunner:
    """Plays batches of consultations with a :class:`TokenGenerator` as the doctor.

    ``envs`` come from ``env_factory()`` (a ``ChatMessages(ConsultationEnv)``), created as needed and reused.
    """

    def __init__(
        self,
        tokenizer: Any,
        env_factory: Any,
        *,
        max_turn_tokens: int,
        max_completion_length: int,
        eos_token_ids: Sequence[int] | None = None,
        max_observation_chars: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.max_observation_chars = max_observation_chars
        self.env_factory = env_factory
        self.max_turn_tokens = max_turn_tokens
        self.max_completion_length = max_completion_length
        eos = list(eos_token_ids) if eos_token_ids else [tokenizer.eos_token_id]
        self.eos_token_ids = [e for e in eos if e is not None]
        self.end_of_turn = self.eos_token_ids[0]
        self.eos_text = tokenizer.decode([self.end_of_turn])
        self._envs: list[Any] = []

    # ------------------------------------------------------------------------------------------ tokens

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def env_suffix_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of the template text between the doctor's last turn (up to and including its end-of-turn
        token) and the next generation prompt, with the patient's reply (``messages[-1]``) inside."""
        if len(messages) < 2 or messages[-2]["role"] != "assistant" or messages[-1]["role"] != "user":
            raise ValueError("env_suffix_ids needs messages ending with an assistant turn and a user reply")
        # Render the doctor's turn as a sentinel, so its end is found whatever the template does around it.
        head = [*messages[:-2], {"role": "assistant", "content": SENTINEL}]
        before = self._render(head, add_generation_prompt=False)
        after = self._render([*head, messages[-1]], add_generation_prompt=True)
        cut = before.index(SENTINEL) + len(SENTINEL)
        if before[cut:].startswith(self.eos_text):
            cut += len(self.eos_text)  # the end-of-turn token is already in the sequence (generated or added)
        if after[:cut] != before[:cut]:
            raise ValueError(
                "the chat template renders an assistant turn differently once a user turn follows it; the "
                "multi-turn rollout needs a template whose earlier turns stay as they were"
            )
        return self._encode(after[cut:])

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self._encode(self._render(messages, add_generation_prompt=True))

    # ------------------------------------------------------------------------------------------ episodes

    def _env(self, i: int) -> Any:
        while len(self._envs) <= i:
            self._envs.append(self.env_factory())
        return self._envs[i]

    def run(self, case_ids: Sequence[str], seeds: Sequence[int], generator: TokenGenerator) -> list[Episode]:
        """Play one episode per ``(case_id, seed)``; all advance together, one turn at a time."""
        if len(case_ids) != len(seeds):
            raise ValueError(f"got {len(case_ids)} case ids but {len(seeds)} seeds")
        envs = [self._env(i) for i in range(len(case_ids))]
        episodes = []
        for env, cid, seed in zip(envs, case_ids, seeds, strict=True):
            obs, _info = env.reset(seed=int(seed), options={"case_id": cid})
            messages = policy_view(obs, self.max_observation_chars)
            episodes.append(Episode(cid, int(seed), self.prompt_ids(messages), messages))
        sync = getattr(generator, "any_active", None)
        while True:
            active = [i for i, ep in enumerate(episodes) if not ep.done]
            if sync is not None:
                if not sync(bool(active)):
                    break
            elif not active:
                break
            outs = generator.generate(
                [episodes[i].prompt_ids + episodes[i].completion_ids for i in active], self.max_turn_tokens
            )
            if not active:
                continue  # vLLM server mode: this process joined a collective call with nothing to generate
            actions = []
            for i, (ids, lps) in zip(active, outs, strict=True):
                ep = episodes[i]
                room = self.max_completion_length - len(ep.completion_ids)
                ids = list(ids)[:room]
                lps = list(lps)[: len(ids)] if lps is not None else [None] * len(ids)
                closed = bool(ids) and ids[-1] in self.eos_token_ids
                text_ids = ids[:-1] if closed else ids
                ep.completion_ids += ids
                ep.env_mask += [1] * len(ids)
                ep.logprobs += lps
                if not closed and len(ep.completion_ids) < self.max_completion_length:
                    # The turn hit max_turn_tokens: close it for the model (mask 0: the policy did not write it).
                    ep.completion_ids.append(self.end_of_turn)
                    ep.env_mask.append(0)
                    ep.logprobs.append(None)
                actions.append(self.tokenizer.decode(text_ids, skip_special_tokens=True))
            results = step_batch([envs[i] for i in active], actions)
            for i, (obs, _r, terminated, truncated, info) in zip(active, results, strict=True):
                ep = episodes[i]
                ep.turns += 1
                ep.messages = policy_view(obs, self.max_observation_chars)
                if terminated or truncated:
                    self._finish(ep, info, info["termination_reason"])
                    continue
                suffix = self.env_suffix_ids(ep.messages)
                # Room for the patient's reply and at least one more doctor token, or the budget ends the episode.
                if len(ep.completion_ids) + len(suffix) >= self.max_completion_length:
                    self._finish(ep, info, "token_budget", graded=False, env=envs[i])
                    continue
                ep.completion_ids += suffix
                ep.env_mask += [0] * len(suffix)
                ep.logprobs += [None] * len(suffix)
        return episodes

    def _finish(
        self, ep: Episode, info: dict[str, Any], reason: str, *, graded: bool = True, env: Any = None
    ) -> None:
        ep.done = True
        ep.termination_reason = reason
        if graded:
            ep.score = float(info["score"])
        else:  # cut by the token budget before the environment ended it: grade the consultation so far
            from clinic_env.env import grade_messages

            base = env.unwrapped
            case = base.cases.get(ep.case_id)
            seed = base.rubric_seed if base.rubric_seed is not None else 0
            rubric = base.rubric_generator.generate(case, seed=seed)
            ep.score = float(grade_messages(case, info["messages"], rubric, base.verifier)["score"])
        ep.info = {
            k: info[k] for k in ("termination_reason", "score_breakdown", "turn", "disclosed") if k in info
        }


def rollout_output(episodes: Sequence[Episode]) -> dict[str, list[Any]]:
    """The dict a TRL ``rollout_func`` returns: required keys plus ``env_mask`` and the reward fields."""
    has_lp = any(lp is not None for ep in episodes for lp in ep.logprobs)
    return {
        "prompt_ids": [ep.prompt_ids for ep in episodes],
        "completion_ids": [ep.completion_ids for ep in episodes],
        "logprobs": [list(ep.logprobs) for ep in episodes] if has_lp else None,
        "env_mask": [ep.env_mask for ep in episodes],
        "rubric_score": [ep.score for ep in episodes],
        "doctor_tokens": [ep.doctor_tokens for ep in episodes],
        "turns": [ep.turns for ep in episodes],
        "termination_reason": [ep.termination_reason or "" for ep in episodes],
    }
