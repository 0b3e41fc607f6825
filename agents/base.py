"""The doctor-agent contract and helpers to run agents in environments.

A doctor is anything with ``act(observation: str, info: dict) -> str`` and ``reset()``. ``observation`` is what the
environment returns (the patient's words plus ``[examiner]`` lines), ``info`` the environment's info dict (agents
may read ``info["messages"]`` and ``info["patient"]``; they must not read the case id or disclosed fact ids, which
a doctor would not know). Batched agents add ``act_batch(observations, infos) -> list[str]``;
:class:`DoctorBatch` gives any doctor that form by keeping one copy per sub-environment.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Doctor(Protocol):
    def reset(self) -> None: ...

    def act(self, observation: str, info: dict[str, Any]) -> str: ...


@runtime_checkable
class BatchDoctor(Protocol):
    def act_batch(self, observations: Sequence[str], infos: Sequence[dict[str, Any]]) -> list[str]: ...


class DoctorBatch:
    """``n`` independent copies of a doctor stepped together: ``act_batch`` and per-slot ``reset(i)``.

    A slot resets itself when its ``info["turn"]`` is 0 (a new episode), so it works with auto-resetting vector
    environments without extra calls.
    """

    def __init__(self, doctor: Doctor | Callable[[], Doctor], n: int):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        # a class or a factory function builds fresh doctors; an instance is copied
        make = doctor if isinstance(doctor, type) or not hasattr(doctor, "act") else None
        self.doctors = [make() if make else copy.deepcopy(doctor) for _ in range(n)]

    def reset(self, i: int | None = None) -> None:
        for d in self.doctors if i is None else [self.doctors[i]]:
            d.reset()

    def act_batch(self, observations: Sequence[str], infos: Sequence[dict[str, Any]]) -> list[str]:
        if len(observations) != len(self.doctors) or len(infos) != len(self.doctors):
            raise ValueError(
                f"expected {len(self.doctors)} observations and infos, got {len(observations)} and {len(infos)}"
            )
        out = []
        for d, obs, info in zip(self.doctors, observations, infos, strict=True):
            if info.get("turn") == 0:
                d.reset()
            out.append(d.act(obs, info))
        return out


def run_episode(
    env: Any, doctor: Doctor, *, seed: int | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Play one episode of a Gymnasium ``ConsultationEnv`` (or wrapper with text actions); return the final info
    with ``return`` (sum of rewards) and ``turns`` added."""
    obs, info = env.reset(seed=seed, options=options)
    doctor.reset()
    total, turns = 0.0, 0
    while True:
        action = doctor.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        turns += 1
        if terminated or truncated:
            return {**info, "return": total, "turns": turns}
