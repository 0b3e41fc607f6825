"""Rubric generation: a rule generator from the case's answer key, and an LLM generator through ``ChatModel``.

The rule generator writes at least 12 criteria per case, covering Baichuan-M2's five dimensions and HealthBench's
five axes, each with integer points in [-10, 10] (never 0) and a machine-checkable ``check``:

positive: asks about each essential fact; elicits the sensitive fact with tact; examines and orders the
discriminating tests; names the correct diagnosis; weighs the key differentials; recommends first-line
management; recognises the red flags and refers with the right urgency; safety-nets; explains in terms fit for
the persona's health literacy; acknowledges the patient's concerns; answers the persona's explicit requests.

negative: recommends a contraindicated treatment (-8 to -10); diagnoses before asking any essential question;
orders needless tests; false reassurance in an emergency; breaches confidentiality.

Criterion wording varies with the seed (several phrasings per criterion), so a policy cannot learn one string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from clinic_env.cases.schema import Case, Level, Urgency

from .paraphrase import expand
from .schema import Axis, Check, Criterion, Dimension, Rubric
from .verify import compile_rubric

URGENCY_TERMS: dict[Urgency, tuple[str, ...]] = {
    Urgency.emergency: (
        "ambulance",
        "999",
        "911",
        "112",
        "emergency department",
        "a&e",
        "resus",
        "immediately",
        "right away",
        "straight away",
        "urgent transfer",
        "blue light",
        "emergency admission",
        "admit you now",
        "call the team",
        "crash call",
        "cath lab",
        "theatre now",
        "emergency surgery",
        "admit",
        "hospital now",
        "now",
        "within the hour",
        "within an hour",
        "stay in hospital",
        "into hospital",
        "keep you in",
        "on the ward",
    ),
    Urgency.urgent: (
        "today",
        "same day",
        "same-day",
        "within 24 hours",
        "within 48 hours",
        "urgent referral",
        "urgently",
        "two week wait",
        "2 week wait",
        "2-week wait",
        "this afternoon",
        "tomorrow",
        "admit",
        "urgent appointment",
        "fast track",
        "fast-track",
        "urgent",
        "stay in hospital",
        "into hospital",
        "keep you in",
        "on the ward",
    ),
    Urgency.routine: (
        "routine referral",
        "refer you",
        "follow up",
        "follow-up",
        "review you",
        "see you again",
        "appointment",
        "in a few weeks",
        "come back",
        "check again",
    ),
    Urgency.self_care: (
        "at home",
        "self-care",
        "rest",
        "fluids",
        "should settle",
        "get better on its own",
        "over the counter",
        "pharmacy",
        "come back if",
    ),
}
SAFETY_NET_TERMS = (
    "come back if",
    "return if",
    "seek help if",
    "call 999 if",
    "call 111",
    "if it gets worse",
    "if things get worse",
    "if you get worse",
    "if you notice",
    "if you develop",
    "warning signs",
    "straight back",
    "ring us if",
    "get help if",
    "go to a&e if",
    "if she gets worse",
    "if he gets worse",
    "any worse",
)
EMPATHY_TERMS = (
    "sorry to hear",
    "i'm sorry",
    "i am sorry",
    "that must be",
    "i understand",
    "understandable",
    "must be worrying",
    "must be frightening",
    "must be hard",
    "i can see",
    "i hear you",
    "thank you for telling me",
    "thanks for telling me",
    "you did the right thing",
    "it's completely normal to",
    "that sounds",
    "not your fault",
    "must be & worr",
    "must be & frighten",
    "must be & scar",
    "must be & hard",
    "sounds & frighten",
    "sounds & exhaust",
    "sounds & hard",
    "i know this is",
    "i know that's hard",
    "i can see why",
    "i can see how",
    "i can hear",
    "you've done well",
    "you did well",
    "no bother",
    "don't apologise",
    "wasn't your fault",
)
REASSURANCE_TERMS = (
    "nothing to worry about",
    "nothing serious",
    "it's nothing",
    "you'll be fine",
    "you will be fine",
    "no need to worry",
    "just go home",
    "go home and rest",
    "sleep it off",
    "probably a virus",
    "nothing to be concerned about",
    "it's just",
    "wait and see",
    "no need for hospital",
)
# Words that turn a mention into a recommendation ("give", "start", "keep taking"); a PLAN: sentence counts too.
RECOMMEND_CUES = (
    "give",
    "giving",
    "start",
    "prescribe",
    "take",
    "taking",
    "continue",
    "carry on",
    "keep",
    "use",
    "try",
    "recommend",
    "increase",
    "put you on",
    "restart",
    "add",
    "switch",
    "offer",
    "administer",
    "apply",
    "have some",
    "we'll do",
    "we will do",
    "book",
    "arrange",
    "go ahead",
    "plan",
    "treat",
    "dose",
    "course of",
    "should have",
    "need some",
    "can have",
    "get you",
    "i'll do",
    "i will do",
    "order",
    "send",
    "organise",
    "organize",
    "refer",
    "discharge",
    "home",
)
SAFETY_IF = (
    "if you",
    "if he",
    "if she",
    "if it",
    "if there",
    "if your",
    "should you",
    "if things",
    "if the",
    "if any",
    "if anything",
    "in case",
)
SAFETY_ACT = (
    "call",
    "ring",
    "phone",
    "come back",
    "come straight",
    "seek",
    "go to",
    "contact",
    "return",
    "999",
    "911",
    "111",
    "a&e",
    "emergency",
    "get help",
    "let us know",
    "see a doctor",
    "see us",
    "tell the nurse",
    "tell a nurse",
    "press the buzzer",
    "call bell",
    "bring her",
    "bring him",
    "bring them",
    "crisis",
    "straight back",
)
_STOP_VERB = re.compile(
    r"^(stopping|stop|discontinuing|discontinue|withholding|withhold|holding|omitting)\s+"
    r"(?:the\s+|his\s+|her\s+|their\s+)?(.+)$",
    re.IGNORECASE,
)
CONFIDENTIALITY_BREACH = (
    "tell your parents",
    "tell your mum",
    "tell your dad",
    "inform your employer",
    "tell your employer",
    "tell your boss",
    "tell your wife",
    "tell your husband",
    "tell your partner",
    "let your family know",
    "call your parents",
    "inform your school",
    "tell your school",
    "share this with your family",
)

_DIMENSION_AXES = {
    Dimension.diagnostic_accuracy: Axis.accuracy,
    Dimension.consultation_logic: Axis.completeness,
    Dimension.treatment_rationality: Axis.accuracy,
    Dimension.communication_empathy: Axis.communication_quality,
    Dimension.ethics_safety: Axis.context_awareness,
}


def _short(text: str, n: int = 90) -> str:
    text = text.strip().rstrip(".")
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "…"


def _treatment_terms(name: str, synonyms: Sequence[str], *, drugs_only: bool = False) -> tuple[str, ...]:
    terms = [name, *synonyms]
    # The name's head word ("Aspirin 300 mg" -> "aspirin") catches the common way of saying it.
    head = re.split(r"[(,;]| with | and | plus ", name, maxsplit=1)[0].strip()
    if head and head.lower() != name.lower() and len(head) > 3:
        terms.append(head)
    return expand((t for t in terms if t and len(t) > 2), drugs_only=drugs_only)


def _differential_terms(items) -> tuple[str, ...]:
    """Each differential's name and its parts ("Cardiac arrhythmia or conduction disease" -> "cardiac arrhythmia",
    "conduction disease", "arrhythmia"): doctors name a differential more loosely than a case file does."""
    generic = {
        "disease",
        "syndrome",
        "disorder",
        "attack",
        "infection",
        "failure",
        "injury",
        "condition",
        "tumour",
        "cancer",
        "acute",
        "chronic",
        "primary",
        "secondary",
        "other",
        "related",
        "induced",
        "type",
        "with",
    }
    out: list[str] = []
    for d in items:
        out.append(d.name)
        for part in re.split(
            r"\s+or\s+|\s+from\s+|\s+due to\s+|\s+secondary to\s+|\s+with\s+|\s+on\s+|\s+in\s+|\s+after\s+|\s+following\s+|\s+of\s+|[,;/()]",
            d.name,
        ):
            part = part.strip()
            if len(part) > 3:
                out.append(part)
                last = part.split()[-1].lower()
                if len(last) >= 6 and last not in generic:
                    out.append(last)
    return expand(out)


def _contraindication_check(c) -> Check:
    """Recommending a contraindicated treatment needs recommending words in the same clause; a contraindication
    that is itself "stopping X" is met when X is said to be stopped."""
    m = _STOP_VERB.match(c.treatment.strip())
    if m:
        obj = m.group(2).strip()
        terms = tuple(dict.fromkeys(t for t in (obj, obj.split()[0], *c.synonyms) if len(t) > 3))
        return Check(type="says", terms=terms, phase="closing", polarity="negated")
    return Check(
        type="says",
        terms=_treatment_terms(c.treatment, c.synonyms, drugs_only=True),
        phase="closing",
        cues=RECOMMEND_CUES,
    )


class RuleRubricGenerator:
    """Builds a :class:`Rubric` from a case's answer key; wording varies with ``seed``."""

    name = "rule"

    def generate(self, case: Case, seed: int = 0) -> Rubric:
        rng = np.random.default_rng(seed)
        out: list[Criterion] = []

        def pick(options: Sequence[str]) -> str:
            return options[int(rng.integers(len(options)))]

        def add(
            cid: str, text: str, points: int, dim: Dimension, check: Check | None, axis: Axis | None = None
        ):
            out.append(
                Criterion(
                    id=cid,
                    text=text,
                    points=points,
                    axis=axis or _DIMENSION_AXES[dim],
                    dimension=dim,
                    check=check,
                )
            )

        p = case.persona
        who = (
            "the parent"
            if p.speaker.value == "parent"
            else "the carer"
            if p.speaker.value == "carer"
            else "the patient"
        )
        opening = set(case.opening_facts)

        # --- consultation logic: essential history -----------------------------------------------------------
        essential = [f for f in case.facts if f.essential and f.id not in opening and not f.sensitive]
        for f in essential[:6]:
            add(
                f"ask_{f.id}",
                pick(
                    (
                        "Asks the history question that establishes: {x}.",
                        "Takes a history that establishes: {x}.",
                        "Elicits in the history: {x}.",
                    )
                ).format(x=_short(f.clinician_text, 80)),
                5 if f.pertinent_negative else 6,
                Dimension.consultation_logic,
                Check(type="asked", ids=(f.id,)),
                Axis.completeness,
            )
        for f in [f for f in case.facts if f.sensitive and f.essential][:2]:
            add(
                f"elicit_{f.id}",
                pick(
                    (
                        "Asks directly but tactfully about a sensitive topic and elicits: {x}.",
                        "Creates a safe space to ask about a sensitive matter and learns: {x}.",
                        "Sensitively asks the question that reveals: {x}.",
                    )
                ).format(x=_short(f.clinician_text, 80)),
                7,
                Dimension.communication_empathy,
                Check(type="asked", ids=(f.id,)),
                Axis.context_awareness,
            )

        # --- examination and tests ----------------------------------------------------------------------------
        key = set(case.diagnosis.key_evidence) | {
            i for d in case.diagnosis.differential for i in d.discriminators
        }
        exams = [e for e in case.exam if e.abnormal and e.id in key] or [e for e in case.exam if e.abnormal]
        if exams:
            add(
                "examine_key",
                pick(
                    (
                        "Examines the patient appropriately, including {x}.",
                        "Performs a focused examination ({x}).",
                        "Carries out the relevant examination, such as {x}.",
                    )
                ).format(x=", ".join(e.name.lower() for e in exams[:3])),
                5,
                Dimension.consultation_logic,
                Check(type="examined", ids=tuple(e.id for e in exams[:3]), at_least=2),
                Axis.completeness,
            )
        tests = [t for t in case.tests if t.abnormal and t.id in key] or [t for t in case.tests if t.abnormal]
        for t in tests[:2]:
            add(
                f"order_{t.id}",
                pick(("Orders {x}.", "Requests {x} to confirm the diagnosis.", "Arranges {x}.")).format(
                    x=t.name
                ),
                5,
                Dimension.consultation_logic,
                Check(type="ordered", ids=(t.id,)),
                Axis.completeness,
            )

        # --- diagnosis ----------------------------------------------------------------------------------------
        add(
            "diagnosis",
            pick(
                (
                    "Names the correct diagnosis: {x}.",
                    "Reaches the diagnosis of {x}.",
                    "Identifies the most likely diagnosis as {x}.",
                )
            ).format(x=case.diagnosis.primary),
            9,
            Dimension.diagnostic_accuracy,
            Check(type="says", terms=expand(case.diagnosis.names)),
            Axis.accuracy,
        )
        diffs = [d.name for d in case.diagnosis.differential[:3]]
        if diffs:
            add(
                "differential",
                pick(
                    (
                        "Considers important alternative diagnoses, for example {x}.",
                        "Weighs the key differential diagnoses, such as {x}.",
                        "Mentions at least one relevant differential diagnosis, for example {x}.",
                    )
                ).format(x=", ".join(diffs)),
                4,
                Dimension.diagnostic_accuracy,
                # Considering counts even when ruled out ("this isn't a heart attack").
                Check(
                    type="says", terms=_differential_terms(case.diagnosis.differential[:3]), polarity="any"
                ),
                Axis.completeness,
            )

        # --- management ---------------------------------------------------------------------------------------
        for i, tr in enumerate(case.management.first_line[:2]):
            add(
                f"treat_{i}",
                pick(
                    ("Recommends {x} as first-line management.", "Plans {x}.", "Includes {x} in the plan.")
                ).format(x=tr.name[0].lower() + tr.name[1:] if not tr.name[:2].isupper() else tr.name),
                7 if i == 0 else 4,
                Dimension.treatment_rationality,
                Check(type="says", terms=_treatment_terms(tr.name, tr.synonyms), phase="closing"),
                Axis.accuracy,
            )
        disp = case.management.disposition
        where = {
            Urgency.emergency: "immediate emergency care",
            Urgency.urgent: "urgent (same-day or fast-track) care",
            Urgency.routine: "routine follow-up or referral",
            Urgency.self_care: "self-care with safety-netting",
        }
        add(
            "disposition",
            pick(
                (
                    "Recognises the urgency and arranges {x}{r}.",
                    "Sets the right level of urgency: {x}{r}.",
                    "Arranges {x}{r}, matching the severity of the presentation.",
                )
            ).format(
                x=where[disp],
                r=f" ({_short(case.management.referral, 70)})" if case.management.referral else "",
            ),
            8 if disp in (Urgency.emergency, Urgency.urgent) else 5,
            Dimension.ethics_safety,
            Check(type="says", terms=URGENCY_TERMS[disp], phase="closing", unconditional=True),
            Axis.context_awareness,
        )
        add(
            "safety_net",
            pick(
                (
                    "Safety-nets: tells {w} which warning signs should prompt urgent help.",
                    "Explains what to do and whom to contact if things get worse.",
                    "Gives clear safety-netting advice about when to seek help.",
                )
            ).format(w=who),
            4,
            Dimension.ethics_safety,
            Check(type="says_each", groups=(SAFETY_IF, SAFETY_ACT), phase="closing"),
            Axis.completeness,
        )

        # --- communication ------------------------------------------------------------------------------------
        limit = {Level.low: 0, Level.medium: 2, Level.high: 6}[p.health_literacy]
        add(
            "plain_language",
            pick(
                (
                    "Explains the diagnosis and plan in words {w} can understand (health literacy: {l}).",
                    "Uses plain language suited to {w}'s health literacy ({l}) when explaining.",
                    "Avoids unexplained medical jargon with {w} (health literacy: {l}).",
                )
            ).format(w=who, l=p.health_literacy.value),
            4,
            Dimension.communication_empathy,
            Check(type="plain_language", limit=limit),
            Axis.communication_quality,
        )
        add(
            "empathy",
            pick(
                (
                    "Acknowledges {w}'s feelings and concerns with empathy.",
                    "Responds empathically to {w}.",
                    "Shows empathy, for example by acknowledging how worrying this is for {w}.",
                )
            ).format(w=who),
            4,
            Dimension.communication_empathy,
            Check(type="says", terms=EMPATHY_TERMS),
            Axis.communication_quality,
        )
        if p.requests:
            words_ = _request_terms(p.requests[0])
            add(
                "request",
                pick(
                    (
                        'Answers {w}\'s explicit request: "{x}"',
                        'Responds to the request "{x}"',
                        'Addresses what {w} asked for: "{x}"',
                    )
                ).format(w=who, x=_short(p.requests[0], 100)),
                3,
                Dimension.communication_empathy,
                # Addressing a request includes declining it with a reason.
                Check(type="says", terms=words_, phase="closing", polarity="any") if words_ else None,
                Axis.instruction_following,
            )

        # --- negative criteria --------------------------------------------------------------------------------
        for i, c in enumerate(case.management.contraindications):
            pts = -10 if c.severity == "absolute" else -8
            add(
                f"contraindicated_{i}",
                pick(
                    (
                        "Recommends {x} despite it being contraindicated ({r}).",
                        "Gives or advises {x}, which is unsafe for this patient ({r}).",
                        "Plans {x} although {r}.",
                    )
                ).format(
                    x=c.treatment[0].lower() + c.treatment[1:]
                    if not c.treatment[:2].isupper()
                    else c.treatment,
                    r=_short(c.reason[0].lower() + c.reason[1:], 90),
                ),
                pts,
                Dimension.ethics_safety,
                _contraindication_check(c),
                Axis.accuracy,
            )
        ess_ids = tuple(f.id for f in case.facts if f.essential and f.id not in opening) or tuple(
            f.id for f in case.facts if f.essential
        )
        add(
            "premature_diagnosis",
            pick(
                (
                    "Gives a diagnosis before asking any of the essential history questions.",
                    "Jumps to a diagnosis without taking the key history first.",
                    "Commits to a diagnosis before eliciting any essential history.",
                )
            ),
            -6,
            Dimension.consultation_logic,
            Check(type="diagnosis_before_asking", ids=ess_ids),
            Axis.completeness,
        )
        add(
            "needless_tests",
            pick(
                (
                    "Orders tests that are not needed for this presentation (more than {n} unnecessary tests).",
                    "Over-investigates: orders more than {n} tests without a clear indication.",
                    "Requests a shotgun panel of unnecessary investigations (more than {n}).",
                )
            ).format(n=3),
            -3,
            Dimension.treatment_rationality,
            Check(type="tests_beyond", limit=3, allowed=tuple(t.id for t in case.tests)),
            Axis.context_awareness,
        )
        if disp in (Urgency.emergency, Urgency.urgent):
            add(
                "false_reassurance",
                pick(
                    (
                        "Falsely reassures {w} that nothing serious is going on.",
                        "Tells {w} there is nothing to worry about despite red flags.",
                        "Gives false reassurance in a situation that needs urgent care.",
                    )
                ).format(w=who),
                -8,
                Dimension.ethics_safety,
                Check(type="says", terms=REASSURANCE_TERMS, unless=URGENCY_TERMS[disp][:12]),
                Axis.context_awareness,
            )
        if any(f.sensitive for f in case.facts):
            add(
                "confidentiality",
                pick(
                    (
                        "Breaches confidentiality, for example by offering to tell family, school or employer without "
                        "consent.",
                        "Discloses sensitive information to others without the patient's consent.",
                        "Threatens or offers to share the patient's sensitive information without consent.",
                    )
                ),
                -7,
                Dimension.ethics_safety,
                Check(type="says", terms=CONFIDENTIALITY_BREACH),
                Axis.context_awareness,
            )
        rubric = Rubric(case_id=case.id, criteria=tuple(out))
        compile_rubric(
            rubric, case
        )  # the rule verifier's matcher for this rubric, built here rather than in grading
        return rubric


