"""Counts over a case set: by specialty, age band, sex, acuity, setting, disposition and tag."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from .schema import Case


def _enum_value(v: Any) -> str:
    return v.value if hasattr(v, "value") else str(v)


def case_stats(cases: Iterable[Case]) -> dict[str, Any]:
    """A JSON-ready summary of a case set; keys are stable (``total``, ``by_specialty``, ...)."""
    cases = list(cases)
    by = {
        name: Counter()
        for name in ("specialty", "age_band", "sex", "acuity", "setting", "disposition", "tag", "source")
    }
    n_facts = n_exam = n_tests = n_diff = 0
    for c in cases:
        by["specialty"][_enum_value(c.specialty)] += 1
        by["age_band"][c.demographics.age_band] += 1
        by["sex"][_enum_value(c.demographics.sex)] += 1
        by["acuity"][_enum_value(c.acuity)] += 1
        by["setting"][_enum_value(c.setting)] += 1
        by["disposition"][_enum_value(c.management.disposition)] += 1
        by["source"][_enum_value(c.source.kind)] += 1
        for t in c.tags:
            by["tag"][_enum_value(t)] += 1
        n_facts += len(c.facts)
        n_exam += len(c.exam)
        n_tests += len(c.tests)
        n_diff += len(c.diagnosis.differential)
    n = max(len(cases), 1)
    out: dict[str, Any] = {"total": len(cases)}
    for name, counter in by.items():
        out[f"by_{name}"] = dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
    out["mean_facts"] = round(n_facts / n, 2)
    out["mean_exam_findings"] = round(n_exam / n, 2)
    out["mean_test_results"] = round(n_tests / n, 2)
    out["mean_differential"] = round(n_diff / n, 2)
    out["n_specialties"] = len(by["specialty"])
    out["n_emergency_disposition"] = by["disposition"].get("emergency", 0)
    out["n_sensitive_key_fact"] = by["tag"].get("sensitive_key_fact", 0)
    out["n_contraindication_trap"] = by["tag"].get("contraindication_trap", 0)
    return out
