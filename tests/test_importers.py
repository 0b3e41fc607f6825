"""Case importers (AgentClinic OSCE and NEJM, MediQ, HealthBench), ``clinic-env cases import`` and the HealthBench
single-turn mode of ``ConsultationEnv``.

Fixtures under ``tests/data/importers/`` are small records written for these tests (good and broken ones). The real
sample files in ``../shared/data`` are read only when that folder exists.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinic_env.cases import check_cases, load_cases
from clinic_env.cases.importers import FORMATS, ImportInputError, import_file, sidecar_paths
from clinic_env.cases.importers import _nlp as nlp
from clinic_env.cases.importers import runner as import_runner
from clinic_env.cases.library_rules import library_problems
from clinic_env.cli import app
from clinic_env.llm import CallableChatModel
from clinic_env.patient import PatientSimulator
from clinic_env.patient import lexicon as lx

DATA = Path(__file__).parent / "data" / "importers"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (real sample files) is absent")
FIXTURES = {
    "agentclinic": "agentclinic.jsonl",
    "agentclinic-nejm": "agentclinic_nejm.jsonl",
    "mediq": "mediq.jsonl",
    "healthbench": "healthbench.jsonl",
}
# (imported, {line: words the error must contain})
EXPECTED = {
    "agentclinic": (2, {3: "Correct_Diagnosis", 4: "not valid JSON", 5: "sex", 6: "JSON object"}),
    "agentclinic-nejm": (2, {3: "exactly one option correct", 4: "question"}),
    "mediq": (2, {3: "does not match options", 4: "no 'facts' or 'context'"}),
    "healthbench": (2, {3: "no positive points", 4: "prompt_id", 5: "duplicate case id"}),
}
runner = CliRunner()


def _import(tmp_path: Path, fmt: str, **kw):
    out = tmp_path / f"{fmt}.jsonl"
    return import_file(DATA / FIXTURES[fmt], out, fmt, **kw), out


def _names_diagnosis(case) -> list[tuple[str, str]]:
    return [p for p in library_problems(case) if "names the diagnosis" in p[1]]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.mark.parametrize("fmt", list(FIXTURES))
def test_fixture_records_import_or_get_a_per_record_error(tmp_path, fmt):
    report, out = _import(tmp_path, fmt)
    n_ok, want = EXPECTED[fmt]
    assert report.n_imported == n_ok and report.n_records == n_ok + len(want)
    got = {e["line"]: e["error"] for e in report.errors}
    assert set(got) == set(want)
    for line, words in want.items():
        assert words in got[line], (line, got[line])
    errors_p, report_p = sidecar_paths(out)
    on_disk = [json.loads(x) for x in errors_p.read_text().splitlines()]
    assert [e["line"] for e in on_disk] == sorted(want) and all(e["error"] for e in on_disk)
    summary = json.loads(report_p.read_text())
    assert (summary["records"], summary["imported"], summary["failed"]) == (n_ok + len(want), n_ok, len(want))
    cases = load_cases(out)  # the schema only: the library's minimums do not apply to imported cases
    assert len(cases) == n_ok
    assert all(c.source.kind.value == "imported" and c.source.licence for c in cases)
    assert not check_cases(out, library=False)[1]
    assert check_cases(out, library=True)[1], "imported cases are thinner than the library's minimums"


def test_unmapped_fields_are_kept_under_extra(tmp_path):
    ac = load_cases(_import(tmp_path, "agentclinic")[1])[0]
    assert ac.extra["agentclinic"]["Custom_Field"] == {"difficulty": "easy"}
    assert ac.extra["agentclinic"]["Patient_Actor"] == {"Hobbies": "Plays the trumpet in a brass band."}
    assert ac.extra["agentclinic"]["Objective_for_Doctor"].startswith("Assess the patient")
    skipped = ac.extra["importer"]["skipped"]
    assert skipped == [
        {"section": "Review_of_Systems", "text": "Information not provided.", "why": "placeholder text"}
    ]
    nejm = load_cases(_import(tmp_path, "agentclinic-nejm")[1])[0]
    assert nejm.extra["nejm"]["difficulty_note"] == "kept under extra"
    assert nejm.extra["nejm"]["image_url"].startswith("https://example.org")
    assert nejm.source.original_id == "TEST0001"
    mq = load_cases(_import(tmp_path, "mediq")[1])[0]
    assert mq.extra["mediq"]["explanation"] == "" and mq.extra["mediq"]["options"]["B"] == "Ectopic pregnancy"
    assert mq.extra["mediq"]["patient"]["specialties"] == ["Obstetrics and Gynecology", "Emergency Medicine"]
    hb = load_cases(_import(tmp_path, "healthbench")[1])[0]
    assert (
        hb.extra["healthbench"]["canary"] == "test-canary"
        and "ideal_completions_data" in hb.extra["healthbench"]
    )


def test_agentclinic_mapping(tmp_path):
    cases = load_cases(_import(tmp_path, "agentclinic")[1])
    adult, child = cases
    assert adult.demographics.age_years == 58 and adult.demographics.sex.value == "male"
    assert adult.specialty.value == "respiratory"
    by_text = {f.clinician_text: f for f in adult.facts}
    primary = by_text["Cough with rusty sputum."]
    assert primary.essential and primary.id in adult.opening_facts and "cough" in primary.concepts
    assert adult.opening_statement == "Hello doctor. I've come in because of cough with rusty sputum."
    neg = {f.clinician_text: f for f in adult.facts if f.pertinent_negative}
    assert {"Denies headache.", "Denies neck stiffness.", "Denies rash."} <= set(neg)
    assert not any(f.essential for f in neg.values())
    assert neg["Denies headache."].patient_text == "No, I haven't had headache."
    assert by_text["Smokes 15 cigarettes a day."].category.value == "substance"
    assert by_text["Works as a bus driver."].patient_text == "I work as a bus driver."
    assert adult.persona.occupation == "bus driver"
    # Exam: vital signs as one abnormal finding (fever, tachycardia), each respiratory leaf its own finding.
    exam = {e.name: e for e in adult.exam}
    assert exam["Vital signs"].system.value == "vitals" and exam["Vital signs"].abnormal
    assert exam["Respiratory examination: auscultation"].system.value == "respiratory"
    assert not exam["Cardiovascular examination"].abnormal
    tests = {t.name: t for t in adult.tests}
    assert "Full blood count" in tests["Complete blood count"].synonyms  # a catalogue order reaches it
    assert tests["Chest x-ray"].kind.value == "imaging"
    assert set(adult.diagnosis.key_evidence) >= {primary.id, exam["Vital signs"].id, tests["Chest x-ray"].id}
    # A child: the parent speaks, about "my daughter".
    assert child.persona.speaker.value == "parent" and child.persona.speaker_name
    assert child.opening_statement == "Hello doctor. I've brought my daughter in because of left ear pain."
    assert "No, she hasn't had vomiting." in [f.patient_text for f in child.facts]


def test_the_patient_never_names_the_diagnosis(tmp_path):
    case = load_cases(_import(tmp_path, "agentclinic")[1])[0]
    assert not _names_diagnosis(case)
    redacted = case.extra["importer"]["redacted"]
    fields = [r["field"] for r in redacted]
    assert "patient_text" in fields and "tests[Chest x-ray]" in fields
    family = next(f for f in case.facts if f.category.value == "family")
    assert "community-acquired pneumonia" in family.clinician_text.lower()
    assert "community-acquired" not in family.patient_text.lower()
    xray = next(t for t in case.tests if t.name == "Chest x-ray")
    assert "[diagnosis withheld]" in xray.value and "pneumonia" in (xray.interpretation or "")
    sim = PatientSimulator()
    sim.reset(case, 0)
    turn = sim.respond("Has anyone in your family been ill with a chest infection?  TEST: chest x-ray")
    text = turn.observation.lower()
    assert "community-acquired pneumonia" not in text and "diagnosis withheld" in text


def test_rule_patient_answers_plain_questions_about_an_imported_case(tmp_path):
    case = load_cases(_import(tmp_path, "agentclinic")[1])[0]
    sim = PatientSimulator()
    opening = sim.reset(case, 0)
    assert "cough" in opening.lower()
    texts = {f.id: f.clinician_text for f in case.facts}

    def released(question: str) -> list[str]:
        return [texts[i] for i in sim.respond(question).disclosed]

    assert any("4 days of fever" in t for t in released("When did the cough start?"))
    assert any("worse when he breathes in" in t for t in released("Is there anything that makes it worse?"))
    assert released("Do you smoke?") == ["Smokes 15 cigarettes a day."]
    assert released("What do you do for work?") == ["Works as a bus driver."]
    assert released("Any headaches?") == ["Denies headache."]
    assert released("Do you have any allergies?") == ["Denies drug allergies."]
    assert any("metformin" in t for t in released("Do you take any medication?"))
    # Ordering a listed test returns the case's result; a catalogue name reaches the case's own test.
    turn = sim.respond("I'd like to order a full blood count and a chest x-ray.")
    assert any(x.startswith("Complete blood count: WBC: 16,200") for x in turn.examiner)
    assert any(x.startswith("Chest x-ray: Right lower lobe consolidation") for x in turn.examiner)
    turn = sim.respond("Let me listen to your chest.")
    assert any("Bronchial breathing" in x for x in turn.examiner)
    turn = sim.respond("TEST: C-reactive protein")
    assert turn.examiner == ("C reactive protein: 182 mg/L (elevated)",)


def test_nejm_mapping(tmp_path):
    first, second = load_cases(_import(tmp_path, "agentclinic-nejm")[1])
    assert first.diagnosis.primary == "Erythema migrans"
    assert [d.name for d in first.diagnosis.differential] == ["Tinea corporis", "Cellulitis"]
    assert first.source.name == "AgentClinic NEJM" and first.source.licence == "MIT"
    # The brief is second person; the patient says it in the first person, the meta instructions are skipped.
    said = " ".join(f.patient_text for f in first.facts)
    assert "I went hiking in the woods three weeks ago." in said
    assert "your role" not in said.lower() and "remember" not in said.lower()
    assert any(e.system.value == "skin" and "central clearing" in e.finding for e in first.exam)
    assert "(left)" not in " ".join(e.finding for e in first.exam)  # image-panel references are dropped
    assert second.exam and second.exam[0].system.value == "eye"


def test_mediq_mapping_and_answer_kinds(tmp_path):
    diag, treat = load_cases(_import(tmp_path, "mediq")[1])
    assert diag.id == "mediq-101" and diag.source.original_id == "101" and diag.source.licence == "CC BY 4.0"
    assert diag.specialty.value == "obstetrics_gynaecology"  # the source's most probable specialty
    assert diag.extra["mediq"]["answer_kind"] == "diagnosis"
    assert diag.diagnosis.primary == "Ectopic pregnancy" and len(diag.diagnosis.differential) == 3
    sexual = next(f for f in diag.facts if f.category.value == "sexual")
    assert sexual.sensitive and "sexually active" in sexual.patient_text
    assert any(t.name == "Urine pregnancy test" and "Pregnancy test" in t.synonyms for t in diag.tests)
    assert {e.system.value for e in diag.exam} == {"vitals", "abdominal"}
    assert treat.extra["mediq"]["answer_kind"] == "treatment"
    assert [t.name for t in treat.management.first_line] == [
        "Omeprazole"
    ] and not treat.diagnosis.differential
    assert sorted(f.patient_text for f in treat.facts if f.pertinent_negative) == [
        "No, I haven't had black stools.",
        "No, I haven't had vomiting.",
        "No, I haven't had weight loss.",
    ]


def test_healthbench_records_become_single_turn_tasks(tmp_path):
    single, multi = load_cases(_import(tmp_path, "healthbench")[1])
    assert single.id == "healthbench-3f2a-0001" and single.extra["task"] == "healthbench_single_turn"
    assert single.opening_statement.startswith("I'm a 29 year old woman")
    assert single.demographics.age_years == 29 and single.demographics.sex.value == "female"
    assert (
        multi.opening_statement.startswith("user: My dad collapsed")
        and "\n\nassistant: " in multi.opening_statement
    )
    assert multi.extra["healthbench"]["rubrics"][0]["points"] == 10


# ------------------------------------------------------------------------------------------ robustness


def test_no_partial_output_when_the_import_crashes(tmp_path, monkeypatch):
    out = tmp_path / "cases.jsonl"
    out.write_text("previous contents\n")
    calls = {"n": 0}
    real = import_runner._dump

    def flaky(case):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return real(case)

    monkeypatch.setattr(import_runner, "_dump", flaky)
    with pytest.raises(OSError, match="disk full"):
        import_file(DATA / "agentclinic.jsonl", out, "agentclinic")
    assert out.read_text() == "previous contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.jsonl"]  # no temporary file left behind

    def interrupted(case):
        raise KeyboardInterrupt

    monkeypatch.setattr(import_runner, "_dump", interrupted)
    fresh = tmp_path / "fresh.jsonl"
    with pytest.raises(KeyboardInterrupt):
        import_file(DATA / "mediq.jsonl", fresh, "mediq")
    assert not fresh.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cases.jsonl"]


def test_a_converter_bug_is_reported_on_its_record_and_the_rest_import(tmp_path, monkeypatch):
    real = FORMATS["mediq"].convert

    def buggy(rec, ctx):
        if rec.get("id") == "q-7":
            raise ZeroDivisionError("simulated bug")
        return real(rec, ctx)

    monkeypatch.setitem(FORMATS, "mediq", dataclasses.replace(FORMATS["mediq"], convert=buggy))
    report, out = _import(tmp_path, "mediq")
    assert report.n_imported == 1
    bug = next(e for e in report.errors if e["line"] == 2)
    assert "internal importer error (ZeroDivisionError: simulated bug)" in bug["error"]
    assert bug["original_id"] == "q-7"


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ImportInputError, match="unknown format 'osce'; use one of: agentclinic"):
        import_file(DATA / "mediq.jsonl", tmp_path / "o.jsonl", "osce")
    with pytest.raises(ImportInputError, match="does not exist"):
        import_file(tmp_path / "missing.jsonl", tmp_path / "o.jsonl", "mediq")
    with pytest.raises(ImportInputError, match="is a folder"):
        import_file(tmp_path, tmp_path / "o.jsonl", "mediq")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ImportInputError, match="empty"):
        import_file(empty, tmp_path / "o.jsonl", "mediq")
    with pytest.raises(ImportInputError, match="does not apply to 'healthbench'"):
        import_file(
            DATA / "healthbench.jsonl", tmp_path / "o.jsonl", "healthbench", llm=CallableChatModel(str)
        )
    with pytest.raises(ImportInputError, match="id prefix"):
        import_file(DATA / "mediq.jsonl", tmp_path / "o.jsonl", "mediq", id_prefix="Bad Prefix")


def test_all_failed_leaves_no_output(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\nnot json\n')
    report = import_file(bad, tmp_path / "o.jsonl", "mediq")
    assert report.n_imported == 0 and report.n_failed == 2 and report.output is None
    assert not (tmp_path / "o.jsonl").exists() and (tmp_path / "o.errors.jsonl").exists()


def test_default_sex_fills_in_a_missing_sex_as_a_placeholder(tmp_path):
    report, out = _import(tmp_path, "agentclinic", default_sex="female")
    assert report.n_imported == 3
    case = load_cases(out)["agentclinic-0005"]
    assert case.demographics.sex.value == "female"
    assert any("demographics.sex = female" in p for p in case.extra["importer"]["placeholder"])


# ------------------------------------------------------------------------------------------ CLI


def test_cli_import_exit_codes_and_messages(tmp_path):
    out = tmp_path / "ac.jsonl"
    res = runner.invoke(
        app, ["cases", "import", str(DATA / "agentclinic.jsonl"), "--format", "agentclinic", "-o", str(out)]
    )
    assert res.exit_code == 1, res.output
    assert "2 of 6 records imported" in res.output and "agentclinic.jsonl:3:" in res.output
    assert out.exists() and (tmp_path / "ac.errors.jsonl").exists() and (tmp_path / "ac.report.json").exists()
    good = tmp_path / "good.jsonl"
    good.write_text("".join(DATA.joinpath("mediq.jsonl").read_text().splitlines(keepends=True)[:2]))
    res = runner.invoke(app, ["cases", "import", str(good), "-f", "mediq", "-o", str(tmp_path / "mq.jsonl")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mq.errors.jsonl").read_text() == ""
    res = runner.invoke(app, ["cases", "import", str(good), "-f", "medqa", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "unknown format 'medqa'" in res.output
    res = runner.invoke(
        app, ["cases", "import", str(tmp_path / "nope.jsonl"), "-f", "mediq", "-o", str(tmp_path / "x.jsonl")]
    )
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(
        app, ["cases", "import", str(good), "-f", "mediq", "-o", str(tmp_path / "x.jsonl"), "--llm", "gpt"]
    )
    assert res.exit_code == 2 and "cannot load the --llm model" in res.output
    res = runner.invoke(app, ["cases", "validate", str(out)])
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------------------------ --llm


def _structured_reply(conv) -> str:
    text = conv[1]["content"]
    assert text.startswith("Vignette:")
    return json.dumps(
        {
            "history": [
                {
                    "clinician_text": "Burning epigastric pain for 3 months, worse after meals.",
                    "patient_text": "I've had a burning pain in my upper tummy for three months.",
                    "category": "hpi",
                },
                {
                    "clinician_text": "Takes ibuprofen daily for back pain.",
                    "patient_text": "I take ibuprofen every day for my back.",
                    "category": "medication",
                },
                {
                    "clinician_text": "No vomiting.",
                    "patient_text": "No, I haven't been sick.",
                    "category": "ros",
                    "negative": True,
                },
            ],
            "exam": [],
            "tests": [],
        }
    )


def _one_record(tmp_path: Path) -> Path:
    src = tmp_path / "one.jsonl"
    src.write_text(DATA.joinpath("mediq.jsonl").read_text().splitlines(keepends=True)[1])
    return src


def test_llm_structures_the_vignette(tmp_path):
    model = CallableChatModel(_structured_reply)
    report = import_file(_one_record(tmp_path), tmp_path / "o.jsonl", "mediq", llm=model)
    assert report.n_imported == 1 and report.llm == {
        "model": "callable",
        "requests": 1,
        "retries": 0,
        "failed": 0,
    }
    case = load_cases(tmp_path / "o.jsonl")[0]
    said = {f.patient_text: f for f in case.facts}
    assert "I take ibuprofen every day for my back." in said
    assert said["I take ibuprofen every day for my back."].category.value == "medication"
    assert "nsaid" in said["I take ibuprofen every day for my back."].concepts  # concept keys by our rules
    assert said["No, I haven't been sick."].pertinent_negative
    assert any("structured by the LLM" in n for n in case.extra["importer"]["inferred"])


def test_llm_invalid_json_is_retried_then_a_per_record_error(tmp_path):
    replies = iter(["Sure! Here you go: {not json", _structured_reply])

    def flaky(conv):
        r = next(replies)
        return r(conv) if callable(r) else r

    model = CallableChatModel(flaky)
    report = import_file(_one_record(tmp_path), tmp_path / "o.jsonl", "mediq", llm=model, max_retries=2)
    assert report.n_imported == 1 and report.llm["retries"] == 1 and len(model.calls) == 2
    retry_conv = model.calls[1][0]
    assert retry_conv[-1]["role"] == "user" and "not valid" in retry_conv[-1]["content"]

    bad = CallableChatModel(lambda conv: '{"history": [{"clinician_text": "x", "category": "gossip"}]}')
    report = import_file(_one_record(tmp_path), tmp_path / "p.jsonl", "mediq", llm=bad, max_retries=1)
    assert report.n_imported == 0 and len(bad.calls) == 2
    assert "failed validation after 2 attempt(s)" in report.errors[0]["error"]
    assert "category" in report.errors[0]["error"]


# ------------------------------------------------------------------------------------------ env


def _judge(conv) -> str:
    item = conv[0]["content"].split("# Rubric item", 1)[1]  # judge the rubric item, not the conversation
    met = "red flag" in item or "chest compressions" in item
    return json.dumps({"explanation": "scripted judge", "criteria_met": met})


def test_healthbench_single_turn_episode(tmp_path):
    from clinic_env.env import ConsultationEnv
    from clinic_env.rubrics import LLMVerifier
    from clinic_env.rubrics.verify import CONSULTATION_NOTE

    out = _import(tmp_path, "healthbench")[1]
    judge = CallableChatModel(_judge, name="judge")
    env = ConsultationEnv(cases=out, verifier=LLMVerifier(judge), log_path=tmp_path / "log.jsonl")
    obs, info = env.reset(seed=0, options={"case_id": "healthbench-3f2a-0001"})
    assert obs.startswith("I'm a 29 year old woman")
    assert info["messages"] == [{"role": "user", "content": obs}]
    obs, reward, terminated, truncated, info = env.step(
        "Do you have a fever, neck stiffness or any change in vision?"
    )
    # The judge meets only the +6 red-flag criterion: 6 / (6 + 5); the -4 criterion is not met.
    assert terminated and not truncated and obs == ""
    assert reward == pytest.approx(6 / 11) and info["score"] == pytest.approx(6 / 11)
    assert [r["met"] for r in info["rubric"]] == [True, False, False]
    assert info["score_breakdown"]["axis:completeness"] == pytest.approx(1.0)
    assert info["termination_reason"] == "healthbench_reply"
    assert info["messages"][-1] == {
        "role": "assistant",
        "content": "Do you have a fever, neck stiffness or any change in vision?",
    }
    prompts = [c[0]["content"] for c in judge.calls[0]]
    assert len(judge.calls) == 1 and len(prompts) == 3  # one batched call, one request per criterion
    assert all(CONSULTATION_NOTE not in p for p in prompts)  # HealthBench's own grading prompt
    assert any("[6] Asks about red flag" in p and "any change in vision" in p for p in prompts)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again")
    logged = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert logged["score"] == pytest.approx(6 / 11)

    obs, info = env.reset(seed=1, options={"case_id": "healthbench-3f2a-0002"})
    assert obs.startswith("user: My dad collapsed") and len(info["messages"]) == 3
    _, reward, terminated, _, info = env.step(
        "Start chest compressions now: push hard and fast in the centre of the chest."
    )
    assert (
        terminated
        and reward == pytest.approx(1.0)
        and info["score_breakdown"]["theme:emergency_referrals"] == 1.0
    )


def test_healthbench_episode_with_replayed_labels(tmp_path):
    from clinic_env.env import ConsultationEnv
    from clinic_env.rubrics import ReplayGrader

    out = _import(tmp_path, "healthbench")[1]
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps({"prompt_id": "3f2a-0001", "criterion_index": i, "criteria_met": m}) + "\n"
            for i, m in enumerate([False, True, True])
        )
    )
    env = ConsultationEnv(cases=out, verifier=ReplayGrader(labels))
    env.reset(options={"case_id": "healthbench-3f2a-0001"})
    _, reward, terminated, _, _ = env.step("It is a migraine.")
    assert terminated and reward == pytest.approx((5 - 4) / 11)


def test_healthbench_tasks_need_a_grader(tmp_path):
    from clinic_env.env import ConsultationEnv

    out = _import(tmp_path, "healthbench")[1]
    with pytest.raises(ValueError, match=r"LLMVerifier\(chat_model\).*ReplayGrader"):
        ConsultationEnv(cases=out)


def test_imported_consultation_case_runs_in_the_env(tmp_path):
    from clinic_env.env import ConsultationEnv

    out = _import(tmp_path, "agentclinic")[1]
    env = ConsultationEnv(cases=out, max_turns=5)
    obs, info = env.reset(seed=0, options={"case_id": "agentclinic-0001"})
    assert "cough" in obs
    obs, reward, terminated, truncated, info = env.step(
        "DIAGNOSIS: community-acquired pneumonia. PLAN: refer to a specialist."
    )
    assert terminated and info["termination_reason"] == "diagnosis_and_plan"
    diag = next(r for r in info["rubric"] if r["id"] == "diagnosis")
    assert diag["met"]


# ------------------------------------------------------------------------------------------ rules


def test_concept_keys_come_from_the_lexicon():
    assert set(nlp.EXTRA_CONCEPT_PHRASES) <= set(lx.CONCEPTS)
    assert nlp.concepts_for("Non-smoker, drinks wine occasionally.") == ["smoking", "alcohol"]
    assert nlp.concepts_for("She has been on natalizumab 300 mg for a year.") == ["medications"]
    assert "pain.onset" in nlp.concepts_for("A 3-week history of neck swelling.", detail=True)


def test_text_rules():
    assert nlp.negated_items("Patient denies any chest pain, palpitations, or recent infections.") == [
        "chest pain",
        "palpitations",
        "recent infections",
    ]
    assert nlp.negated_items("No significant past medical or surgical history.") == [
        "past medical history",
        "surgical history",
    ]
    assert nlp.negated_items("She reports a cough.") is None
    assert nlp.abnormal_cue("Normal, no thymoma or other masses detected.") is False
    assert nlp.abnormal_cue("No fever, but elevated CRP.") is True
    assert nlp.abnormal_cue("12 g/dL") is None
    assert nlp.diagnosis_names("Progressive multifocal leukoencephalopathy (PML)") == (
        "Progressive multifocal leukoencephalopathy",
        ["PML"],
    )
    assert "Acute lymphoblastic leukaemia" in nlp.diagnosis_names("Acute lymphoblastic leukemia")[1]
    assert nlp.catalog_matches("CBC with differential") == ["Full blood count"]
    assert nlp.catalog_matches("Bone marrow aspirate") == []
    assert nlp.to_first_person("The patient has been experiencing swelling in his neck.") == (
        "I've been experiencing swelling in my neck."
    )


# ------------------------------------------------------------------------------------------ real samples


@needs_shared
@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("fmt", "name", "total"),
    [
        ("agentclinic", "agentclinic_medqa.jsonl", 107),
        ("agentclinic-nejm", "agentclinic_nejm.jsonl", 15),
        ("mediq", "mediq_sample.jsonl", 20),
    ],
)
def test_real_samples_import(tmp_path, fmt, name, total):
    out = tmp_path / f"{fmt}.jsonl"
    report = import_file(SHARED / name, out, fmt)
    assert report.n_records == total
    if fmt == "agentclinic":
        # Two records state neither sex nor a pronoun ("3-year-old child", a newborn): clear per-record errors.
        assert report.n_imported == total - 2
        assert all("sex" in e["error"] and "--default-sex" in e["error"] for e in report.errors)
        report = import_file(SHARED / name, out, fmt, default_sex="female")
    assert report.n_imported == total and not report.errors
    cases = load_cases(out)
    assert len(cases) == total
    for case in cases:
        assert not _names_diagnosis(case), case.id
        assert case.facts and case.opening_statement
    sim = PatientSimulator()
    for case in list(cases)[:10]:
        sim.reset(case, 0)
        turn = sim.respond("Any past medical problems? Do you take any medicines?")
        assert not [v for v in turn.violations if v.startswith("diagnosis")], case.id
