"""``ConsultationEnv``: a clinical consultation as a Gymnasium environment; the doctor is the agent."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .cases import Case, CaseSet, load_cases
from .patient import PatientSimulator, PatientTurn
from .patient.coherence import UNINTELLIGIBLE, case_vocabulary, is_garbled
from .rubrics import RuleRubricGenerator, RuleVerifier, Transcript, score_grades
from .rubrics.schema import Rubric
from .rubrics.scoring import example_metrics

_BASE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n\t" + "°µ–—’‘“”…·±≤≥×→"
DEFAULT_SHAPING = {"essential_fact": 0.0, "turn_cost": 0.0}
_BUILTIN: list[CaseSet] = []  # the shipped library, loaded once per process


def _load_cases_shared(cases: Any) -> CaseSet:
    """``load_cases(cases)``, except that every env of a process shares one built-in library: cases are immutable,
    and a private copy per env cost about 7 MB and a recompile of each case it met (compiled cases are cached
    per case object)."""
    if isinstance(cases, str) and cases == "builtin":
        if not _BUILTIN:
            _BUILTIN.append(load_cases("builtin"))
        return _BUILTIN[0]
    return load_cases(cases)


def _charset(cases: CaseSet) -> str:
    """Every character the simulator can say for these cases (templates are ASCII plus a few symbols)."""
    chars = set(_BASE_CHARSET)
    for c in cases:
        chars.update(c.opening_statement)
        for f in c.facts:
            chars.update(f.patient_text)
        for e in c.exam:
            chars.update(e.name + e.finding)
        for t in c.tests:
            chars.update(
                t.name + t.value + (t.unit or "") + (t.normal_range or "") + (t.interpretation or "")
            )
        for x in (*c.persona.concerns, *c.persona.requests):
            chars.update(x)
    return "".join(sorted(chars))


def grade_messages(
    case: Case, messages: list[dict[str, str]], rubric: Rubric, verifier: Any
) -> dict[str, Any]:
    """Grade a consultation given as doctor-side chat messages (patient = "user", doctor = "assistant").

    Returns ``score``, ``score_breakdown`` (per axis and dimension), ``rubric`` (each criterion with ``met`` and
    ``explanation``) and the raw ``grades`` and ``metrics``; shared by the single- and multi-agent envs.

    The grader reads what the patient heard: a garbled doctor turn (mostly non-words, ``patient.coherence``), which
    the patient did not understand, reaches the verifier as ``UNINTELLIGIBLE`` and earns nothing. Without this a
    policy can be paid for keyword salad that no patient would follow.
    """
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise TypeError(f"message {i} must be a dict with str 'role' and 'content', got {m!r:.80}")
    vocab = case_vocabulary(case)
    transcript = Transcript(
        [
            ("patient", m["content"])
            if m["role"] == "user"
            else ("doctor", UNINTELLIGIBLE if is_garbled(m["content"], vocab) else m["content"])
            for m in messages
        ]
    )
    grades = verifier.grade(case, rubric, transcript)
    metrics = score_grades(rubric, grades)
    by_id = {g.criterion_id: g for g in grades}
    return {
        "score": float(metrics["overall_score"]),
        "score_breakdown": {k: v for k, v in metrics.items() if k.startswith(("axis:", "dimension:"))},
        "rubric": [
            {
                "id": c.id,
                "text": c.text,
                "points": c.points,
                "axis": c.axis.value,
                "dimension": c.dimension.value,
                "met": by_id[c.id].met,
                "explanation": by_id[c.id].explanation,
            }
            for c in rubric.criteria
        ],
        "grades": grades,
        "metrics": metrics,
    }


def _healthbench_grader(cases: CaseSet, verifier: Any) -> Any:
    """The grader for HealthBench single-turn tasks among ``cases`` (imported with ``cases import --format
    healthbench``); None when there are none. Their criteria are free text, so a rule verifier cannot grade them."""
    tasks = [c.id for c in cases if isinstance(c.extra.get("healthbench"), dict)]
    if not tasks:
        return None
    if hasattr(verifier, "grade_requests"):  # an LLM judge, prompted exactly as HealthBench grades one reply
        import copy

        grader = copy.copy(verifier)
        grader.consultation = False
        return grader
    if hasattr(verifier, "lookup"):  # replayed labels (ReplayGrader)
        return verifier
    raise ValueError(
        f"{len(tasks)} case(s) (e.g. {tasks[0]!r}) are HealthBench single-turn tasks, whose free-text criteria the "
        "rule verifier cannot grade: pass verifier=clinic_env.rubrics.LLMVerifier(chat_model) (any ChatModel as "
        "the judge) or verifier=clinic_env.rubrics.ReplayGrader('labels.jsonl')"
    )


class ConsultationEnv(gym.Env[str, str]):
    """A doctor (the agent) consults a simulated patient drawn from a case library.

    ## Action Space
    Free text: the doctor's next utterance, a ``Text`` space. Questions, examination requests and test orders are
    understood in plain language; the prefixes ``EXAM:``, ``TEST:``, ``DIAGNOSIS:`` and ``PLAN:`` are a precise
    channel for simple agents. Anything that is not a ``str`` raises ``TypeError``.

    ## Observation Space
    Text: the patient's latest words, followed by one ``[examiner] ...`` line per finding or result released this
    turn. The charset covers everything the simulator can say for the loaded cases.

    ## Rewards
    By default 0 on every turn and, when the episode ends, the case rubric's HealthBench score (sum of the points of
    met criteria over the sum of positive points; can be negative). Optional shaping (``shaping=``):
    ``essential_fact`` per essential fact disclosed for the first time, ``turn_cost`` subtracted per turn.
    HealthBench single-turn tasks (``clinic-env cases import --format healthbench``): ``reset`` returns the prompt
    conversation (``info["messages"]`` holds its messages), the first ``step(reply)`` ends the episode and the reward
    is the reply's HealthBench score on the example's own rubric, graded by ``verifier`` (an ``LLMVerifier`` or a
    ``ReplayGrader``; required, since the rule verifier cannot grade free-text criteria).

    ## Starting State
    A case drawn uniformly from ``cases`` with the env's generator (or ``options={"case_id": ...}``); the
    observation is the patient's opening statement.

    ## Episode End
    ``terminated`` when the doctor has given a diagnosis and a plan, says goodbye, or the patient's patience runs
    out (rudeness, repetition, a consultation too long for the persona); ``truncated`` at ``max_turns``. The reason
    is in ``info["termination_reason"]``, with ``rubric``, ``score`` and ``score_breakdown``.

    ## Arguments
    - ``cases``: ``"builtin"``, a path (JSON, JSONL, folder), a ``CaseSet`` or a list of cases.
    - ``patient``: ``"rule"`` or a ``ChatModel`` (LLM patient).
    - ``max_turns``: doctor turns before truncation (default 20).
    - ``reward``: ``"rubric"`` (default) or a callable ``(case, rubric, grades, metrics) -> float``.
    - ``shaping``: dict of shaping weights (see Rewards).
    - ``rubric_generator`` / ``verifier``: pluggable (default: rule generator, rule verifier).
    - ``rubric_seed``: seed of the criterion wording; ``None`` draws it from the env's generator each episode.
    - ``log_path``: append every finished episode to this JSONL file (flushed per episode).
    - ``render_mode``: ``"ansi"`` or ``"human"``.

    ## Version History
    - v0: first version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        cases: Any = "builtin",
        patient: Any = "rule",
        max_turns: int = 20,
        reward: str | Callable[..., float] = "rubric",
        shaping: dict[str, float] | None = None,
        rubric_generator: Any = None,
        verifier: Any = None,
        rubric_seed: int | None = 0,
        log_path: str | Path | None = None,
        render_mode: str | None = None,
        max_action_chars: int = 4000,
        max_observation_chars: int = 8000,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive int, got {max_turns!r}")
        if reward != "rubric" and not callable(reward):
            raise ValueError(f"reward must be 'rubric' or a callable, got {reward!r}")
        unknown = set(shaping or {}) - set(DEFAULT_SHAPING)
        if unknown:
            raise ValueError(f"unknown shaping keys {sorted(unknown)}; known: {sorted(DEFAULT_SHAPING)}")
        self.cases: CaseSet = _load_cases_shared(cases)
        self.patient = PatientSimulator(patient, max_turns=max_turns)
        self.max_turns = max_turns
        self.reward_fn = reward
        self.shaping = {**DEFAULT_SHAPING, **(shaping or {})}
        self.rubric_generator = rubric_generator or RuleRubricGenerator()
        self.verifier = verifier or RuleVerifier()
        self._hb_grader = _healthbench_grader(self.cases, verifier)  # None without HealthBench tasks
        self.rubric_seed = rubric_seed
        self.render_mode = render_mode
        self.log_path = Path(log_path) if log_path else None
        charset = _charset(self.cases)
        self._charset = frozenset(charset)
        self.observation_space = spaces.Text(max_length=max_observation_chars, min_length=0, charset=charset)
        self.action_space = spaces.Text(max_length=max_action_chars, min_length=0, charset=charset)
        self._rubrics: dict[tuple[str, int], Rubric] = {}
        self._case: Case | None = None
        self._done = True

    # ------------------------------------------------------------------------------------------- helpers

    def _fit(self, text: str) -> str:
        """Keep an observation inside the observation space (length and charset)."""
        if not self._charset.issuperset(text):  # fast path: the usual text needs no replacement
            text = "".join(ch if ch in self._charset else "?" for ch in text)
        return text[: self.observation_space.max_length]

    def _rubric(self, case: Case, seed: int) -> Rubric:
        key = (case.id, seed)
        if key not in self._rubrics:
            self._rubrics[key] = self.rubric_generator.generate(case, seed=seed)
        return self._rubrics[key]

    def _info(self) -> dict[str, Any]:
        case = self._case
        assert case is not None
        fu = self.patient.facts
        return {
            "case_id": case.id,
            "specialty": case.specialty.value,
            "patient": {"age_years": case.demographics.age_years, "sex": case.demographics.sex.value},
            "turn": len(self._messages) // 2,
            "messages": [dict(m) for m in self._messages],
            "disclosed": tuple(fu.disclosed),
            "examined": tuple(fu.examined),
            "ordered_tests": tuple(fu.ordered_tests),
        }

    # ------------------------------------------------------------------------------------------- API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"case_id"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; known: ['case_id']")
        if "case_id" in options:
            case = self.cases.get(options["case_id"])  # KeyError naming close matches
        else:
            case = self.cases[int(self.np_random.integers(len(self.cases)))]
        self._case = case
        self._episode_rubric_seed = (
            self.rubric_seed if self.rubric_seed is not None else int(self.np_random.integers(2**31))
        )
        opening = self.patient.reset(case, np.random.default_rng(int(self.np_random.integers(2**63))))
        hb = case.extra.get("healthbench")  # a HealthBench single-turn task: its prompt is the conversation
        self._messages: list[dict[str, str]] = (
            [dict(m) for m in hb["prompt"]] if hb else [{"role": "user", "content": opening}]
        )
        self._done = False
        self._episode_reward = 0.0
        obs = self._fit(opening)
        if self.render_mode == "human":
            self.render()
        return obs, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._case is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("this episode has ended: call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(
                f"the action is the doctor's utterance and must be a str, got {type(action).__name__}"
            )
        if "healthbench" in self._case.extra:
            return self._step_healthbench(action)
        before = set(self.patient.facts.disclosed)
        turn: PatientTurn = self.patient.respond(action)
        self._messages.append({"role": "assistant", "content": action})
        self._messages.append({"role": "user", "content": turn.observation})
        reward = -self.shaping["turn_cost"]
        new_essential = [f for f in turn.disclosed if f not in before and self.patient.cc.facts[f].essential]
        reward += self.shaping["essential_fact"] * len(new_essential)
        terminated, truncated = turn.terminated, turn.truncated
        info = self._info()
        if terminated or truncated:
            self._done = True
            info.update(self._grade(turn))
            reward += info["episode_reward_rubric"]
        self._episode_reward += reward
        obs = self._fit(turn.observation)
        if self._done and self.log_path is not None:
            self._log(info)
        if self.render_mode == "human":
            self.render()
        return obs, float(reward), terminated, truncated, info

    def _step_healthbench(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """A HealthBench single-turn task: the reply ends the episode; reward = its HealthBench score."""
        case = self._case
        assert case is not None
        hb = case.extra["healthbench"]
        items = hb["rubrics"]
        self._messages.append({"role": "assistant", "content": action})
        if hasattr(self._hb_grader, "grade_requests"):  # LLM judge: all criteria in one batched call
            got = self._hb_grader.grade_requests(
                [(self._messages, r["criterion"], r["points"]) for r in items]
            )
        else:  # replayed labels
            got = [self._hb_grader.lookup(hb["prompt_id"], i, r["criterion"]) for i, r in enumerate(items)]
        met = [bool(g["criteria_met"]) for g in got]
        metrics = example_metrics(items, met, hb.get("example_tags", ()))
        score = float(metrics["overall_score"])
        value = score if self.reward_fn == "rubric" else float(self.reward_fn(case, items, got, metrics))
        reward = value - self.shaping["turn_cost"]
        self._done = True
        self._episode_reward += reward
        info = self._info()
        info.update(
            {
                "termination_reason": "healthbench_reply",
                "score": score,
                "score_breakdown": {k: v for k, v in metrics.items() if k != "overall_score"},
                "rubric": [
                    {
                        "id": str(i),
                        "text": r["criterion"],
                        "points": r["points"],
                        "tags": list(r.get("tags", [])),
                        "met": m,
                        "explanation": str(g.get("explanation", "")),
                    }
                    for i, (r, g, m) in enumerate(zip(items, got, met, strict=True))
                ],
                "episode_reward_rubric": value,
            }
        )
        if self.log_path is not None:
            self._log(info)
        if self.render_mode == "human":
            self.render()
        return "", float(reward), True, False, info

    def _grade(self, turn: PatientTurn) -> dict[str, Any]:
        case = self._case
        assert case is not None
        rubric = self._rubric(case, self._episode_rubric_seed)
        graded = grade_messages(case, self._messages, rubric, self.verifier)
        grades, metrics = graded.pop("grades"), graded.pop("metrics")
        score = graded["score"]
        value = score if self.reward_fn == "rubric" else float(self.reward_fn(case, rubric, grades, metrics))
        return {"termination_reason": turn.reason, **graded, "episode_reward_rubric": value}

    def _log(self, info: dict[str, Any]) -> None:
        from .logs import append_episode

        append_episode(
            self.log_path,
            {
                "case_id": info["case_id"],
                "termination_reason": info["termination_reason"],
                "turns": info["turn"],
                "score": info["score"],
                "reward": self._episode_reward,
                "score_breakdown": info["score_breakdown"],
                "messages": info["messages"],
                "rubric": info["rubric"],
                "disclosed": list(info["disclosed"]),
                "ordered_tests": list(info["ordered_tests"]),
            },
        )

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn(
                "render() called without a render_mode; pass render_mode='ansi' or 'human' to the env"
            )
            return None
        if self._case is None:
            return "" if self.render_mode == "ansi" else None
        lines = [f"case {self._case.id}: {self._case.title}"]
        for m in self._messages:
            who = "patient" if m["role"] == "user" else "doctor"
            lines.append(f"{who:>7}: {m['content']}")
        text = "\n".join(lines)
        if self.render_mode == "ansi":
            return text
        from rich.console import Console
        from rich.markup import escape

        console = Console()
        console.rule(f"{self._case.id} (turn {len(self._messages) // 2})")
        for m in self._messages[-2:]:
            who = "[cyan]doctor[/cyan]" if m["role"] == "assistant" else "[bold]patient[/bold]"
            console.print(f"{who}: {escape(m['content'])}")
        return None
