"""The examiner (the measurement role): reports requested exam findings and test results, nothing else.

A requested finding the case records is reported as written; a system the case records nothing for gets a normal
finding; a test the case does not list gets a normal result. Interpretations that name the diagnosis are dropped:
the examiner measures, the doctor diagnoses.
"""

from __future__ import annotations

from clinic_env.cases.schema import ExamSystem

from . import lexicon as lx
from .understanding import CompiledCase


def exam_line(cc: CompiledCase, exam_id: str) -> str:
    e = cc.exams[exam_id]
    return f"{e.name}: {e.finding}"


def normal_exam_line(system: ExamSystem) -> str:
    label = system.value.replace("_", " ")
    return f"{label.capitalize()} examination: {lx.EXAM_SYSTEMS[system][1]}"


def test_line(cc: CompiledCase, test_id: str) -> str:
    t = cc.tests[test_id]
    value = f"{t.value} {t.unit}" if t.unit else t.value
    line = f"{t.name}: {value}"
    if t.normal_range:
        line += f" (reference {t.normal_range})"
    if t.interpretation and not cc.find_diagnosis(t.interpretation):
        line = line.rstrip(". ") + f". {t.interpretation}"
    return line


def catalog_line(name: str) -> str:
    return f"{name}: {lx.TEST_CATALOG[name][1]}"