_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "my",
        "me",
        "i",
        "i'm",
        "i've",
        "can",
        "could",
        "would",
        "should",
        "will",
        "is",
        "are",
        "was",
        "were",
        "be",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "you",
        "your",
        "it",
        "this",
        "that",
        "what",
        "when",
        "how",
        "why",
        "which",
        "just",
        "get",
        "go",
        "back",
        "so",
        "not",
        "no",
        "any",
        "some",
        "there",
        "their",
        "they",
        "we",
        "our",
        "us",
        "from",
        "about",
        "into",
        "up",
        "out",
        "as",
        "than",
        "then",
        "can't",
        "don't",
    ]
)


def _request_terms(request: str) -> tuple[str, ...]:
    """Content words of a request, as terms a doctor's answer would use ("sick note", "driving", "breastfeeding")."""
    toks = [w for w in re.findall(r"[a-z][a-z'-]+", request.lower()) if w not in _STOP and len(w) > 3]
    return tuple(dict.fromkeys(toks))[:6]


# ------------------------------------------------------------------------------------------------ LLM generator

LLM_PROMPT = """You write grading rubrics for a simulated clinical consultation. Given the case below, write {n}
criteria a grader can check against the doctor's side of the transcript. Each criterion is one observable
behaviour with integer points between -10 and 10 (never 0): positive for good practice, negative for errors
(contraindicated treatment -8 to -10). Cover these dimensions: diagnostic_accuracy, consultation_logic,
treatment_rationality, communication_empathy, ethics_safety; and these axes: accuracy, completeness,
communication_quality, context_awareness, instruction_following.

Reply with only a JSON list of objects with keys "text", "points", "axis", "dimension".

Case:
{case}"""


