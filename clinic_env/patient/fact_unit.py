"""The Fact Unit: what may be disclosed, what has been, and whether a reply keeps to it.

Disclosure policy (tested in ``tests/test_patient.py``):

1. The opening statement discloses the case's ``opening_facts`` and nothing else.
2. A question releases exactly the facts it asks for: a fact's own synonyms and lay terms, or a shared concept
   phrase for one of its concept keys. Nothing essential is volunteered; an open question ("tell me more")
   releases nothing new.
3. A sensitive fact (sexual, substance, violence, mental health) is released only on a direct question: its own
   phrases or its own concept key. A broader question ("any medicines?") does not reach it.
4. A question about something the case holds no fact for is answered consistently with the case: an unlisted
   symptom is denied; unlisted descriptive history gets "I'm not sure". A positive finding is never invented.
5. Exam findings and test results come only from the examiner, only when requested; tests never ordered are never
   reported.

``check`` is the second line of defence, run on every reply from either backend: it flags the diagnosis or any of
its synonyms, a fact not yet released, a test result not ordered, and jargon beyond the persona's health literacy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from clinic_env.cases.schema import Level

from . import lexicon as lx
from .text import stem, words
from .understanding import CompiledCase, Intents

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Violation:
    kind: str  # "diagnosis", "undisclosed_fact", "unordered_result", "jargon"
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class FactUnit:
    """Per-episode disclosure state for one case."""

    def __init__(self, cc: CompiledCase):
        self.cc = cc
        self.disclosed: dict[str, None] = dict.fromkeys(cc.case.opening_facts)
        self.ordered_tests: dict[str, None] = {}
        self.examined: dict[str, None] = {}
        self._leak_cache: tuple[frozenset[str], list[tuple[str, frozenset[str], int]]] | None = None

    def _leak_signatures(self, allowed: set[str]) -> list[tuple[str, frozenset[str], int]]:
        """``(fact id, distinctive tokens, hits needed)`` for each fact not in ``allowed`` whose signature keeps at
        least three tokens no allowed fact shares. Depends only on ``allowed``, which changes on few turns, so
        the last answer is kept (checks run on every reply, sometimes several times per turn)."""
        key = frozenset(allowed)
        if self._leak_cache is None or self._leak_cache[0] != key:
            allowed_tokens: set[str] = set()
            for fid in allowed:
                allowed_tokens |= self.cc.fact_signature.get(fid, frozenset())
            found = []
            for fid, sig in self.cc.fact_signature.items():
                if fid in allowed:
                    continue
                distinct = sig - allowed_tokens
                if len(distinct) < 3:
                    continue  # too few distinctive words to tell a leak from chance
                found.append((fid, distinct, max(3, math.ceil(0.5 * len(distinct)))))
            self._leak_cache = (key, found)
        return self._leak_cache[1]

    def release(self, intents: Intents) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Facts this turn releases: ``(new, already disclosed)``. Records the new ones."""
        new = tuple(f for f in intents.facts if f not in self.disclosed)
        again = tuple(f for f in intents.facts if f in self.disclosed)
        self.disclosed.update(dict.fromkeys(new))
        self.examined.update(dict.fromkeys(intents.exams))
        self.ordered_tests.update(dict.fromkeys(intents.tests))
        return new, again

    def check(
        self,
        reply: str,
        *,
        allowed: set[str] | None = None,
        literacy: Level = Level.medium,
        doctor_words: set[str] | frozenset[str] = frozenset(),
    ) -> list[Violation]:
        """Problems in a patient reply. ``allowed`` defaults to the facts disclosed so far."""
        allowed = set(self.disclosed) if allowed is None else allowed
        out: list[Violation] = []
        low = reply.lower()
        cc = self.cc
        needles = cc.diagnosis_needles
        names = []
        if needles is None or any(n in low for n in needles[0]):
            names = [m.group(0) for m in cc.diagnosis_pattern.finditer(low)]
        if cc.diagnosis_abbrev is not None and (needles is None or any(n in reply for n in needles[1])):
            names += [m.group(0) for m in cc.diagnosis_abbrev.finditer(reply)]
        for name in names:
            # Repeating a name the doctor has already said is hearing, not leaking.
            if not set(words(name)) <= doctor_words:
                out.append(Violation("diagnosis", f"names the diagnosis ({name!r})"))
                break
        # One tokenisation serves every check below: normalize(reply).split() is exactly the stems of words(reply).
        reply_raw_words = words(reply)
        reply_words = [stem(w) for w in reply_raw_words]
        reply_tokens = set(reply_words)
        for fid, distinct, need in self._leak_signatures(allowed):
            hit = distinct & reply_tokens
            if len(hit) >= need:
                out.append(Violation("undisclosed_fact", f"{fid} ({', '.join(sorted(hit))})"))
        numbers_said = set(_NUMBER.findall(reply))
        reply_grams = {" ".join(reply_words[i : i + 4]) for i in range(len(reply_words) - 3)}
        for tid in self.cc.tests:
            if tid in self.ordered_tests:
                continue
            nums = self.cc.test_numbers[tid] & numbers_said
            grams = self.cc.test_grams[tid] & reply_grams
            if nums or grams:
                out.append(
                    Violation("unordered_result", f"{tid} ({', '.join(sorted(nums) or sorted(grams)[:1])})")
                )
        if literacy is not Level.high:
            used = [w for w in dict.fromkeys(reply_raw_words) if w in lx.JARGON and w not in doctor_words]
            if used and (literacy is Level.low or len(used) >= 2):
                out.append(Violation("jargon", ", ".join(used)))
        return out
