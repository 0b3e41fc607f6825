"""The Termination Gate: when a consultation ends, and why.

Ends (``terminated``) when the doctor has given both a diagnosis and a plan (in either order), says goodbye, or
exhausts the patient's patience (rudeness, repetition, garbled turns the patient cannot make sense of, or a
consultation too long for an impatient persona); the
turn limit ends it as ``truncated``. The reason is always recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from clinic_env.cases.schema import Level, Persona

from .understanding import Intents

# Turns a persona tolerates before leaving, and repeats and rude remarks they put up with.
PATIENCE_TURNS = {Level.low: 14, Level.medium: 22, Level.high: 32}
PATIENCE_REPEATS = {Level.low: 2, Level.medium: 3, Level.high: 4}

REASONS = (
    "diagnosis_and_plan",
    "goodbye",
    "patience_rudeness",
    "patience_repetition",
    "patience_incoherent",
    "patience_too_long",
    "turn_limit",
)


@dataclass
class Decision:
    terminated: bool = False
    truncated: bool = False
    reason: str | None = None


class TerminationGate:
    def __init__(self, persona: Persona, max_turns: int):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = max_turns
        self.turn_budget = PATIENCE_TURNS[persona.patience]
        self.repeat_limit = PATIENCE_REPEATS[persona.patience]
        feeling = persona.mbti[2] == "F"
        self.rude_limit = 1 if (feeling or persona.patience is Level.low) else 2
        self.turns = 0
        self.repeats = 0
        self.rude = 0
        self.garbled = 0
        self.diagnosis_given = False
        self.plan_given = False
        self._seen: set[str] = set()

    def update(
        self, intents: Intents, norm_utterance: str, *, only_repeats: bool, garbled: bool = False
    ) -> Decision:
        """Account for one doctor turn; ``only_repeats`` means it asked only for facts already given, ``garbled``
        that the turn was not language (``coherence.is_garbled``): the patient puts up with as many of those as
        with repeats."""
        self.turns += 1
        self.garbled += garbled
        if intents.rude:
            self.rude += 1
        if norm_utterance.strip() and (norm_utterance in self._seen or only_repeats):
            self.repeats += 1
        self._seen.add(norm_utterance)
        self.diagnosis_given |= intents.diagnosis is not None
        self.plan_given |= intents.plan is not None
        if self.diagnosis_given and self.plan_given:
            return Decision(terminated=True, reason="diagnosis_and_plan")
        if intents.goodbye:
            return Decision(terminated=True, reason="goodbye")
        if self.rude >= self.rude_limit:
            return Decision(terminated=True, reason="patience_rudeness")
        if self.repeats >= self.repeat_limit:
            return Decision(terminated=True, reason="patience_repetition")
        if self.garbled >= self.repeat_limit:
            return Decision(terminated=True, reason="patience_incoherent")
        if self.turns >= self.max_turns:
            return Decision(truncated=True, reason="turn_limit")
        if self.turns >= self.turn_budget:
            return Decision(terminated=True, reason="patience_too_long")
        return Decision()
