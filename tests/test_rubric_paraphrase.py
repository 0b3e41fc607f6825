"""The rule verifier's paraphrase, coreference and closing-phase handling, and the dev2 hand-labelled set."""

from __future__ import annotations

import json
from pathlib import Path

import clinic_env
from benchmarks.rubric_validation import is_dev
from clinic_env.rubrics import RuleRubricGenerator, RuleVerifier, Transcript
from clinic_env.rubrics.generate import RECOMMEND_CUES
from clinic_env.rubrics.paraphrase import expand, parts
from clinic_env.rubrics.verify import mentions

DATA = Path(__file__).resolve().parent / "data"


def _affirmative(text: str, terms, cues=()) -> bool:
    return any(not neg for _, neg in mentions(text, terms, cues))


def test_expand_adds_knowledge_base_synonyms_drug_members_and_lay_forms():
    assert "kidney stone" in expand(["Renal colic"])
    assert "ramipril" in expand(["ACE inhibitors"])
    assert "heart attack" in expand(["ST-elevation myocardial infarction"])
    # a knowledge-base condition name brings its synonyms
    assert "viral pericarditis" in expand(["Acute pericarditis"])
    # generic organ words are substituted inside a term, never added alone
    assert "kidney" not in expand(["Renal colic"])
    # a reason clause is not the treatment: "(because a beta-blocker is unsuitable)" adds no beta-blocker
    assert "bisoprolol" not in expand(
        ["Rate-limiting calcium-channel blocker (because a beta-blocker is unsuitable)"]
    )
    assert "diltiazem" in expand(
        ["Rate-limiting calcium-channel blocker (because a beta-blocker is unsuitable)"]
    )
    # contraindications take drug members only, not procedure lay forms
    assert "drip" not in expand(["Large-volume intravenous saline"], drugs_only=True)


def test_co_occurrence_terms_match_in_any_order_within_a_clause():
    assert parts("gallbladder & inflam") == ("gallbladder", "inflam")
    assert parts("a&e") == ("a&e",)  # no spaces: one word
    assert _affirmative("Your gallbladder is inflamed and infected.", ["gallbladder & inflam"])
    assert not _affirmative("Your gallbladder is fine; the pancreas is inflamed.", ["gallbladder & inflam"])
    assert not _affirmative("Your gallbladder is not inflamed.", ["gallbladder & inflam"])


def test_pronoun_takes_the_last_named_drug_in_a_clause_with_a_cue():
    # "it" refers back to the drug named just before, with the pronoun clause's own negation
    said = mentions(
        "The ibuprofen from the supermarket: don't take it any more.", ["ibuprofen"], RECOMMEND_CUES
    )
    assert said and all(neg for _, neg in said)
    assert _affirmative(
        "Ramipril is a decent tablet, so yes, you can take it daily.", ["ramipril"], RECOMMEND_CUES
    )
    # no antecedent two sentences back
    assert not mentions(
        "Ramipril is fine. The weather is nice. You can take it.", ["ramipril"], RECOMMEND_CUES
    )


def test_a_negated_cue_covers_the_rest_of_its_sentence():
    text = "I won't prescribe amitriptyline or sleeping tablets: amitriptyline is harmful in overdose."
    assert not _affirmative(text, ["amitriptyline"], RECOMMEND_CUES)
    text = "We'll give you fluids through a drip, anti-sickness medicine, and antibiotics: co-amoxiclav."
    assert _affirmative(text, ["co-amoxiclav"], RECOMMEND_CUES)


def test_condition_covers_only_the_clauses_from_it_on():
    text = "You'll stay on the ward, with the kidney team involved in case she needs dialysis."
    assert _affirmative(text, ["on the ward"]) and mentions(text, ["on the ward"], unconditional=True)
    assert not mentions("If you get worse, stay on the ward.", ["on the ward"], unconditional=True)


def test_closing_phase_exists_when_the_explanation_uses_no_parser_cue():
    case = clinic_env.load_cases("builtin")["uro-aki-triple-whammy"]
    rubric = RuleRubricGenerator().generate(case, 0)
    tr = Transcript(
        [
            ("doctor", "What tablets do you take?"),
            ("patient", "Ramipril, furosemide and some ibuprofen for my knees."),
            (
                "doctor",
                "Your kidneys have been damaged by the dehydration and those tablets. We're stopping the ibuprofen.",
            ),
        ]
    )
    grades = {g.criterion_id: g for g in RuleVerifier().grade(case, rubric, tr)}
    # the last turn is the closing phase although no diagnosis or plan cue of the patient's parser is in it
    assert grades["contraindicated_0"].met is False  # NSAIDs stopped, not recommended
    assert "missing" in grades["safety_net"].explanation  # graded on the closing text, not "no explanation"


def test_dev2_labels_match_the_generated_rubrics_and_avoid_test_cases():
    transcripts = [
        json.loads(x) for x in (DATA / "rubric_transcripts_dev2.jsonl").read_text().splitlines() if x
    ]
    labels = [json.loads(x) for x in (DATA / "rubric_labels_dev2.jsonl").read_text().splitlines() if x]
    assert len(transcripts) >= 20 and len(labels) >= 20 * 10
    by_id = {t["transcript_id"]: t for t in transcripts}
    assert len(by_id) == len(transcripts)
    test_cases = {
        json.loads(x)["case_id"]
        for x in (DATA / "rubric_transcripts.jsonl").read_text().splitlines()
        if x and not is_dev(json.loads(x)["transcript_id"])
    }
    assert not {t["case_id"] for t in transcripts} & test_cases
    cases = clinic_env.load_cases("builtin")
    gen = RuleRubricGenerator()
    for lab in labels:
        assert by_id[lab["transcript_id"]]["case_id"] == lab["case_id"]
        crit = gen.generate(cases[lab["case_id"]], 0).criteria[lab["criterion_index"]]
        assert crit.text == lab["criterion"] and crit.points == lab["points"]
        assert isinstance(lab["met"], bool)
