"""The audit command and the semantic matcher."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import clinic_env
from clinic_env.cli import app
from clinic_env.llm import CallableChatModel
from clinic_env.patient import compile_case
from clinic_env.patient.audit import audit, truly_asked

runner = CliRunner()


def test_audit_json_metrics_on_the_library():
    res = runner.invoke(app, ["patient", "audit", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for k in ("privacy", "fact", "personification"):
        assert 0.0 <= out[k] <= 1.0
    assert out["privacy"] >= 0.99 and out["fact"] >= 0.99  # the rule backend's targets
    assert out["n_turns"] > 10 * out["n_cases"]


def test_audit_scores_a_bad_llm_patient_lower():
    """An LLM patient that always says the same sensitive line: the Fact Unit stops the leak (privacy holds), but
    once that fact is out its reply passes the check while answering nothing asked, and the audit sees it."""
    case = clinic_env.load_cases("builtin")["card-inferior-stemi-pde5"]
    line = next(f for f in case.facts if f.sensitive).patient_text
    honest = audit([case], backend="rule")
    bad = audit([case], backend=CallableChatModel(lambda conv: line))
    assert bad["privacy"] == honest["privacy"] == 1.0
    assert bad["fact"] < honest["fact"] == 1.0
    assert any(k.startswith("fact:not_conveyed") for k in bad["failures"])


def test_truly_asked_is_phrase_containment():
    case = clinic_env.load_cases("builtin")["card-inferior-stemi-pde5"]
    assert "smoking" in truly_asked(case, "Do you smoke?")
    assert "med_sildenafil" not in truly_asked(case, "What medications do you take?")
    assert "med_sildenafil" in truly_asked(case, "Any Viagra?")


def test_audit_bad_backend_spec_exits_2():
    res = runner.invoke(app, ["patient", "audit", "--backend", "gguf:/x"])
    assert res.exit_code == 2 and "unknown kind" in res.output


@pytest.fixture(scope="module")
def matcher():
    pytest.importorskip("sentence_transformers")
    from clinic_env.patient.semantic import SemanticMatcher, default_model_path

    assert default_model_path().exists()
    return SemanticMatcher(threshold=0.5)


def test_semantic_matcher_finds_a_paraphrase_the_lexicon_misses(matcher):
    case = clinic_env.load_cases("builtin")["card-inferior-stemi-pde5"]
    cc = compile_case(case)
    q = "Does anyone in your family have heart trouble?"
    base = cc.parse(q)
    got = matcher.augment(cc, q, base)
    assert set(base.facts) <= set(got.facts)
    # The lexicon already handles this one; the matcher must leave understood sentences alone.
    q2 = "Do you smoke?"
    assert matcher.augment(cc, q2, cc.parse(q2)).facts == ("smoking",)


def test_semantic_matcher_keeps_sensitive_facts_behind_direct_questions(matcher):
    case = clinic_env.load_cases("builtin")["card-inferior-stemi-pde5"]
    cc = compile_case(case)
    matcher_low = type(matcher)(model=matcher.model, threshold=0.0, sensitive_threshold=0.99)
    q = "Is there anything else at all you could tell me?"
    got = matcher_low.augment(cc, q, cc.parse(q))
    assert "med_sildenafil" not in got.facts
