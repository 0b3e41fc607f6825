"""The patient simulator: environment dynamics composed of the Fact Unit, the Affective Unit, the Termination
Gate and the examiner, with a rule backend (offline, deterministic under a seed) and an LLM backend.

Every turn goes through the same pipeline; only the wording step differs between backends:

1. understand the doctor's turn (:mod:`.understanding`);
2. the Fact Unit releases exactly what was asked; the examiner answers exam requests and test orders;
3. the Termination Gate decides whether the consultation ends;
4. the wording: templates (rule) or an LLM that sees the persona and only the released facts, never the diagnosis;
   every LLM reply is checked by the Fact Unit, retried once, then replaced by the template reply (both counted);
5. a :class:`PatientTurn` records what happened.

``respond_batch`` runs step 4 for many simulators with one ``ChatModel.generate`` call, so a vector env with an LLM
patient makes one call per step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clinic_env.cases.schema import Case, ExamSystem

from . import examiner
from .affective import AffectiveRenderer, Axes
from .coherence import case_vocabulary, is_garbled
from .fact_unit import FactUnit, Violation
from .termination import TerminationGate
from .text import clean, stem, words
from .understanding import UNSURE_CONCEPTS, CompiledCase, Intents, compile_case

if TYPE_CHECKING:
    from clinic_env.llm import ChatModel

MAX_UTTERANCE_CHARS = 20_000  # longer turns are cut before parsing; parsing is linear, this bounds latency


@dataclass(frozen=True)
class PatientTurn:
    """One patient turn: what was said, what was released, and whether the consultation ended."""

    text: str
    examiner: tuple[str, ...] = ()
    disclosed: tuple[str, ...] = ()  # facts disclosed for the first time this turn
    asked: tuple[str, ...] = ()  # facts the doctor's turn asked for
    exams: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    catalog_tests: tuple[str, ...] = ()
    normal_systems: tuple[str, ...] = ()
    terminated: bool = False
    truncated: bool = False
    reason: str | None = None
    backend: str = "rule"  # "rule", "llm", "llm_retry", "llm_fallback"
    violations: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    intents: Intents | None = field(default=None, compare=False, repr=False)

    @property
    def observation(self) -> str:
        """The patient's words followed by the examiner's report, as the doctor sees them."""
        lines = [self.text] + [f"[examiner] {x}" for x in self.examiner]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "intents"}


@dataclass
class _Pending:
    """A turn between understanding and wording."""

    intents: Intents
    new: tuple[str, ...]
    again: tuple[str, ...]
    exam_lines: tuple[str, ...]
    decision: Any
    template: Any  # Rendered
    render_kwargs: dict[str, Any]
    release_now: tuple[str, ...]
    utterance: str


class PatientSimulator:
    """A simulated patient for one consultation at a time.

    ``backend`` is ``"rule"`` or any :class:`~clinic_env.llm.ChatModel`. ``semantic`` is an optional matcher
    (``clinic_env.patient.semantic.SemanticMatcher``) consulted for history sentences the lexicon misses.
    """

    def __init__(
        self,
        backend: str | ChatModel = "rule",
        *,
        max_turns: int = 30,
        max_retries: int = 1,
        llm_max_tokens: int = 160,
        llm_temperature: float = 0.7,
        semantic: Any = None,
        history_turns: int = 8,
    ):
        if isinstance(backend, str):
            if backend != "rule":
                raise ValueError(f"backend must be 'rule' or a ChatModel, got {backend!r}")
            self.llm = None
        else:
            if not hasattr(backend, "generate"):
                raise TypeError(
                    f"backend must be 'rule' or a ChatModel with .generate, got {type(backend).__name__}"
                )
            self.llm = backend
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = max_turns
        self.max_retries = max_retries
        self.llm_max_tokens = llm_max_tokens
        self.llm_temperature = llm_temperature
        self.semantic = semantic
        self.history_turns = history_turns
        self.stats: Counter[str] = Counter()
        self._case: Case | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    @property
    def backend_name(self) -> str:
        return "rule" if self.llm is None else f"llm:{getattr(self.llm, 'name', type(self.llm).__name__)}"

    @property
    def case(self) -> Case:
        if self._case is None:
            raise RuntimeError("call reset(case) before respond()")
        return self._case

    def reset(self, case: Case, rng: np.random.Generator | int | None = None) -> str:
        """Start a consultation; returns the opening statement."""
        if not isinstance(case, Case):
            raise TypeError(f"reset() needs a Case, got {type(case).__name__}")
        if rng is None or isinstance(rng, (int, np.integer)):
            rng = np.random.default_rng(rng)
        self._case = case
        self.cc: CompiledCase = compile_case(case)
        self.rng = rng
        self.facts = FactUnit(self.cc)
        self.affect = AffectiveRenderer(case.persona, rng, allow=lambda text: not self.check_reply(text))
        self.gate = TerminationGate(case.persona, self.max_turns)
        self.transcript: list[dict[str, str]] = [{"role": "patient", "content": case.opening_statement}]
        self.doctor_words: set[str] = set()
        self.done = False
        self.turns: list[PatientTurn] = []
        self._doctor_turns: list[str] = []
        return case.opening_statement

    @property
    def disclosed(self) -> tuple[str, ...]:
        return tuple(self.facts.disclosed)

    # ------------------------------------------------------------------------------------------ one turn

    def respond(self, utterance: str) -> PatientTurn:
        """The patient's reply to one doctor turn."""
        return respond_batch([self], [utterance])[0]

    def _prepare(self, utterance: str) -> _Pending:
        if self._case is None:
            raise RuntimeError("call reset(case) before respond()")
        if self.done:
            raise RuntimeError("this consultation has ended; call reset() to start a new one")
        if not isinstance(utterance, str):
            raise TypeError(f"the doctor's utterance must be a str, got {type(utterance).__name__}")
        utterance = clean(utterance[:MAX_UTTERANCE_CHARS])
        # A garbled turn (mostly non-words, see coherence.py) is not understood at all: nothing is released,
        # examined or ordered, and it costs the patient's patience like a repeated question.
        garbled = is_garbled(utterance, case_vocabulary(self._case))
        intents = self.cc.parse("" if garbled else utterance)
        if self.semantic is not None and not garbled and not intents.requests_examiner:
            intents = self.semantic.augment(self.cc, utterance, intents)
        utterance_words = words(utterance)
        if not garbled:
            self.doctor_words.update(utterance_words)
        ordered_before = bool(self.facts.ordered_tests)
        new, again = self.facts.release(intents)
        exam_lines = tuple(
            [examiner.exam_line(self.cc, e) for e in intents.exams]
            + [examiner.normal_exam_line(s) for s in intents.normal_systems]
            + [examiner.test_line(self.cc, t) for t in intents.tests]
            + [examiner.catalog_line(n) for n in intents.catalog_tests]
        )
        decision = self.gate.update(
            intents,
            " " + " ".join([stem(w) for w in utterance_words]) + " ",  # normalize(utterance), one pass fewer
            only_repeats=bool(again)
            and not new
            and not (
                intents.missing_concepts or intents.requests_examiner or intents.diagnosis or intents.plan
            ),
            garbled=garbled,
        )
        missing_deny = sum(1 for k in intents.missing_concepts if k not in UNSURE_CONCEPTS)
        missing_unsure = len(intents.missing_concepts) - missing_deny
        render_kwargs = dict(
            facts=[(self.cc.facts[f].patient_text, self.cc.facts[f].sensitive, False) for f in new]
            + [(self.cc.facts[f].patient_text, False, True) for f in again],
            denials=missing_deny,
            unsure=missing_unsure,
            greeting=intents.greeting,
            empathy=intents.empathy,
            rude=intents.rude,
            consent=intents.requests_examiner,
            no_tests_yet=intents.asks_results and not ordered_before and not intents.tests,
            asks_diagnosis=intents.asks_diagnosis and intents.diagnosis is None,
            open_question=intents.open_question,
            diagnosis_given=intents.diagnosis is not None,
            plan_given=intents.plan is not None,
            jargon=intents.jargon,
            turn=self.gate.turns,
            ending=decision.reason if decision.terminated else None,
        )
        template = self.affect.render(**render_kwargs)
        return _Pending(
            intents, new, again, exam_lines, decision, template, render_kwargs, new + again, utterance
        )

    def _finish(
        self, utterance: str, pending: _Pending, text: str, backend: str, violations: list[Violation]
    ) -> PatientTurn:
        d = pending.decision
        i = pending.intents
        turn = PatientTurn(
            text=text,
            examiner=pending.exam_lines,
            disclosed=pending.new,
            asked=i.facts,
            exams=i.exams,
            tests=i.tests,
            catalog_tests=i.catalog_tests,
            normal_systems=tuple(s.value if isinstance(s, ExamSystem) else s for s in i.normal_systems),
            terminated=d.terminated,
            truncated=d.truncated,
            reason=d.reason,
            backend=backend,
            violations=tuple(str(v) for v in violations),
            markers=pending.template.markers,
            intents=i,
        )
        self._doctor_turns.append(pending.utterance)
        self.transcript.append({"role": "doctor", "content": utterance})
        self.transcript.append({"role": "patient", "content": turn.observation})
        self.turns.append(turn)
        self.stats["turns"] += 1
        self.stats[f"backend_{backend}"] += 1
        if violations:
            self.stats["violations_final"] += 1
        self.done = d.terminated or d.truncated
        return turn

    # ------------------------------------------------------------------------------------------ LLM wording

    def llm_messages(self, pending: _Pending) -> list[dict[str, str]]:
        """The prompt: persona and only the facts released so far plus this turn's; never the diagnosis."""
        case, p = self.case, self.case.persona
        axes = Axes.from_mbti(p.mbti)
        speaker = (
            "the patient"
            if p.speaker.value == "patient"
            else f"{p.speaker_name}, the patient's {p.speaker.value}"
        )
        traits = [
            f"talkative: {'yes' if axes.talkative else 'no, answers briefly and accepts advice passively'}",
            f"{'questions the reasons for decisions' if axes.challenges else 'sensitive to how kindly the doctor speaks'}",
            f"health literacy: {p.health_literacy.value} (use only words a person with this literacy would use)",
            f"emotional state: {p.emotional_state.value}",
            f"verbosity: {p.verbosity.value}",
        ]
        if p.cost_concerns:
            traits.append("worried about the cost of tests and treatment")
        if p.prefers_evidence:
            traits.append("wants evidence for recommendations")
        if p.cultural_notes:
            traits.append(p.cultural_notes)
        known = [self.cc.facts[f].patient_text for f in self.facts.disclosed if f not in pending.release_now]
        now = [self.cc.facts[f].patient_text for f in pending.release_now]
        system = (
            f"You are role-playing {speaker} in a medical consultation. Name: {p.name}. "
            f"Age {case.demographics.age_years:g}, {case.demographics.sex.value}. "
            f"Occupation: {p.occupation or 'not stated'}. Personality: " + "; ".join(traits) + ".\n"
            "Rules: speak in the first person, 1-3 short sentences, in your own voice. Use ONLY the facts below. "
            "If the doctor asks about anything not listed, say you have not noticed it or are not sure. "
            "Never guess or name a diagnosis, never describe test or examination results, never invent symptoms.\n"
            "Things you have already told the doctor:\n"
            + ("\n".join(f"- {t}" for t in known) or "- (only your opening complaint)")
            + "\nWhat to tell the doctor now (answer the question with these):\n"
            + ("\n".join(f"- {t}" for t in now) or "- nothing new: answer briefly without adding facts")
            + "\nA good reply in your voice, for reference (you may reword it): "
            + pending.template.text
        )
        msgs = [{"role": "system", "content": system}]
        # The patient's own words only: examiner reports are for the doctor, not the patient's prompt.
        history = [{"role": "assistant", "content": case.opening_statement}]
        for t, d in zip(self.turns, self._doctor_turns, strict=True):
            history += [{"role": "user", "content": d}, {"role": "assistant", "content": t.text}]
        history.append({"role": "user", "content": pending.utterance})
        msgs += history[-(2 * self.history_turns + 1) :]
        return msgs

    def check_reply(self, text: str) -> list[Violation]:
        return self.facts.check(
            text, literacy=self.case.persona.health_literacy, doctor_words=self.doctor_words
        )


