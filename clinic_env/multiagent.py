"""The consultation as a two-agent PettingZoo AEC environment: a doctor and a patient take turns.

Research software, not for clinical use.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import AECEnv
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

from .cases import Case, CaseSet, load_cases
from .env import _charset, grade_messages
from .patient import PatientSimulator
from .rubrics import RuleRubricGenerator, RuleVerifier
from .rubrics.schema import Rubric

DOCTOR, PATIENT = "doctor", "patient"


class Utterance(str):
    """An observation: a plain ``str`` that also carries the ``Text`` space's ``dtype``.

    PettingZoo's ``api_test`` compares ``observation.dtype`` with ``observation_space.dtype`` and assumes NumPy
    observations (Farama-Foundation/PettingZoo#1111); a ``str`` has no ``dtype``. This subclass behaves as a
    ``str`` everywhere else (equality, hashing, JSON, ``Text.contains``).
    """

    __slots__ = ()
    dtype: ClassVar[np.dtype] = np.dtype(str)


def env(**kwargs: Any) -> OrderEnforcingWrapper:
    """:class:`raw_env` wrapped in PettingZoo's ``OrderEnforcingWrapper``."""
    return OrderEnforcingWrapper(raw_env(**kwargs))


class raw_env(AECEnv[str, str, str]):  # PettingZoo names its classes raw_env
    """A doctor and a patient, both agents, alternate turns in a consultation drawn from a case library.

    ## Agents and turn order
    ``possible_agents = ["doctor", "patient"]``; turns go doctor, patient, doctor, patient, ... The episode starts
    with the patient's opening statement (spoken by the case, not by the patient agent).

    ## Actions
    Free text (``Text`` spaces) for both agents; anything that is not a ``str`` raises ``TypeError``.

    - **doctor**: its utterance. The simulator understands it exactly as in
      :class:`~clinic_env.env.ConsultationEnv`: facts are released, exam requests and test orders produce
      examiner lines, and the Termination Gate decides whether the consultation ends.
    - **patient**: the patient's reply. It is checked by the Fact Unit (naming the diagnosis before the doctor
      has, a fact not yet released, a result not ordered, jargon beyond the persona's literacy) and recorded.

    ## Observations
    - **doctor**: the patient's latest words, followed by one ``[examiner] ...`` line per finding or result
      released that turn (as in ``ConsultationEnv``).
    - **patient**: the doctor's latest utterance (empty before the doctor has spoken).

    Both are cut to the space's ``max_length``; characters outside the charset become ``?``. Observations are
    :class:`Utterance` objects, a ``str`` subclass with a ``dtype`` (which PettingZoo's ``api_test`` requires).

    ## Rewards
    - **doctor**: 0 on every turn and, when the episode ends, the case rubric's score (rule rubric generator and
      verifier by default, ``score_grades`` over the transcript: the same grading as ``ConsultationEnv``).
    - **patient**: -1 for each reply that fails the Fact Unit check, 0 otherwise (for training patient
      simulators).

    ## Episode end
    After the patient's reply to a doctor turn on which the Termination Gate ended the consultation, both agents
    are terminated (diagnosis and plan, goodbye, patience exhausted) or truncated (``max_turns`` doctor turns).
    Each then takes one ``step(None)``, as PettingZoo expects. ``infos`` always hold ``case_id`` and ``turn``;
    at the end both hold ``termination_reason``, the doctor's also ``score``, ``score_breakdown`` and ``rubric``,
    and the patient's ``violations`` (every violation of the episode, as ``"turn N: kind: detail"``).

    ## The built-in patient
    When no patient policy is at hand, :meth:`builtin_patient_action` returns the rule simulator's template
    reply for the pending turn; with it the episode matches ``ConsultationEnv`` with the same seed, transcript
    and reward. :meth:`patient_messages` gives the LLM prompt the simulator would use (persona and released facts
    only), for an LLM patient policy::

        from clinic_env.multiagent import env as make_env

        e = make_env()
        e.reset(seed=0, options={"case_id": "card-inferior-stemi-pde5"})
        for agent in e.agent_iter():
            obs, reward, terminated, truncated, info = e.last()
            if terminated or truncated:
                action = None
            elif agent == "doctor":
                action = doctor_policy(obs)
            else:
                action = e.unwrapped.builtin_patient_action()  # or patient_policy(obs)
            e.step(action)

    ## Arguments
    - ``cases``: ``"builtin"``, a path (JSON, JSONL, folder), a ``CaseSet`` or a list of cases.
    - ``max_turns``: doctor turns before truncation (default 20).
    - ``rubric_generator`` / ``verifier``: pluggable (default: rule generator, rule verifier).
    - ``rubric_seed``: seed of the criterion wording; ``None`` draws it from the env's generator each episode.
    - ``render_mode``: ``"ansi"`` (``render()`` returns the transcript) or ``None``.
    - ``max_action_chars`` / ``max_observation_chars``: ``max_length`` of the action / observation spaces.

    ``reset(seed=None, options=None)``: ``options={"case_id": ...}`` picks the case (an unknown id raises
    ``KeyError``); other option keys are ignored. The same seed and actions give the same observations.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "clinic_env_consultation_v0",
        "render_modes": ["ansi"],
        "is_parallelizable": False,
    }

    def __init__(
        self,
        cases: Any = "builtin",
        max_turns: int = 20,
        rubric_generator: Any = None,
        verifier: Any = None,
        rubric_seed: int | None = 0,
        render_mode: str | None = None,
        max_action_chars: int = 4000,
        max_observation_chars: int = 8000,
    ):
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive int, got {max_turns!r}")
        self.cases: CaseSet = load_cases(cases)
        self.sim = PatientSimulator("rule", max_turns=max_turns)
        self.max_turns = max_turns
        self.rubric_generator = rubric_generator or RuleRubricGenerator()
        self.verifier = verifier or RuleVerifier()
        self.rubric_seed = rubric_seed
        self.render_mode = render_mode
        charset = _charset(self.cases)
        self._charset = frozenset(charset)
        self.possible_agents = [DOCTOR, PATIENT]
        self.observation_spaces = {
            a: spaces.Text(max_length=max_observation_chars, min_length=0, charset=charset)
            for a in self.possible_agents
        }
        self.action_spaces = {
            a: spaces.Text(max_length=max_action_chars, min_length=0, charset=charset)
            for a in self.possible_agents
        }
        self._np_random: np.random.Generator | None = None
        self._rubrics: dict[tuple[str, int], Rubric] = {}
        self._case: Case | None = None
        self._pending: Any = None

    # ------------------------------------------------------------------------------------------- spaces

    def observation_space(self, agent: str) -> spaces.Text:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Text:
        return self.action_spaces[agent]

    # ------------------------------------------------------------------------------------------- helpers

    def _fit(self, text: str, agent: str) -> Utterance:
        """Keep an observation inside the agent's observation space (length and charset)."""
        text = "".join(ch if ch in self._charset else "?" for ch in text)
        return Utterance(text[: self.observation_spaces[agent].max_length])

    def _rubric(self, case: Case, seed: int) -> Rubric:
        key = (case.id, seed)
        if key not in self._rubrics:
            self._rubrics[key] = self.rubric_generator.generate(case, seed=seed)
        return self._rubrics[key]

    def _base_info(self) -> dict[str, Any]:
        assert self._case is not None
        return {"case_id": self._case.id, "turn": self._doctor_turns}

    def _grade(self) -> dict[str, Any]:
        case = self._case
        assert case is not None
        rubric = self._rubric(case, self._episode_rubric_seed)
        graded = grade_messages(case, self._messages, rubric, self.verifier)
        del graded["grades"], graded["metrics"]
        return graded

    # ------------------------------------------------------------------------------------------- the patient

    def _require_pending(self, what: str) -> Any:
        if self._case is None:
            raise RuntimeError(f"call reset() before {what}")
        if self._pending is None or self.agent_selection != PATIENT:
            raise RuntimeError(f"{what} is only available on the patient's turn, after the doctor has spoken")
        return self._pending

    def builtin_patient_action(self) -> str:
        """The rule simulator's reply to the pending doctor turn (a patient action that passes the Fact Unit)."""
        return self._require_pending("builtin_patient_action()").template.text

    def patient_messages(self) -> list[dict[str, str]]:
        """The chat prompt the simulator's LLM backend would use for the pending turn (persona, released facts)."""
        return self.sim.llm_messages(self._require_pending("patient_messages()"))

    # ------------------------------------------------------------------------------------------- API

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        rng = self._np_random
        options = options or {}
        # The same draws, in the same order, as ConsultationEnv.reset: same seed, same episode.
        if "case_id" in options:
            case = self.cases.get(options["case_id"])  # KeyError naming close matches
        else:
            case = self.cases[int(rng.integers(len(self.cases)))]
        self._case = case
        self._episode_rubric_seed = (
            self.rubric_seed if self.rubric_seed is not None else int(rng.integers(2**31))
        )
        opening = self.sim.reset(case, np.random.default_rng(int(rng.integers(2**63))))
        self._messages: list[dict[str, str]] = [{"role": "user", "content": opening}]
        self._doctor_turns = 0
        self._doctor_obs = opening
        self._patient_obs = ""
        self._doctor_utterance = ""
        self._pending = None
        self._violations: list[str] = []

        self.agents = self.possible_agents[:]
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: self._base_info() for a in self.agents}
        self.agent_selection = DOCTOR
        self._skip_agent_selection = None

    def observe(self, agent: str) -> Utterance:
        if agent == DOCTOR:
            return self._fit(self._doctor_obs, DOCTOR)
        if agent == PATIENT:
            return self._fit(self._patient_obs, PATIENT)
        raise KeyError(f"unknown agent {agent!r}; agents are {self.possible_agents}")

    def step(self, action: str | None) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        if not isinstance(action, str):
            raise TypeError(
                f"the {agent}'s action is its utterance and must be a str, got {type(action).__name__}"
            )
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        if agent == DOCTOR:
            self._doctor_step(action)
        else:
            self._patient_step(action)
        self._accumulate_rewards()

    def _doctor_step(self, utterance: str) -> None:
        self._pending = self.sim._prepare(utterance)
        self._doctor_utterance = utterance
        self._doctor_turns += 1
        self._messages.append({"role": "assistant", "content": utterance})
        self._patient_obs = utterance
        for a in self.agents:
            self.infos[a] = self._base_info()
        self.agent_selection = PATIENT

    def _patient_step(self, text: str) -> None:
        pending = self._pending
        violations = self.sim.check_reply(text)
        turn = self.sim._finish(self._doctor_utterance, pending, text, "agent", violations)
        self._pending = None
        self._messages.append({"role": "user", "content": turn.observation})  # as ConsultationEnv grades it
        self._doctor_obs = turn.observation
        last = tuple(str(v) for v in violations)
        self._violations += [f"turn {self._doctor_turns}: {v}" for v in last]
        if violations:
            self.rewards[PATIENT] = -1.0
        infos = {a: self._base_info() for a in self.agents}
        infos[PATIENT]["last_violations"] = last
        if turn.terminated or turn.truncated:
            graded = self._grade()
            self.rewards[DOCTOR] = graded["score"]
            infos[DOCTOR].update(termination_reason=turn.reason, **graded)
            infos[PATIENT].update(termination_reason=turn.reason, violations=tuple(self._violations))
            self.terminations = dict.fromkeys(self.agents, bool(turn.terminated))
            self.truncations = dict.fromkeys(self.agents, bool(turn.truncated))
        self.infos = infos
        self.agent_selection = DOCTOR

    def render(self) -> str | None:
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode='ansi' to the env")
            return None
        if self._case is None:
            return ""
        lines = [f"case {self._case.id}: {self._case.title}"]
        for m in self._messages:
            who = "patient" if m["role"] == "user" else "doctor"
            lines.append(f"{who:>7}: {m['content']}")
        return "\n".join(lines)

    def close(self) -> None:
        pass
