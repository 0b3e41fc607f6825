"""HealthBench (OpenAI simple-evals, MIT) as single-turn rubric tasks.

Each example becomes a schema-valid case whose ``extra["healthbench"]`` holds the example itself: ``prompt_id``,
the ``prompt`` messages, the ``rubrics`` (criterion, points, tags), the ``example_tags`` and every other field of
the line (``ideal_completions_data``, ``canary``, ...). The case's ``opening_statement`` is the prompt conversation
as text, so :class:`clinic_env.env.ConsultationEnv` serves it on ``reset``; the first ``step(reply)`` ends the
episode and the reward is the HealthBench score of the reply against the example's own rubric, graded by the env's
LLM verifier or replayed labels (see ``docs/importers.md``). Fields a consultation case needs but HealthBench does
not have (demographics unless the prompt states them, persona, diagnosis, management) are placeholders, listed
under ``extra["importer"]["placeholder"]``. Lines are validated with the HealthBench harness's own checks.
"""

from __future__ import annotations

import re
from typing import Any

from clinic_env.rubrics.healthbench import check_example

from ..schema import Case
from .assemble import PLACEHOLDER_ICD10, parse_age, parse_sex
from .base import RecordContext, RecordError

HEALTHBENCH_URL = "https://github.com/openai/simple-evals"
NOT_APPLICABLE = "Not applicable: HealthBench single-turn rubric task"
TASK = "healthbench_single_turn"


def render_prompt(messages: list[dict[str, str]]) -> str:
    """The prompt as the text observation: a lone user message as is, a conversation as ``role: content`` blocks."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def healthbench_case(rec: Any, ctx: RecordContext) -> Case:
    """One HealthBench line as a single-turn rubric task (a :class:`Case` carrying the example in ``extra``)."""
    problem = check_example(rec)
    if problem:
        raise RecordError(problem)
    pid = str(rec["prompt_id"])
    slug = re.sub(r"[^a-z0-9]+", "-", pid.lower()).strip("-")
    if not slug:
        raise RecordError(f"prompt_id {pid!r} has no letters or digits to make a case id from", "prompt_id")
    prompt = [{"role": m["role"], "content": m["content"]} for m in rec["prompt"]]
    text = render_prompt(prompt)
    if not text.strip():
        raise RecordError("the prompt's messages are empty", "prompt")
    user_text = " ".join(m["content"] for m in prompt if m["role"] == "user")
    last_user = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), prompt[-1]["content"])
    placeholders = ["diagnosis", "management", "persona", "specialty", "setting", "acuity"]
    age = parse_age(user_text)
    sex = parse_sex(user_text[:400], "")
    if age is None or age > 120:
        age = 40.0
        placeholders.append("demographics.age_years = 40")
    if sex is None:
        sex = "female"
        placeholders.append("demographics.sex = female")
    tags = list(rec.get("example_tags", []))
    theme = next((t.split(":", 1)[1] for t in tags if t.startswith("theme:")), "healthbench")
    one_line = re.sub(r"\s+", " ", last_user).strip() or "(empty message)"
    data = {
        "id": f"{ctx.prefix}-{slug}",
        "title": f"HealthBench {theme}: {one_line[:100]}",
        "specialty": "general_medicine",
        "setting": "telehealth",
        "acuity": "moderate",
        "source": {
            "kind": "imported",
            "name": "HealthBench",
            "licence": "MIT",
            "original_id": pid,
            "url": HEALTHBENCH_URL,
        },
        "tags": [],
        "demographics": {"age_years": age, "sex": sex},
        "persona": {
            "name": "HealthBench user",
            "mbti": "ISFJ",
            "health_literacy": "medium",
            "emotional_state": "calm",
        },
        "chief_complaint": one_line[:300],
        "opening_statement": text,
        "opening_facts": ["prompt"],
        "facts": [
            {
                "id": "prompt",
                "category": "hpi",
                "concepts": ["healthbench.prompt"],
                "patient_text": last_user.strip() or one_line,
                "clinician_text": last_user.strip() or one_line,
            }
        ],
        "diagnosis": {"primary": NOT_APPLICABLE, "icd10": PLACEHOLDER_ICD10},
        "management": {"disposition": "routine", "first_line": [{"name": NOT_APPLICABLE}]},
        "extra": {
            "task": TASK,
            "healthbench": {
                "prompt_id": pid,
                "prompt": prompt,
                "rubrics": rec["rubrics"],
                "example_tags": tags,
                **{
                    k: v
                    for k, v in rec.items()
                    if k not in ("prompt_id", "prompt", "rubrics", "example_tags")
                },
            },
            "importer": {"placeholder": placeholders},
        },
    }
    from pydantic import ValidationError

    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'case'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise RecordError(f"the imported case does not validate: {problems}") from None


def is_healthbench_task(case: Case) -> bool:
    """Whether a case is a HealthBench single-turn rubric task made by this importer."""
    return isinstance(case.extra.get("healthbench"), dict)