def respond_batch(sims: Sequence[PatientSimulator], utterances: Sequence[str]) -> list[PatientTurn]:
    """Advance many simulators one turn each; LLM-backed ones share one ``generate`` call per model per round."""
    if len(sims) != len(utterances):
        raise ValueError(f"got {len(sims)} simulators but {len(utterances)} utterances")
    pendings = [s._prepare(u) for s, u in zip(sims, utterances, strict=True)]
    texts: list[str | None] = [None] * len(sims)
    backends = ["rule"] * len(sims)
    violations: list[list[Violation]] = [[] for _ in sims]
    llm_idx = [i for i, s in enumerate(sims) if s.llm is not None]
    for i, s in enumerate(sims):
        if s.llm is None:
            texts[i] = pendings[i].template.text
            violations[i] = s.check_reply(texts[i])
    todo = llm_idx
    attempt = 0
    while todo:
        groups: dict[int, list[int]] = {}
        for i in todo:
            groups.setdefault(id(sims[i].llm), []).append(i)
        failed: list[int] = []
        for idx in groups.values():
            model = sims[idx[0]].llm
            seed = int(sims[idx[0]].rng.integers(2**31 - 1))
            replies = model.generate(
                [sims[i].llm_messages(pendings[i]) for i in idx],
                max_tokens=sims[idx[0]].llm_max_tokens,
                temperature=sims[idx[0]].llm_temperature,
                seed=seed,
            )
            for i, reply in zip(idx, replies, strict=True):
                sims[i].stats["llm_calls"] += 1
                v = sims[i].check_reply(reply.strip())
                if reply.strip() and not v:
                    texts[i] = reply.strip()
                    backends[i] = "llm" if attempt == 0 else "llm_retry"
                else:
                    sims[i].stats["llm_check_failed"] += 1
                    failed.append(i)
        attempt += 1
        todo = [i for i in failed if attempt <= sims[i].max_retries]
        for i in failed:
            if i not in todo:
                texts[i] = pendings[i].template.text
                backends[i] = "llm_fallback"
                sims[i].stats["llm_fallback"] += 1
                violations[i] = sims[i].check_reply(texts[i])
        for i in todo:
            sims[i].stats["llm_retries"] += 1
    return [
        s._finish(u, p, texts[i] or "", backends[i], violations[i])
        for i, (s, u, p) in enumerate(zip(sims, utterances, pendings, strict=True))
    ]
