"""The rule verifier's compiled matcher (issue 9) gives exactly the results of the plain algorithm it replaced.

``reference_mentions`` below is the clause-by-clause substring algorithm the verifier used before terms were
compiled into Aho-Corasick automata; random texts built from rubric-like fragments must give the same
``(term, negated)`` list through the public ``mentions``, through a rubric's shared scans, and through the
pure-Python fallback used when pyahocorasick is missing. Scoring from the precomputed plan must equal
``example_metrics``, key order included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clinic_env
from clinic_env.patient.text import normalize
from clinic_env.rubrics import RuleRubricGenerator, RuleVerifier, Transcript, score_grades
from clinic_env.rubrics import verify as V
from clinic_env.rubrics.generate import EMPATHY_TERMS, RECOMMEND_CUES
from clinic_env.rubrics.paraphrase import parts
from clinic_env.rubrics.scoring import example_metrics


def _negated(before: str, after: str) -> bool:
    return any(c in before for c in V._NEG_BEFORE) or any(c in after for c in V._NEG_AFTER)


def _keys(terms):
    out = []
    for t in terms:
        k = tuple(k for p in parts(t) if (k := normalize(p)).strip())
        if k:
            out.append((t, k))
    return out


def reference_mentions(text, terms, cues=(), *, unconditional=False):
    """The pre-compilation algorithm: split, normalize, then substring searches per clause and term."""
    sentences = []
    for sent in V._SENT.split(text):
        in_plan = sent.lstrip().lower().startswith("plan")
        clauses = [normalize(c) for c in V._CLAUSE.split(sent) if c and c.strip()]
        cond = next((i for i, c in enumerate(clauses) if any(k in c for k in V._CONDITIONAL)), None)
        sentences.append((cond, in_plan, clauses))
    joined = "".join(c for _, _, cl in sentences for c in cl)
    keys = [(t, k) for t, k in _keys(terms) if all(p in joined for p in k)]
    found = []
    if not keys:
        return found
    cue_keys = [k[0] for _, k in _keys(cues)]
    last = None
    for conditional, in_plan, clauses in sentences:
        cued, cue_negated, last_here = in_plan or not cue_keys, False, None
        for ci, norm in enumerate(clauses):
            if unconditional and conditional is not None and ci >= conditional:
                continue
            own_cue = next((norm.find(c) for c in cue_keys if c in norm), -1)
            if own_cue >= 0:
                cue_negated, cued = _negated(norm[: own_cue + 1], ""), True
            hits = []
            for term, key in keys:
                spans = [(pos, pos + len(p)) for p in key if (pos := norm.find(p)) >= 0]
                if len(spans) < len(key):
                    continue
                start, last_start = min(s for s, _ in spans), max(s for s, _ in spans)
                end = max(e for _, e in spans)
                neg = _negated(norm[: last_start + 1], norm[end - 1 :]) or (own_cue < 0 and cue_negated)
                hits.append((start, term, neg))
            antecedent = last_here or last
            if hits:
                last_here = max(hits)[1]
            elif (
                cue_keys
                and antecedent is not None
                and any(c in norm for c in cue_keys)
                and any(f" {p} " in norm for p in V._PRONOUNS)
            ):
                pos = min(norm.find(f" {p} ") for p in V._PRONOUNS if f" {p} " in norm)
                hits.append((pos, antecedent, _negated(norm[: pos + 1], norm[pos:])))
            if cued:
                found += [(t, n) for _, t, n in hits]
        last = last_here
    return found


TERMS = [
    "ibuprofen",
    "aspirin",
    "heart attack",
    "gallbladder & inflamed",
    "kidney stone",
    "stone & kidney",
    "blood test",
    "chest x-ray",
    "ambulance",
    "999",
    "sorry to hear",
    "I'm sorry",
    "today",
    "stop",
    "no",
]
FRAGMENTS = [
    *TERMS,
    "we'll start",
    "I'd recommend",
    "avoid",
    "not",
    "don't take",
    "is contraindicated",
    "rather than",
    "if you get worse",
    "in case",
    "stop it",
    "them",
    "that one",
    "PLAN:",
    "check",
    "we'll send",
    "your",
    "is inflamed",
    "and",
    "but",
    "however",
    ",",
    ";",
    ".",
    "?",
    "\n",
    "(",
    ")",
    "Could it be",
    "it's",
    "unlikely",
]
texts = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=40).map(" ".join)
term_lists = st.lists(st.sampled_from(TERMS), min_size=1, max_size=6, unique=True)
cue_lists = st.sampled_from([(), RECOMMEND_CUES, V._REQUEST_CUES, ("start", "check")])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, terms=term_lists, cues=cue_lists, unconditional=st.booleans())
def test_mentions_equals_the_reference_algorithm(text, terms, cues, unconditional):
    want = reference_mentions(text, terms, cues, unconditional=unconditional)
    assert V.mentions(text, terms, cues, unconditional=unconditional) == want
    # through one shared vocabulary with more keys than the query needs (as in grading a rubric)
    q = V._query(tuple(terms), tuple(cues))
    vocab = V._vocabulary(frozenset(normalize(x) for x in FRAGMENTS) | q.keys)
    assert vocab.covers(q)
    assert V._find(V._scan(text, vocab), q, unconditional) == want


@settings(max_examples=60, deadline=None)
@given(text=texts, terms=term_lists, cues=cue_lists)
def test_pure_python_fallback_matches_the_automaton(text, terms, cues):
    q = V._query(tuple(terms), tuple(cues))
    fast = V._Matcher(q.keys, True)
    slow = V._Matcher(q.keys, True)
    slow.automaton = None  # what a missing pyahocorasick gives
    joined = V._segments(text).joined
    assert sorted(fast.matches(joined)) == sorted(slow.matches(joined))


def test_known_cases_of_negation_order_and_pronouns():
    assert V.mentions("We must avoid ibuprofen.", ["ibuprofen"]) == [("ibuprofen", True)]
    assert V.mentions("Your gallbladder is inflamed.", ["gallbladder & inflamed"]) == [
        ("gallbladder & inflamed", False)
    ]
    said = V.mentions("We'll start aspirin. Stop it after a week.", ["aspirin"], RECOMMEND_CUES)
    assert said == reference_mentions(
        "We'll start aspirin. Stop it after a week.", ["aspirin"], RECOMMEND_CUES
    )
    assert said[0] == ("aspirin", False)
    assert V.mentions("If you get worse, call an ambulance.", ["ambulance"], unconditional=True) == []
    assert V.mentions("", ["ambulance"]) == [] and V.mentions("ambulance", []) == []


def test_rule_grades_do_not_depend_on_the_rubric_being_compiled_first():
    cases = clinic_env.load_cases("builtin")
    case = cases[3]
    rubric = RuleRubricGenerator().generate(case, seed=0)
    copy = rubric.model_copy(deep=True)  # a rubric object the generator never compiled
    assert V._COMPILED.get((id(copy), id(case))) is None
    rng = np.random.default_rng(0)
    terms = [t for c in rubric.criteria if c.check for t in c.check.terms] + list(EMPATHY_TERMS)
    turns = [("patient", case.opening_statement)]
    for _ in range(5):
        words = [terms[int(i)] for i in rng.integers(len(terms), size=4)]
        turns += [
            ("doctor", f"We'll start {words[0]}, not {words[1]}. If you get worse, {words[2]}."),
            ("patient", "ok"),
        ]
    tr = Transcript(turns)
    g1 = RuleVerifier().grade(case, rubric, tr)
    a = V._Analysis(case, tr)  # no compiled rubric: every query scans with its own vocabulary
    g2 = [V.Grade(c.id, *V.evaluate(c.check, a)) for c in copy.criteria if c.check]
    assert [
        (g.criterion_id, g.met, g.explanation) for g in g1 if g.criterion_id in {x.criterion_id for x in g2}
    ] == [(g.criterion_id, g.met, g.explanation) for g in g2]
    assert RuleVerifier().grade(case, copy, tr) == g1


@pytest.mark.parametrize("case_index", [0, 7, 20])
def test_score_plan_equals_example_metrics(case_index):
    case = clinic_env.load_cases("builtin")[case_index]
    rubric = RuleRubricGenerator().generate(case, seed=case_index)
    items = [{"points": c.points, "tags": c.all_tags} for c in rubric.criteria]
    rng = np.random.default_rng(case_index)
    for _ in range(20):
        met = [bool(x) for x in rng.integers(2, size=len(rubric.criteria))]
        grades = [V.Grade(c.id, m) for c, m in zip(rubric.criteria, met, strict=True)]
        got = score_grades(rubric, grades)
        want = example_metrics(items, met)
        assert list(got.items()) == list(want.items())
    with pytest.raises(ValueError, match="no grade for criteria"):
        score_grades(rubric, grades[1:])
