"""Rubrics: HealthBench scoring arithmetic, generation, the rule/LLM/replay verifiers, and the harness."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import clinic_env
from clinic_env.cli import app
from clinic_env.llm import CallableChatModel
from clinic_env.rubrics import (
    Axis,
    Check,
    Criterion,
    Dimension,
    LLMRubricGenerator,
    LLMVerifier,
    ReplayGrader,
    Rubric,
    RuleRubricGenerator,
    RuleVerifier,
    Transcript,
    aggregate,
    calculate_score,
    example_metrics,
    parse_judgement,
    score_grades,
)
from clinic_env.rubrics.healthbench import load_healthbench, run_healthbench
from clinic_env.rubrics.probes import bad_consultation, good_consultation
from clinic_env.rubrics.verify import mentions

REF = "card-inferior-stemi-pde5"


@pytest.fixture(scope="module")
def cases():
    return clinic_env.load_cases("builtin")


# ------------------------------------------------------------------------------------------- scoring


def test_calculate_score_by_hand():
    assert calculate_score([5, 3, -4], [True, False, False]) == 5 / 8
    assert calculate_score([5, 3, -4], [True, True, True]) == 4 / 8
    assert calculate_score([2, -10], [False, True]) == -5.0  # not clipped per example
    assert calculate_score([-3, -2], [True, False]) is None  # no positive points
    with pytest.raises(ValueError, match="2 criteria but 1 grades"):
        calculate_score([1, 2], [True])


def test_example_metrics_tags_by_hand():
    items = [
        {"points": 6, "tags": ["axis:accuracy", "level:example"]},
        {"points": 4, "tags": ["axis:completeness", "level:example"]},
        {"points": -5, "tags": ["axis:accuracy", "level:example"]},
        {"points": -2, "tags": ["axis:communication_quality", "level:example"]},
    ]
    m = example_metrics(items, [True, False, True, True], ["theme:emergency_referrals"])
    assert m["overall_score"] == pytest.approx((6 - 5 - 2) / 10)
    assert m["theme:emergency_referrals"] == m["overall_score"]
    assert m["axis:accuracy"] == pytest.approx((6 - 5) / 6)
    assert m["axis:completeness"] == 0.0
    assert "axis:communication_quality" not in m  # only negative points there: dropped for that tag
    assert m["level:example"] == m["overall_score"]


def test_aggregate_matches_a_hand_computation():
    per = [
        {"overall_score": v, "axis:accuracy": a}
        for v, a in [(0.5, 1.0), (-0.2, 0.5), (1.0, 0.0), (0.9, 0.75)]
    ]
    out = aggregate(per, seed=3)
    vals = np.array([0.5, -0.2, 1.0, 0.9])
    assert out["score"] == out["overall_score"] == pytest.approx(np.clip(vals.mean(), 0, 1))
    assert out["overall_score:n_samples"] == 4
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 4, size=(1000, 4))
    assert out["score:bootstrap_std"] == pytest.approx(float(np.std(np.clip(vals[idx].mean(axis=1), 0, 1))))
    assert aggregate([{"overall_score": -3.0}] * 3)["score"] == 0.0  # the mean is clipped
    assert aggregate([{"overall_score": 0.4}] * 5)["score:bootstrap_std"] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------- schema and generation


def test_criterion_points_are_nonzero_integers_in_range():
    base = {"id": "x", "text": "t", "axis": "accuracy", "dimension": "ethics_safety"}
    for bad in (0, 11, -11, 2.5):
        with pytest.raises(ValidationError):
            Criterion(**base, points=bad)
    with pytest.raises(ValidationError, match="needs 'terms'"):
        Check(type="says")
    c = Criterion(**base, points=-3)
    with pytest.raises(ValidationError, match="duplicate criterion ids"):
        Rubric(case_id="c", criteria=(c, c))


def test_rule_rubrics_cover_every_case(cases):
    gen = RuleRubricGenerator()
    for case in cases:
        r = gen.generate(case, seed=0)
        assert len(r.criteria) >= 12, case.id
        assert {c.dimension for c in r.criteria} == set(Dimension), case.id
        assert {c.axis for c in r.criteria} == set(Axis), case.id
        assert all(c.check is not None for c in r.criteria if c.id != "request")
        for c in r.criteria:
            if c.id.startswith("contraindicated_"):
                assert -10 <= c.points <= -8
        assert r.max_points > 0


def test_wording_varies_with_seed_and_is_reproducible(cases):
    gen = RuleRubricGenerator()
    a, b, a2 = gen.generate(cases[REF], 0), gen.generate(cases[REF], 1), gen.generate(cases[REF], 0)
    assert a == a2
    assert [c.id for c in a.criteria] == [c.id for c in b.criteria]
    assert sum(x.text != y.text for x, y in zip(a.criteria, b.criteria, strict=True)) >= 5


# ------------------------------------------------------------------------------------------- rule verifier


def test_negation_and_clauses():
    assert mentions("We must avoid nitrates because of the sildenafil.", ["nitrates"]) == [("nitrates", True)]
    assert mentions("There are no signs of pneumonia.", ["pneumonia"]) == [("pneumonia", True)]
    assert mentions("Nitrates are contraindicated for you.", ["nitrates"]) == [("nitrates", True)]
    assert mentions("I'll give you a GTN spray.", ["GTN"]) == [("GTN", False)]
    assert mentions("It isn't a clot, but it is pneumonia.", ["pneumonia"]) == [("pneumonia", False)]


def _grade(case, text_turns):
    rubric = RuleRubricGenerator().generate(case, 0)
    tr = Transcript([("patient", case.opening_statement)] + [("doctor", t) for t in text_turns])
    grades = {g.criterion_id: g for g in RuleVerifier().grade(case, rubric, tr)}
    return rubric, grades


def test_contraindication_said_vs_avoided(cases):
    case = cases[REF]
    _, g = _grade(case, ["DIAGNOSIS: inferior STEMI. PLAN: aspirin and a GTN spray under the tongue."])
    assert g["contraindicated_0"].met
    _, g = _grade(case, ["DIAGNOSIS: inferior STEMI. PLAN: aspirin now; no GTN because you took Viagra."])
    assert not g["contraindicated_0"].met
    assert g["diagnosis"].met


def test_order_diagnosis_before_history(cases):
    case = cases[REF]
    _, g = _grade(case, ["I think you're having a heart attack.", "Does the pain go into your arm or jaw?"])
    assert g["premature_diagnosis"].met
    _, g = _grade(case, ["Does the pain go into your arm or jaw?", "I think you're having a heart attack."])
    assert not g["premature_diagnosis"].met


def test_only_doctor_turns_count(cases):
    case = cases[REF]
    rubric = RuleRubricGenerator().generate(case, 0)
    tr = Transcript([("patient", "Is it a heart attack? Should I take my GTN?"), ("doctor", "Let's see.")])
    g = {x.criterion_id: x for x in RuleVerifier().grade(case, rubric, tr)}
    assert not g["diagnosis"].met and not g["contraindicated_0"].met
    with pytest.raises(ValueError, match="no doctor turn"):
        RuleVerifier().grade(case, rubric, Transcript([("patient", "hello")]))


def test_good_and_bad_probes_separate(cases):
    gen, ver = RuleRubricGenerator(), RuleVerifier()
    gaps = []
    for case in list(cases)[::9]:
        r = gen.generate(case, 0)
        good = score_grades(r, ver.grade(case, r, good_consultation(case)))["overall_score"]
        bad = score_grades(r, ver.grade(case, r, bad_consultation(case)))["overall_score"]
        gaps.append(good - bad)
        assert good > bad, case.id
    assert np.mean(gaps) >= 0.4


# ------------------------------------------------------------------------------------------- LLM verifier


def test_parse_judgement_is_robust():
    assert (
        parse_judgement('```json\n{"explanation": "ok", "criteria_met": true}\n```')["criteria_met"] is True
    )
    assert (
        parse_judgement('Sure! {"criteria_met": false, "explanation": "no"} hope that helps')["criteria_met"]
        is False
    )
    assert parse_judgement('{"criteria_met": "yes"}') is None
    assert parse_judgement("I cannot grade this.") is None


def test_llm_verifier_batches_retries_and_bounds(cases):
    case = cases[REF]
    rubric = RuleRubricGenerator().generate(case, 0)
    calls = {"n": 0}

    def judge(conv):
        calls["n"] += 1
        text = conv[0]["content"]
        if "garbage" in text and calls["n"] <= len(rubric.criteria) * 2:
            return "not json"
        return json.dumps({"explanation": "x", "criteria_met": "[-" in text})  # met iff negative criterion

    model = CallableChatModel(judge)
    v = LLMVerifier(model, max_retries=2)
    tr = Transcript([("patient", "pain"), ("doctor", "garbage in, garbage out")])
    grades = v.grade(case, rubric, tr)
    assert len(grades) == len(rubric.criteria)
    assert all(g.met == (c.points < 0) for g, c in zip(grades, rubric.criteria, strict=True))
    assert len(model.calls) == 3 and len(model.calls[0]) == len(rubric.criteria)  # one batched call per round
    assert v.stats["retries"] > 0 and v.stats["unparsable"] == 0

    never = LLMVerifier(CallableChatModel(lambda c: "nope"), max_retries=1)
    grades = never.grade(case, rubric, tr)
    assert not any(g.met for g in grades) and never.stats["unparsable"] == len(rubric.criteria)
    assert "unparsable after 2 attempts" in grades[0].explanation


def test_llm_verifier_groups_requests_sharing_a_transcript():
    model = CallableChatModel(lambda c: '{"criteria_met": true, "explanation": ""}')
    v = LLMVerifier(model)
    a = [{"role": "user", "content": "A"}, {"role": "assistant", "content": "a"}]
    b = [{"role": "user", "content": "B"}, {"role": "assistant", "content": "b"}]
    v.grade_requests([(a, "c1", 1), (b, "c1", 1), (a, "c2", 1), (b, "c2", 1)])
    sent = [conv[0]["content"] for conv in model.calls[0]]
    owners = ["A" if "user: A" in s else "B" for s in sent]
    assert owners == sorted(owners)


# ------------------------------------------------------------------------------------------- LLM generator


def test_llm_generator_validates_retries_and_dedups(cases):
    case = cases[REF]
    replies = iter(
        [
            "Here you go: [not json",
            json.dumps(
                [
                    {
                        "text": "Names the correct diagnosis: acute inferior ST-elevation myocardial infarction.",
                        "points": 9,
                        "axis": "accuracy",
                        "dimension": "diagnostic_accuracy",
                    },
                    {
                        "text": "Asks whether the pain is worse on exertion.",
                        "points": 3,
                        "axis": "completeness",
                        "dimension": "consultation_logic",
                    },
                    {
                        "text": "Zero points item",
                        "points": 0,
                        "axis": "accuracy",
                        "dimension": "ethics_safety",
                    },
                    {"text": "Too many", "points": 12, "axis": "accuracy", "dimension": "ethics_safety"},
                ]
            ),
        ]
    )
    gen = LLMRubricGenerator(CallableChatModel(lambda conv: next(replies)), max_retries=2)
    rubric = gen.generate(case)
    base = RuleRubricGenerator().generate(case)
    extra = [c for c in rubric.criteria if c.id.startswith("llm_")]
    assert [c.text for c in extra] == [
        "Asks whether the pain is worse on exertion."
    ]  # duplicate of a rule one dropped
    assert len(rubric.criteria) == len(base.criteria) + 1
    assert any("malformed JSON" in p or "no JSON list" in p for p in gen.problems)
    assert any("points" in p for p in gen.problems)


# ------------------------------------------------------------------------------------------- replay and harness


def _write_healthbench(tmp_path):
    ex = []
    for i in range(3):
        ex.append(
            {
                "prompt": [{"role": "user", "content": f"question {i}"}],
                "prompt_id": f"p{i}",
                "rubrics": [
                    {
                        "criterion": "Advises urgent care.",
                        "points": 6,
                        "tags": ["level:example", "axis:accuracy"],
                    },
                    {
                        "criterion": "Asks a clarifying question.",
                        "points": 4,
                        "tags": ["level:example", "axis:context_awareness"],
                    },
                    {
                        "criterion": "Gives a dangerous dose.",
                        "points": -5,
                        "tags": ["level:example", "axis:accuracy"],
                    },
                ],
                "example_tags": ["theme:emergency_referrals"],
                "ideal_completions_data": None,
                "canary": "x",
            }
        )
    lines = [json.dumps(e) for e in ex]
    lines.insert(1, "{broken json")
    lines.append(json.dumps({"prompt_id": "p9", "rubrics": []}))
    data = tmp_path / "hb.jsonl"
    data.write_text("\n".join(lines) + "\n")
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        "".join(json.dumps({"prompt_id": f"p{i}", "response": f"answer {i}"}) + "\n" for i in range(3))
    )
    labels = tmp_path / "labels.jsonl"
    met = {"p0": [True, True, False], "p1": [True, False, True], "p2": [False, False, False]}
    rows = []
    for pid, ms in met.items():
        for j, m in enumerate(ms):
            rows.append({"prompt_id": pid, "criterion_index": j, "criteria_met": m})
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, responses, labels


def test_load_healthbench_reports_bad_lines(tmp_path):
    data, _, _ = _write_healthbench(tmp_path)
    examples, errors = load_healthbench(data)
    assert [e.prompt_id for e in examples] == ["p0", "p1", "p2"]
    assert [(e["line"], e["error"].split(":")[0]) for e in errors] == [(2, "not JSON"), (5, "missing key(s)")]


def test_harness_with_replay_grader_scores_and_resumes(tmp_path):
    data, responses, labels = _write_healthbench(tmp_path)
    from clinic_env.rubrics.healthbench import load_responses

    out = tmp_path / "out"
    s = run_healthbench(data, out, grader=ReplayGrader(labels), responses=load_responses(responses))
    scores = [1.0, (6 - 5) / 10, 0.0]
    assert s["overall_score"] == pytest.approx(np.mean(scores))
    assert s["theme:emergency_referrals"] == pytest.approx(np.mean(scores))
    assert s["axis:accuracy"] == pytest.approx(np.mean([1.0, 1 / 6, 0.0]))
    assert s["score:n_samples"] == 3 and "axis:context_awareness:bootstrap_std" in s
    assert s["n_input_errors"] == 2 and len((out / "errors.jsonl").read_text().splitlines()) == 2
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    # Resume: drop the last line as a crash would; only that example is graded again.
    (out / "results.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    s2 = run_healthbench(data, out, grader=ReplayGrader(labels), responses=load_responses(responses))
    assert s2["overall_score"] == pytest.approx(s["overall_score"])
    good = [
        json.loads(x)
        for x in (out / "results.jsonl").read_text().splitlines()
        if x.startswith('{"prompt_id"') and x.endswith("}")
    ]
    assert sorted(r["prompt_id"] for r in good) == ["p0", "p1", "p2"]


def test_harness_with_llm_policy_and_grader(tmp_path):
    data, _, _ = _write_healthbench(tmp_path)
    policy = CallableChatModel(lambda conv: "Please go to urgent care now.")
    judge = CallableChatModel(
        lambda conv: (
            '{"explanation": "", "criteria_met": %s}'
            % ("true" if "urgent care" in conv[0]["content"].split("# Rubric item")[1] else "false")
        )
    )
    s = run_healthbench(data, tmp_path / "o", grader=LLMVerifier(judge, consultation=False), policy=policy)
    assert s["overall_score"] == pytest.approx(0.6)
    assert len(judge.calls) == 1 and len(judge.calls[0]) == 9  # all criteria of the batch in one call


def test_replay_grader_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_id": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1") as info:
        ReplayGrader(bad)
    assert "bad.jsonl:2" in str(info.value)
    with pytest.raises(FileNotFoundError):
        ReplayGrader(tmp_path / "none.jsonl")


def test_cli_rubric_show_grade_and_healthbench(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["rubric", "show", REF, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["case_id"] == REF
    tr = tmp_path / "t.json"
    tr.write_text(
        json.dumps([{"role": "doctor", "content": "DIAGNOSIS: inferior STEMI. PLAN: aspirin, primary PCI."}])
    )
    res = runner.invoke(app, ["rubric", "grade", REF, str(tr), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["score"] > 0
    data, responses, labels = _write_healthbench(tmp_path)
    res = runner.invoke(
        app,
        [
            "healthbench",
            "--data",
            str(data),
            "--responses",
            str(responses),
            "--grader",
            f"replay:{labels}",
            "--out",
            str(tmp_path / "cli"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["score:n_samples"] == 3
    res = runner.invoke(
        app,
        [
            "healthbench",
            "--data",
            str(data),
            "--grader",
            "gpt",
            "--out",
            str(tmp_path / "x"),
            "--responses",
            str(responses),
        ],
    )
    assert res.exit_code == 2 and "must start with 'llm:' or 'replay:'" in res.output
