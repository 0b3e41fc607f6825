"""Oracle probe doctors for validating rubrics (not agents: they read the answer key).

A rubric is useful as a reward only if it separates good consultations from bad ones. ``good_consultation``
plays a careful doctor who knows the case: history of the essential facts (sensitive ones asked tactfully),
focused examination, the key tests, the right diagnosis with differentials, first-line treatment at the right
urgency, contraindications explicitly avoided (a test of the verifier's negation handling), safety-netting, empathy.
``bad_consultation`` jumps to a wrong diagnosis, over-investigates, recommends the contraindicated treatment and
falsely reassures. Both play through the rule patient, so transcripts are real simulator output.
"""

from __future__ import annotations

import numpy as np

from clinic_env.cases.schema import Case, Urgency
from clinic_env.patient import PatientSimulator

from .verify import Transcript

URGENCY_LINE = {
    Urgency.emergency: "This needs emergency treatment: I'm calling an ambulance so you go to the emergency department now.",
    Urgency.urgent: "This needs urgent attention today: I'm arranging an urgent same-day referral.",
    Urgency.routine: "I'll refer you routinely and we'll follow up in a few weeks to review you.",
    Urgency.self_care: "You can manage this at home with rest and fluids; it should settle.",
}


def _play(case: Case, turns: list[str], seed: int) -> Transcript:
    sim = PatientSimulator(max_turns=60)
    messages = [("patient", sim.reset(case, seed))]
    for t in turns:
        if sim.done:
            break
        turn = sim.respond(t)
        messages += [("doctor", t), ("patient", turn.observation)]
    return Transcript(messages)


def _ask(fact) -> str:
    phrase = (fact.lay_terms or fact.synonyms or fact.concepts)[0]
    if fact.sensitive:
        return f"I ask everyone this and it stays confidential: {phrase}?"
    return f"Can I ask about {phrase}?"


def good_consultation(case: Case, seed: int = 0) -> Transcript:
    rng = np.random.default_rng(seed)
    essential = [f for f in case.facts if f.essential and f.id not in case.opening_facts]
    order = list(rng.permutation(len(essential)))
    questions = [_ask(essential[i]) for i in order]
    turns = [
        "Hello, I'm the doctor. I'm sorry you're going through this; that must be worrying. Tell me more."
    ]
    turns += [" ".join(questions[i : i + 3]) for i in range(0, len(questions), 3)]
    key = set(case.diagnosis.key_evidence) | {
        i for d in case.diagnosis.differential for i in d.discriminators
    }
    exams = [e for e in case.exam if e.id in key] or list(case.exam)
    tests = [t for t in case.tests if t.id in key and t.abnormal] or [t for t in case.tests if t.abnormal]
    if exams:
        turns.append("EXAM: " + ", ".join(e.name for e in exams[:4]))
    if tests:
        turns.append("TEST: " + ", ".join(t.name for t in tests[:3]))
    diffs = [d.name for d in case.diagnosis.differential[:2]]
    dx = f"DIAGNOSIS: {case.diagnosis.primary}."
    if diffs:
        dx += f" I also considered {' and '.join(diffs)}, which are less likely."
    first = case.management.first_line
    plan = "PLAN: " + " ".join(
        f"We'll start {t.name}" + (f" ({t.detail})." if t.detail else ".") for t in first[:3]
    )
    for c in case.management.contraindications:
        plan += f" We must avoid {c.treatment} for you."
    plan += " " + URGENCY_LINE[case.management.disposition]
    plan += " Come back straight away or call 999 if you get worse or notice any warning signs."
    if case.persona.requests:
        plan += " You asked: " + case.persona.requests[0].rstrip("?") + " — yes, we will sort that out."
    turns.append(f"{dx} {plan}")
    return _play(case, turns, seed)


def bad_consultation(case: Case, seed: int = 0) -> Transcript:
    wrong = case.diagnosis.differential[0].name if case.diagnosis.differential else "a viral infection"
    turns = [
        f"DIAGNOSIS: this is {wrong}.",
        "TEST: FBC, CRP, U&E, LFTs, CT head, MRI brain, echocardiogram, D-dimer, thyroid function, urine dip",
    ]
    plan = "PLAN: It's nothing serious, you'll be fine, just go home and rest."
    if case.management.contraindications:
        c = case.management.contraindications[0]
        plan += f" Take {c.treatment}."
    turns.append(plan)
    return _play(case, turns, seed)
