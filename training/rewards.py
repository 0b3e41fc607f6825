"""Rewards: the episode's rubric score and Baichuan-M2's length reward.

TRL reward functions take ``prompts``, ``completions``, ``completion_ids`` and every dataset / rollout field as
keyword arguments and return one float per completion.

* :func:`rubric_reward` (multi-turn): the rubric score the environment computed when the episode ended, passed
  from the rollout as the ``rubric_score`` field.
* :class:`SingleTurnRubricReward` (single-turn): grades the consultation history plus the one generated answer.
* :class:`LengthReward` + :func:`gate_length_bonus`: R_length = k / sqrt(|o|), paid only when the group's
  20th-percentile rubric score is above a threshold and the sample's rubric score is at or above that percentile.

The length reward is split in two on purpose. The per-sample part (k / sqrt(|o|)) is an ordinary reward function.
The gate needs the whole group's rubric scores, and a reward function sees only the completions on its own
process, while TRL may spread one group over several processes. TRL gathers every process's rewards in
``GRPOTrainer._calculate_rewards`` before computing group advantages, so the gate is applied there, as reward
post-processing on the gathered matrix (``training.grpo.ClinicGRPOTrainer``), where groups are always complete.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def rubric_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    rubric_score: Sequence[float] | None = None,
    **kwargs: Any,
) -> list[float]:
    """The episode's HealthBench-style rubric score, computed by the environment at the end of the episode."""
    if rubric_score is None:
        raise KeyError(
            "rubric_reward needs the rollout's 'rubric_score' field: use it with the multi-turn rollout_func "
            "(training.rollout), or use SingleTurnRubricReward for single-turn data"
        )
    log_metric = kwargs.get("log_metric")
    turns = kwargs.get("turns")
    if log_metric is not None and turns:
        log_metric("episode/turns", sum(turns) / len(turns))
        log_metric("episode/doctor_tokens", sum(kwargs.get("doctor_tokens") or [0]) / len(turns))
    return [float(s) for s in rubric_score]


rubric_reward.__name__ = "rubric"


class SingleTurnRubricReward:
    """Grades ``history + [answer]`` with the case's rubric (rule verifier unless one is given).

    The consultation is the dataset's ``history`` column (the exact text) when present, else the prompt (system
    message dropped, patient = ``"user"``); ``case_id`` comes from the dataset.
    """

    __name__ = "rubric"

    def __init__(
        self, cases: Any, *, verifier: Any = None, rubric_generator: Any = None, rubric_seed: int = 0
    ):
        from clinic_env.rubrics import RuleRubricGenerator, RuleVerifier

        self.cases = cases
        self.verifier = verifier or RuleVerifier()
        self.generator = rubric_generator or RuleRubricGenerator()
        self.rubric_seed = rubric_seed
        self._rubrics: dict[str, Any] = {}

    def __call__(
        self,
        prompts: Sequence[list[dict[str, str]]],
        completions: Sequence[Any],
        case_id: Sequence[str] | None = None,
        history: Sequence[list[dict[str, str]]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        from clinic_env.env import grade_messages

        if case_id is None:
            raise KeyError("SingleTurnRubricReward needs a 'case_id' column in the dataset")
        histories = history if history is not None else prompts  # the exact consultation when the data has it
        out = []
        for hist, completion, cid in zip(histories, completions, case_id, strict=True):
            answer = completion[-1]["content"] if isinstance(completion, list) else str(completion)
            case = self.cases[cid]
            if cid not in self._rubrics:
                self._rubrics[cid] = self.generator.generate(case, seed=self.rubric_seed)
            messages = [m for m in hist if m["role"] != "system"] + [{"role": "assistant", "content": answer}]
            out.append(grade_messages(case, messages, self._rubrics[cid], self.verifier)["score"])
        return out


class LengthReward:
    """The per-sample part of R_length: ``k / sqrt(|o|)``, |o| = the doctor's tokens (``doctor_tokens`` from the
    rollout; else the completion's length). ``ClinicGRPOTrainer`` applies :func:`gate_length_bonus` to it.

    Example:
        >>> LengthReward(k=1.0)([None, None], [None, None], completion_ids=[[1] * 100, [1] * 4])
        [0.1, 0.5]
    """

    __name__ = "length"
    needs_group_gate = True

    def __init__(self, k: float):
        if k < 0:
            raise ValueError(f"length_reward.k must be >= 0, got {k}")
        self.k = k

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        doctor_tokens: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if doctor_tokens is not None:
            lengths = list(doctor_tokens)
        elif completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        else:
            raise KeyError("LengthReward needs completion_ids or the rollout's doctor_tokens")
        return [self.k / math.sqrt(n) if n > 0 else 0.0 for n in lengths]


def gate_length_bonus(
    rubric: torch.Tensor, bonus: torch.Tensor, num_generations: int, percentile: float, threshold: float
) -> torch.Tensor:
    """Keep ``bonus`` only where the group's ``percentile``-th rubric score is > ``threshold`` and the sample's
    rubric score is >= it. Rows are groups of ``num_generations`` consecutive samples (TRL's layout).

    The percentile is linear interpolation between order statistics (numpy's default). NaN rubric scores
    (unscorable samples) never get the bonus.
    """
    import torch

    if rubric.shape != bonus.shape or rubric.dim() != 1:
        raise ValueError(f"rubric and bonus must be 1-D of one shape, got {rubric.shape} and {bonus.shape}")
    if rubric.numel() % num_generations:
        raise ValueError(f"{rubric.numel()} rewards do not split into groups of {num_generations}")
    groups = rubric.reshape(-1, num_generations)
    p = torch.nanquantile(groups.double(), percentile / 100.0, dim=1, keepdim=True).to(rubric.dtype)
    keep = (p > threshold) & (groups >= p)
    return torch.where(keep.view(-1), bonus, torch.zeros_like(bonus))
