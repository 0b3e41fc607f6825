"""SFT teachers: the scripted doctor (``agents.ScriptedDoctor``) or the checklist doctor, optionally varied.

Both follow the doctor protocol ``act(observation: str, info: dict) -> str`` and ``reset()``. They are imported
lazily by name (``teacher.name`` in the config), so switching teachers needs no code change.

Why vary a teacher: a converged imitation of a deterministic teacher plays (almost) the same consultation every
time, so the ``num_generations`` episodes of a group get (almost) the same reward and GRPO has no signal (the
group-mean advantage is zero). :class:`VariedTeacher` spreads the demonstrations over neighbouring behaviours
(fewer or more history questions, other exam and test choices) so the warm-started policy explores and RL can
pick what the rubric pays for. ``variation = 0`` is the teacher as written.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Generic questions a GP might add to any history (no case knowledge).
EXTRA_QUESTIONS = (
    "Have you lost any weight, or noticed a change in your appetite?",
    "Any change in your bowels or your waterworks? Any blood anywhere?",
    "How has your mood been, and how are you sleeping?",
    "Have you travelled recently, or been around anyone unwell?",
    "When was your last period, and is there any chance you could be pregnant?",
    "Have you had anything like this before, or any operations?",
    "Who is at home with you, and how are you managing day to day?",
    "What worries you most, and what were you hoping we could do today?",
)
EXTRA_TESTS = ("urine dipstick", "blood glucose", "LFTs", "pregnancy test", "ECG")
STRUCTURED = ("EXAM:", "TEST:", "DIAGNOSIS:", "PLAN:")


def load_teacher_class(name: str) -> type:
    """The teacher class for ``name`` (``scripted`` or ``checklist``), imported only now."""
    if name == "checklist":
        from clinic_env.policies import ChecklistDoctor

        return ChecklistDoctor
    if name == "scripted":
        try:
            from agents import ScriptedDoctor
        except ImportError as exc:
            raise ImportError(
                "teacher.name 'scripted' needs agents.ScriptedDoctor (agents/scripted.py), which this checkout "
                "does not have yet; set teacher.name: checklist in the config"
            ) from exc
        return ScriptedDoctor
    raise ValueError(f"unknown teacher {name!r}; expected 'scripted' or 'checklist'")


def make_teacher(name: str, *, variation: float = 0.0, rng: np.random.Generator | None = None) -> Any:
    """A fresh teacher; wrapped in :class:`VariedTeacher` when ``variation > 0``."""
    doctor = load_teacher_class(name)()
    if variation > 0:
        return VariedTeacher(doctor, variation, rng if rng is not None else np.random.default_rng(0))
    return doctor


class VariedTeacher:
    """Perturbs any doctor's consultation with probability ``p`` per decision.

    * a plain history question is skipped (the wrapped doctor's next turn is used instead) with probability p;
    * before a non-final turn, one of :data:`EXTRA_QUESTIONS` not yet asked is inserted with probability p;
    * each item of an ``EXAM:`` / ``TEST:`` list is dropped with probability p/2 (one is always kept) and each of
      :data:`EXTRA_TESTS` is added to a ``TEST:`` list with probability p/2.

    The final ``DIAGNOSIS:`` / ``PLAN:`` turn is never changed.

    Example:
        >>> import numpy as np
        >>> from clinic_env.policies import ChecklistDoctor
        >>> doc = VariedTeacher(ChecklistDoctor(), 0.0, np.random.default_rng(0))
        >>> doc.reset()
        >>> doc.act("I have chest pain.", {}) == ChecklistDoctor().act("I have chest pain.", {})
        True
    """

    def __init__(self, doctor: Any, p: float, rng: np.random.Generator):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"variation must be in [0, 1], got {p}")
        self.doctor, self.p, self.rng = doctor, p, rng
        self.reset()

    def reset(self) -> None:
        self.doctor.reset()
        self._stash: str | None = None
        self._asked: set[str] = set()

    def act(self, observation: str, info: dict[str, Any] | None = None) -> str:
        if self._stash is not None:  # the doctor's turn deferred by an inserted question
            turn, self._stash = self._stash, None
            return turn
        turn = self.doctor.act(observation, info)
        for _ in range(20):  # skip plain questions; the doctor always reaches a structured turn eventually
            if turn.lstrip().upper().startswith(STRUCTURED) or self.rng.random() >= self.p:
                break
            turn = self.doctor.act(observation, info)
        final = any(k in turn.upper() for k in ("DIAGNOSIS:", "PLAN:"))
        left = [q for q in EXTRA_QUESTIONS if q not in self._asked]
        if left and not final and self.rng.random() < self.p:
            q = left[int(self.rng.integers(len(left)))]
            self._asked.add(q)
            self._stash = self._vary_lists(turn)
            return q
        return self._vary_lists(turn)

    def _vary_lists(self, turn: str) -> str:
        for prefix in ("EXAM:", "TEST:"):
            if turn.startswith(prefix):
                items = [x.strip() for x in turn[len(prefix) :].split(",") if x.strip()]
                if prefix == "TEST:":
                    items += [t for t in EXTRA_TESTS if t not in items and self.rng.random() < self.p / 2]
                kept = [x for x in items if self.rng.random() >= self.p / 2] or items[:1]
                return f"{prefix} " + ", ".join(kept)
        return turn