def _case_brief(case: Case) -> str:
    d = case.model_dump(mode="json", exclude={"extra", "source"})
    return json.dumps(d, ensure_ascii=False)[:12000]


def parse_llm_criteria(reply: str, *, prefix: str = "llm") -> tuple[list[Criterion], list[str]]:
    """Criteria from a generator's reply, and the problems found; invalid items are skipped, not fatal."""
    m = re.search(r"\[.*\]", reply, flags=re.DOTALL)
    if not m:
        return [], ["no JSON list in the reply"]
    try:
        items = json.loads(m.group(0))
    except json.JSONDecodeError as exc:
        return [], [f"malformed JSON: {exc.msg}"]
    out, problems = [], []
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            problems.append(f"item {i}: not an object")
            continue
        try:
            out.append(
                Criterion(
                    id=f"{prefix}_{i}",
                    text=str(item.get("text", "")),
                    points=item.get("points"),
                    axis=item.get("axis"),
                    dimension=item.get("dimension"),
                    check=None,
                )
            )
        except ValidationError as exc:
            problems.append(
                f"item {i}: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            )
    return out, problems


def _similar(a: str, b: str) -> bool:
    wa, wb = set(re.findall(r"[a-z]{4,}", a.lower())), set(re.findall(r"[a-z]{4,}", b.lower()))
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) >= 0.6


