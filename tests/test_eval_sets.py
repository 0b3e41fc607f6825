"""The labelled evaluation sets stay in step with the library and the rubric generator.

If a case edit removes a fact id, or a generator change rewords a criterion, the benchmark would silently measure
less; these tests fail instead, so the set is never quietly adjusted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import clinic_env
from clinic_env.rubrics import RuleRubricGenerator

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cases():
    return clinic_env.load_cases("builtin")


def _rows(name):
    return [json.loads(x) for x in (DATA / name).read_text(encoding="utf-8").splitlines() if x.strip()]


def test_doctor_questions_reference_existing_ids(cases):
    rows = _rows("doctor_questions.jsonl")
    assert len(rows) >= 300
    for r in rows:
        case = cases[r["case_id"]]
        ids = {f.id for f in case.facts}, {e.id for e in case.exam}, {t.id for t in case.tests}
        assert set(r["facts"]) <= ids[0], r
        assert set(r.get("exams", [])) <= ids[1], r
        assert set(r.get("tests", [])) <= ids[2], r
    assert {r["split"] for r in rows} == {"dev", "test"}


def test_rubric_labels_match_the_generated_criteria(cases):
    transcripts = {r["transcript_id"] for r in _rows("rubric_transcripts.jsonl")}
    labels = _rows("rubric_labels.jsonl")
    assert len(labels) >= 200
    gen = RuleRubricGenerator()
    rubrics = {}
    for lab in labels:
        assert lab["transcript_id"] in transcripts
        cid = lab["case_id"]
        rubrics.setdefault(cid, gen.generate(cases[cid], 0))
        crit = rubrics[cid].criteria[lab["criterion_index"]]
        assert crit.text == lab["criterion"], (cid, lab["criterion_index"])
        assert crit.points == lab["points"]
