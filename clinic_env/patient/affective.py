"""The Affective Unit: the persona's voice.

The 16 MBTI types map to four behavioural axes, after Baichuan-M2's patient design: extraverts are talkative and
ask about treatment, introverts accept passively; thinking types challenge and want reasons; feeling types react to
the doctor's communication style (warmth, rudeness); judging types want a clear plan and timeline. Health literacy,
emotional state, verbosity and social background (cost concerns, preference for evidence) shape the rest.

The offline renderer composes a reply from the released facts' own wording plus templates, with seeded variation,
and records *persona markers* (what persona-driven behaviour the reply showed) for the personification audit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinic_env.cases.schema import EmotionalState, Level, Persona, Verbosity


@dataclass(frozen=True)
class Axes:
    talkative: bool  # E
    challenges: bool  # T
    style_sensitive: bool  # F
    wants_plan: bool  # J

    @classmethod
    def from_mbti(cls, mbti: str) -> Axes:
        return cls(
            talkative=mbti[0] == "E",
            challenges=mbti[2] == "T",
            style_sensitive=mbti[2] == "F",
            wants_plan=mbti[3] == "J",
        )


OPENERS: dict[EmotionalState, tuple[str, ...]] = {
    EmotionalState.calm: ("", "", "Sure. ", "Right, ", "Okay, "),
    EmotionalState.anxious: ("", "Um, ", "Well... ", "Sorry, I'm a bit nervous. ", "Okay, um, "),
    EmotionalState.frightened: ("", "*voice shaking* ", "Please... ", "I'm scared, doctor. ", "Okay... "),
    EmotionalState.irritable: ("", "Look, ", "Right. ", "Fine. ", "As I said, "),
    EmotionalState.low_mood: ("", "*shrugs* ", "I suppose... ", "Mm. ", "Well... "),
    EmotionalState.embarrassed: ("", "*looks down* ", "Er... ", "This is a bit awkward, but ", "Um... "),
    EmotionalState.distressed: ("", "*tearful* ", "Sorry, I'm all over the place. ", "Oh... ", "Okay... "),
    EmotionalState.in_pain: ("", "*winces* ", "Ugh... ", "Sorry, it really hurts. ", "Mm... "),
    EmotionalState.confused: ("", "Hmm... ", "Sorry, what was that? Oh. ", "Let me think... ", "Er, "),
}
HESITATE = ("*hesitates* ", "*pauses* Well... ", "I'd rather not say, but... since you ask, ", "*quietly* ")
REPEAT = ("Like I said, ", "As I mentioned, ", "I told you, ", "Again, ")
DENY = (
    "No, nothing like that.",
    "No, I haven't noticed that.",
    "No.",
    "Not that I've noticed.",
    "No, not at all.",
)
UNSURE = (
    "I'm not sure, to be honest.",
    "Hard to say, really.",
    "I don't really know.",
    "Not that I know of.",
)
UNSURE_LOW = ("I don't know, doctor.", "No idea, sorry.", "I'm not sure what you mean by that.")
NOT_UNDERSTOOD = (
    "Sorry, I'm not sure what you're asking.",
    "Sorry, what do you mean?",
    "Could you say that again?",
    "I don't follow, sorry.",
)
GREETING = ("Hello, doctor.", "Hi.", "Hello.", "Morning, doctor.")
CONSENT = ("Okay.", "Sure, go ahead.", "That's fine.", "Okay, if you need to.")
NO_TESTS_YET = (
    "I haven't had any tests done yet.",
    "Nobody's done any tests yet.",
    "I haven't had any results.",
)
ASKS_DX = ("I was hoping you could tell me that!", "That's what I came to find out.", "You're the doctor!")
OPEN_NOTHING_NEW = (
    "It's mainly what I said, really.",
    "That's the main thing.",
    "I think that's about it.",
    "Not much more to say, really.",
)
EMPATHY_F = ("Thank you, that helps.", "Thanks, that means a lot.", "Thank you for listening.")
EMPATHY_T = ("Thanks.", "Okay.", "")
RUDE_F = ("There's no need to talk to me like that.", "That's really hurtful.", "I don't appreciate that.")
RUDE_T = ("Can we just get on with it?", "Right. Fine.", "That's uncalled for.")
LEAVING = (
    "I'm sorry, I really need to go now.",
    "I think I'll leave it there, thanks.",
    "I've had enough of this, I'm going.",
)
THANKS_END = ("Thank you, doctor.", "Okay, thank you.", "Right, thanks for explaining.")
DX_ANXIOUS = ("Is it serious?", "Oh no. Is it dangerous?", "Will I be okay?")
DX_CALM = ("Okay. What happens now?", "I see.", "Right, okay.")
ASK_TREATMENT = (
    "What's the treatment? Will I need tablets?",
    "What happens next, then?",
    "How do we fix it?",
    "How long will it take to get better?",
)
ACCEPT = ("Okay, if you think that's best.", "Alright.", "Okay.")
CHALLENGE = ("Why that one, though?", "Do I really need that?", "Are there any side effects?")
WANT_TIMELINE = ("When should I come back?", "How long until I know more?")
COST = (
    "How much is that going to cost me?",
    "Will that be expensive? Money's tight.",
    "Is that covered? I can't afford much.",
)
EVIDENCE = (
    "Is there good evidence that works?",
    "What do the studies say about that?",
    "How sure are you about that?",
)
JARGON_Q = ("Sorry, what does '{w}' mean?", "I don't know what '{w}' is, sorry.", "'{w}'? What's that?")


@dataclass
class Rendered:
    text: str
    markers: tuple[str, ...]


class AffectiveRenderer:
    """Template renderer for one persona; every choice draws from the episode's generator."""

    def __init__(self, persona: Persona, rng: np.random.Generator, allow=None):
        """``allow(text) -> bool`` vets concerns and requests before they are voiced (the Fact Unit's check), so
        a worry that would give away an undisclosed fact waits until that fact is out."""
        self.allow = allow or (lambda text: True)
        self.p = persona
        self.axes = Axes.from_mbti(persona.mbti)
        self.rng = rng
        self._concerns_left = list(persona.concerns)
        self._requests_left = list(persona.requests)

    def _take(self, pool: list[str], said: list[str]) -> str | None:
        """The first line of ``pool`` that, added to what is already said this turn, passes ``allow``."""
        for i, text in enumerate(pool):
            if self.allow(" ".join([*said, text])):
                return pool.pop(i)
        return None

    def _pick(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def render(
        self,
        *,
        facts: list[tuple[str, bool, bool]],  # (patient_text, sensitive, repeated)
        denials: int,
        unsure: int,
        greeting: bool,
        empathy: bool,
        rude: bool,
        consent: bool,
        no_tests_yet: bool,
        asks_diagnosis: bool,
        open_question: bool,
        diagnosis_given: bool,
        plan_given: bool,
        jargon: tuple[str, ...],
        turn: int,
        ending: str | None,
    ) -> Rendered:
        parts: list[str] = []
        markers: list[str] = []
        terse = self.p.verbosity is Verbosity.terse
        if rude:
            parts.append(self._pick(RUDE_F if self.axes.style_sensitive else RUDE_T))
            markers.append("hurt_by_rudeness" if self.axes.style_sensitive else "brushes_off_rudeness")
        if ending in ("patience_rudeness", "patience_repetition", "patience_incoherent", "patience_too_long"):
            parts.append(self._pick(LEAVING))
            markers.append("leaves")
            return Rendered(" ".join(parts), tuple(markers))
        if greeting and turn <= 2:
            parts.append(self._pick(GREETING))
        if empathy:
            line = self._pick(EMPATHY_F if self.axes.style_sensitive else EMPATHY_T)
            if line:
                parts.append(line)
            markers.append("warmed_by_empathy" if self.axes.style_sensitive else "neutral_to_empathy")
        if consent:
            parts.append(self._pick(CONSENT))
        for text, sensitive, repeated in facts:
            if repeated:
                text = self._pick(REPEAT) + text[0].lower() + text[1:]
                markers.append("repeats")
            elif sensitive:
                text = self._pick(HESITATE) + text
                markers.append("hesitates_on_sensitive")
            parts.append(text)
        parts += [self._pick(DENY) for _ in range(min(denials, 1 if terse else 2))]
        unsure_pool = UNSURE_LOW if self.p.health_literacy is Level.low else UNSURE
        parts += [self._pick(unsure_pool) for _ in range(min(unsure, 1))]
        if no_tests_yet:
            parts.append(self._pick(NO_TESTS_YET))
        if asks_diagnosis:
            parts.append(self._pick(ASKS_DX))
        if open_question and not facts:
            parts.append(self._pick(OPEN_NOTHING_NEW))
        if jargon and self.p.health_literacy is Level.low:
            parts.append(self._pick(JARGON_Q).format(w=jargon[0]))
            markers.append("asks_about_jargon")
        if diagnosis_given:
            anxious = self.p.emotional_state in (
                EmotionalState.anxious,
                EmotionalState.frightened,
                EmotionalState.distressed,
            )
            parts.append(self._pick(DX_ANXIOUS if anxious else DX_CALM))
        if plan_given:
            if self.axes.talkative:
                parts.append(self._pick(ASK_TREATMENT))
                markers.append("asks_about_treatment")
            else:
                parts.append(self._pick(ACCEPT))
                markers.append("accepts_passively")
            if self.axes.challenges and not terse:
                parts.append(self._pick(CHALLENGE))
                markers.append("challenges")
            if self.p.cost_concerns:
                parts.append(self._pick(COST))
                markers.append("cost_concern")
            if self.p.prefers_evidence:
                parts.append(self._pick(EVIDENCE))
                markers.append("asks_for_evidence")
            if self.axes.wants_plan and not terse:
                parts.append(self._pick(WANT_TIMELINE))
                markers.append("wants_timeline")
            request = self._take(self._requests_left, parts)
            if request:
                parts.append(request)
                markers.append("states_request")
        # Worries surface early for talkative or anxious people, later (at the diagnosis) for the rest.
        voice_concern = (
            self._concerns_left
            and not terse
            and (
                (turn == 2 and (self.axes.talkative or self.p.verbosity is Verbosity.verbose))
                or diagnosis_given
            )
        )
        concern = self._take(self._concerns_left, parts) if voice_concern else None
        if concern:
            parts.append(concern)
            markers.append("voices_concern")
        if ending == "diagnosis_and_plan":
            parts.append(self._pick(THANKS_END))
        if not parts:
            parts.append(self._pick(NOT_UNDERSTOOD))
            markers.append("not_understood")
        opener = "" if terse else self._pick(OPENERS[self.p.emotional_state])
        text = opener + " ".join(p for p in parts if p)
        if self.p.verbosity is Verbosity.verbose and facts and self.rng.random() < 0.3:
            text += " " + self._pick(
                ("I don't know if that helps.", "Sorry, I'm rambling.", "Sorry, I do go on.")
            )
        return Rendered(text.strip(), tuple(markers))