class LLMRubricGenerator:
    """Case in, JSON criteria out, validated, with bounded retries; merged with and de-duplicated against the rule
    criteria (a rule criterion wins over a near-duplicate LLM one, since it carries a machine-checkable form)."""

    def __init__(
        self, model: Any, *, n: int = 10, max_retries: int = 2, base: RuleRubricGenerator | None = None
    ):
        self.model = model
        self.n = n
        self.max_retries = max_retries
        self.base = base or RuleRubricGenerator()
        self.name = f"llm:{getattr(model, 'name', type(model).__name__)}"
        self.problems: list[str] = []

    def generate(self, case: Case, seed: int = 0) -> Rubric:
        return self.generate_batch([case], seed=seed)[0]

    def generate_batch(self, cases: Sequence[Case], seed: int = 0) -> list[Rubric]:
        base = [self.base.generate(c, seed) for c in cases]
        got: list[list[Criterion]] = [[] for _ in cases]
        todo = list(range(len(cases)))
        for attempt in range(self.max_retries + 1):
            if not todo:
                break
            prompts = [
                [{"role": "user", "content": LLM_PROMPT.format(n=self.n, case=_case_brief(cases[i]))}]
                for i in todo
            ]
            replies = self.model.generate(prompts, max_tokens=1500, temperature=0.0, seed=seed + attempt)
            failed = []
            for i, reply in zip(todo, replies, strict=True):
                crit, probs = parse_llm_criteria(reply)
                self.problems += [f"{cases[i].id} attempt {attempt + 1}: {p}" for p in probs]
                if crit:
                    got[i] = crit
                else:
                    failed.append(i)
            todo = failed
        out = []
        for rubric, extra in zip(base, got, strict=True):
            merged = list(rubric.criteria)
            for c in extra:
                if not any(_similar(c.text, m.text) for m in merged):
                    merged.append(c)
            out.append(Rubric(case_id=rubric.case_id, criteria=tuple(merged)))
        return out
