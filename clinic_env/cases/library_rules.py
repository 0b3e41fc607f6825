"""Rules the shipped library must meet on top of the schema.

Imported and generated cases only need to validate against :class:`~clinic_env.cases.schema.Case`; hand-authored
library cases must also be rich enough to support a realistic consultation and a full rubric. Each rule returns
``(field path, message)`` pairs so the CLI can print them beside schema problems.
"""

from __future__ import annotations

import re

from .schema import Case, Speaker

MIN_FACTS = 12
MIN_ESSENTIAL_FACTS = 3
MIN_EXAM = 3
MIN_TESTS = 2
MIN_DIFFERENTIAL = 3


def _mentions(text: str, name: str) -> bool:
    # Short all-caps abbreviations match case-sensitively: "MS" is not the "ms" of "120 ms".
    if len(name) <= 3 and name.isupper():
        return re.search(r"(?<![A-Za-z0-9])" + re.escape(name) + r"(?![A-Za-z0-9])", text) is not None
    pattern = r"(?<![A-Za-z0-9])" + re.escape(name.lower()) + r"(?![A-Za-z0-9])"
    return re.search(pattern, text.lower()) is not None


def library_problems(case: Case, *, file_stem: str | None = None) -> list[tuple[str, str]]:
    """Problems that keep a valid case out of the shipped library."""
    p: list[tuple[str, str]] = []
    if file_stem is not None and file_stem != case.id:
        p.append(("id", f"library file name {file_stem!r} must equal the case id {case.id!r}"))
    if len(case.facts) < MIN_FACTS:
        p.append(("facts", f"has {len(case.facts)} facts; library cases need at least {MIN_FACTS}"))
    if len(case.essential_facts) < MIN_ESSENTIAL_FACTS:
        p.append(
            ("facts", f"has {len(case.essential_facts)} essential facts; need at least {MIN_ESSENTIAL_FACTS}")
        )
    if len(case.exam) < MIN_EXAM:
        p.append(("exam", f"has {len(case.exam)} exam findings; need at least {MIN_EXAM}"))
    if len(case.tests) < MIN_TESTS:
        p.append(("tests", f"has {len(case.tests)} test results; need at least {MIN_TESTS}"))
    if len(case.diagnosis.differential) < MIN_DIFFERENTIAL:
        p.append(
            (
                "diagnosis.differential",
                f"has {len(case.diagnosis.differential)} items; need at least {MIN_DIFFERENTIAL}",
            )
        )
    for i, d in enumerate(case.diagnosis.differential):
        if not d.discriminators:
            p.append((f"diagnosis.differential.{i}.discriminators", "cite at least one fact/exam/test id"))
    if not case.diagnosis.key_evidence:
        p.append(("diagnosis.key_evidence", "cite the facts/findings/results that establish the diagnosis"))
    if not case.guidelines:
        p.append(("guidelines", "name at least one guideline family the answer key follows"))
    if not case.management.red_flags:
        p.append(("management.red_flags", "list at least one red flag with its urgency"))
    if len(case.management.education) < 2:
        p.append(("management.education", "give at least two patient-education points"))
    if not case.management.follow_up:
        p.append(("management.follow_up", "say what follow-up or safety-netting is needed"))
    if not case.persona.concerns:
        p.append(("persona.concerns", "give the patient at least one concern"))
    if case.persona.speaker is Speaker.patient and case.demographics.age_years < 12:
        p.append(("persona.speaker", "a child under 12 needs a parent or carer as the speaker"))
    p += naming_problems(case)
    essential_ids = {f.id for f in case.essential_facts}
    volunteered = essential_ids & set(case.opening_facts)
    if volunteered and len(volunteered) == len(essential_ids):
        p.append(("opening_facts", "the opening discloses every essential fact; leave some to be asked for"))
    for i, f in enumerate(case.facts):
        if not (f.synonyms or f.lay_terms):
            p.append((f"facts.{i}", f"fact {f.id!r} needs synonyms or lay_terms so a question can reach it"))
    for i, e in enumerate(case.exam):
        if not e.synonyms:
            p.append((f"exam.{i}.synonyms", f"exam finding {e.id!r} needs request phrases"))
    for i, t in enumerate(case.tests):
        if not t.synonyms:
            p.append((f"tests.{i}.synonyms", f"test {t.id!r} needs the names it can be ordered by"))
    return p


def naming_problems(case: Case) -> list[tuple[str, str]]:
    """Places where the patient's words or a measured result name the diagnosis (applies to every case source)."""
    p: list[tuple[str, str]] = []
    # The patient never names the answer: not in the opening, not in any fact they could say.
    for name in case.diagnosis.names:
        if _mentions(case.opening_statement, name):
            p.append(("opening_statement", f"names the diagnosis {name!r}"))
        for i, f in enumerate(case.facts):
            if _mentions(f.patient_text, name):
                p.append((f"facts.{i}.patient_text", f"names the diagnosis {name!r}"))
    # Findings and results are what was measured; naming the answer is the doctor's job (interpretation may).
    for name in case.diagnosis.names:
        for i, e in enumerate(case.exam):
            if _mentions(e.finding, name):
                p.append(
                    (f"exam.{i}.finding", f"names the diagnosis {name!r}; describe what is found instead")
                )
        for i, t in enumerate(case.tests):
            if _mentions(t.value, name):
                p.append((f"tests.{i}.value", f"names the diagnosis {name!r}; describe the result instead"))
    return p
