"""The LLM patient backend: what its prompts hold, the Fact Unit check and fallback, and batching."""

from __future__ import annotations

import pytest

import clinic_env
from clinic_env.llm import CallableChatModel, load_chat_model
from clinic_env.patient import PatientSimulator, respond_batch

REF = "card-inferior-stemi-pde5"
QUESTIONS = ["Where does the pain go?", "Any allergies?", "Can I listen to your chest?", "I'd like an ECG."]


@pytest.fixture(scope="module")
def cases():
    return clinic_env.load_cases("builtin")


def _all_prompt_text(model: CallableChatModel) -> str:
    return "\n".join(m["content"] for batch in model.calls for conv in batch for m in conv)


def test_prompts_hold_only_released_facts_and_never_the_diagnosis(cases):
    case = cases[REF]
    model = CallableChatModel(lambda conv: "Okay.")
    sim = PatientSimulator(model)
    sim.reset(case, 0)
    for q in QUESTIONS:
        sim.respond(q)
    text = _all_prompt_text(model)
    released = set(sim.disclosed)
    for f in case.facts:
        if f.id in released:
            continue
        assert f.patient_text not in text, f"unreleased fact {f.id} reached the prompt"
    for name in case.diagnosis.names:
        assert name.lower() not in text.lower(), f"diagnosis name {name!r} reached the prompt"
    for t in case.tests:  # results go to the doctor through the examiner, never into the patient's prompt
        assert t.value not in text
    assert "It goes up into my jaw" in text  # the released fact was there to answer with


def test_a_reply_naming_the_diagnosis_is_retried_then_replaced(cases):
    case = cases[REF]
    model = CallableChatModel(lambda conv: "I reckon it's a STEMI, doc.")
    sim = PatientSimulator(model, max_retries=1)
    sim.reset(case, 0)
    t = sim.respond("Where does the pain go?")
    assert t.backend == "llm_fallback"
    assert "STEMI" not in t.text and "jaw" in t.text  # the template reply took its place
    assert (
        sim.stats["llm_check_failed"] == 2
        and sim.stats["llm_retries"] == 1
        and sim.stats["llm_fallback"] == 1
    )
    assert len(model.calls) == 2


def test_a_clean_reply_is_used_and_a_retry_can_succeed(cases):
    case = cases[REF]
    replies = iter(["My dad dropped dead at sixty-one.", "It goes to my jaw and my left arm."])
    model = CallableChatModel(lambda conv: next(replies))
    sim = PatientSimulator(model)
    sim.reset(case, 0)
    t = sim.respond("Does the pain go anywhere?")
    # First reply leaks the unasked family-history fact; the retry is clean.
    assert t.backend == "llm_retry" and t.text == "It goes to my jaw and my left arm."


def test_unordered_results_and_jargon_are_caught(cases):
    case = cases[REF]
    sim = PatientSimulator(CallableChatModel(lambda conv: "x"))
    sim.reset(case, 0)
    kinds = {
        v.kind
        for v in sim.check_reply(
            "My troponin was 1840 and the ECG showed ST elevation 3 mm in II, III and aVF."
        )
    }
    assert "unordered_result" in kinds
    assert sim.check_reply("It's a pressing pain.") == []


def test_a_vector_of_conversations_makes_one_call_per_step(cases):
    n = 6
    model = CallableChatModel(lambda conv: "I'm not sure.")
    sims = [PatientSimulator(model) for _ in range(n)]
    for i, s in enumerate(sims):
        s.reset(cases[i % len(cases)], i)
    for step, q in enumerate(["Hello, how can I help?", "Any fever?", "Do you smoke?"]):
        turns = respond_batch(sims, [q] * n)
        assert len(model.calls) == step + 1, "one generate call per step for the whole vector"
        assert len(model.calls[-1]) == n
        assert all(t.backend == "llm" for t in turns)


def test_batch_length_mismatch(cases):
    with pytest.raises(ValueError, match="2 simulators but 1 utterances"):
        respond_batch([PatientSimulator(), PatientSimulator()], ["hi"])


def test_tiny_transformers_model_as_the_patient(cases, tiny_model_path):
    """Plumbing with a real (random) model: its noise is checked, and replaced when it fails the check."""
    model = load_chat_model(f"hf:{tiny_model_path}", device="cpu")
    sims = [PatientSimulator(model, llm_max_tokens=12) for _ in range(3)]
    for i, s in enumerate(sims):
        s.reset(cases[i], i)
    turns = respond_batch(sims, ["Any allergies?", "When did it start?", "Do you smoke?"])
    assert all(t.backend in {"llm", "llm_retry", "llm_fallback"} for t in turns)
    assert all(isinstance(t.text, str) and t.text for t in turns)
    assert model.usage.calls >= 1 and model.usage.requests >= 3
