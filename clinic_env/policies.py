"""A simple built-in doctor policy for the demo and smoke tests: a fixed checklist, no medical reasoning.

``ChecklistDoctor`` sees only what a doctor would (the patient's words and the examiner's reports), never the
case file. It takes a systematic history in a few multi-question turns, examines and orders tests suggested by
keywords in what it heard, then closes with a non-committal assessment, a same-day review and safety-netting.
It cannot name a diagnosis, so it is a floor, not a baseline to beat by much: the scripted doctor in ``agents/``
(with a differential) is the real non-LLM baseline.
"""

from __future__ import annotations

from typing import Any

HISTORY = (
    "Hello, I'm the doctor. I'm sorry you're unwell; that must be worrying. When did this start, and what is it like?",
    "Where exactly is it, and does it spread anywhere? How bad is it out of ten? Does anything make it better or worse?",
    "Have you had a fever, felt sick or been sick? Any shortness of breath, chest pain, headache or rash?",
    "Do you have any medical conditions? Do you take any regular medicines, and do you have any allergies?",
    "Does anything run in the family? Do you smoke or drink alcohol? I ask everyone: do you use any recreational drugs?",
)

# Keyword in what the doctor has heard -> (exam systems, tests)
CLUES: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("chest", "breath", "cough", "heart", "palpitation"),
        ("heart", "chest"),
        ("ECG", "chest X-ray", "troponin"),
    ),
    (
        ("tummy", "stomach", "abdomen", "vomit", "sick", "diarrhoea", "bowel"),
        ("abdomen",),
        ("LFTs", "amylase"),
    ),
    (
        ("head", "dizzy", "weak", "numb", "vision", "confus", "fit"),
        ("neurological examination", "eyes"),
        ("CT head",),
    ),
    (("rash", "skin", "mole", "itch", "spot"), ("skin",), ()),
    (("wee", "urine", "pee", "water infection", "burning"), ("abdomen",), ("urine dipstick",)),
    (("joint", "knee", "back", "hip", "shoulder", "swollen"), ("joints",), ("ESR",)),
    (("ear", "throat", "eye", "hearing"), ("ears, nose and throat", "eyes"), ()),
    (("period", "pregnan", "bleeding", "discharge"), ("abdomen",), ("pregnancy test",)),
    (("low", "sad", "anxious", "sleep", "voices"), ("mental state",), ()),
)
CLOSING = (
    "DIAGNOSIS: I'm not yet certain what is causing this and it needs further assessment. "
    "PLAN: I'm arranging an urgent same-day review today with the right team. If you get worse, feel faint, or "
    "develop new symptoms, call 999 or go straight to the emergency department. I'm sorry this is worrying."
)


class ChecklistDoctor:
    """``act(observation, info) -> str``; call ``reset()`` at the start of each episode."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._step = 0
        self._heard: list[str] = []

    def act(self, observation: str, info: dict[str, Any] | None = None) -> str:
        self._heard.append(observation.lower())
        step = self._step
        self._step += 1
        if step < len(HISTORY):
            return HISTORY[step]
        heard = " ".join(self._heard)
        systems, tests = ["vital signs", "general appearance"], ["full blood count", "U&E", "CRP"]
        for words, sys_, tst in CLUES:
            if any(w in heard for w in words):
                systems += [s for s in sys_ if s not in systems]
                tests += [t for t in tst if t not in tests]
        if step == len(HISTORY):
            return "EXAM: " + ", ".join(systems[:5])
        if step == len(HISTORY) + 1:
            return "TEST: " + ", ".join(tests[:5])
        return CLOSING
