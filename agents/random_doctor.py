"""``RandomDoctor``: uniformly random utterances from the case-independent action catalog (a floor baseline)."""

from __future__ import annotations

from typing import Any

import numpy as np


class RandomDoctor:
    """Picks each turn uniformly from :attr:`clinic_env.wrappers.DiscreteActions.catalog` (questions, exams,
    tests, diagnoses, plans, empathy lines, goodbye), never repeating a line within an episode. Seeded."""

    def __init__(self, seed: int = 0):
        from clinic_env.wrappers import DiscreteActions

        self.lines = [text for _, text in DiscreteActions.catalog]
        self._rng = np.random.default_rng(seed)
        self._used: set[int] = set()

    def reset(self) -> None:
        self._used = set()

    def act(self, observation: str, info: dict[str, Any] | None = None) -> str:
        free = [i for i in range(len(self.lines)) if i not in self._used]
        i = (
            int(free[int(self._rng.integers(len(free)))])
            if free
            else int(self._rng.integers(len(self.lines)))
        )
        self._used.add(i)
        return self.lines[i]
