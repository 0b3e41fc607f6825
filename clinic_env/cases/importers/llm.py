"""``--llm SPEC``: structure a free-text vignette into atomic facts through a :class:`~clinic_env.llm.ChatModel`.

The model gets the record's free text and returns JSON: history facts (clinician wording, the patient's own
first-person wording, a category, whether it is a denial), examination findings (with a system) and test results.
Replies are validated against a strict model; an invalid reply is sent back with the problem for a bounded number
of retries, all records of a batch in one ``generate`` call per round. A record whose replies never validate gets a
per-record error; nothing is guessed. Concept keys, essential facts, redaction of the diagnosis and the rest of the
case are then assigned by the same rules as without an LLM (:mod:`.assemble`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..schema import ExamSystem, FactCategory

SYSTEM_PROMPT = """You turn a clinical vignette into structured data for a patient simulator.
Return only one JSON object, no other text, with exactly these keys:
{{"history": [{{"clinician_text": str, "patient_text": str, "category": str, "negative": bool}}],
 "exam": [{{"name": str, "system": str, "finding": str}}],
 "tests": [{{"name": str, "value": str}}]}}
Rules:
- history: one atomic fact per item (split lists: "denies fever and cough" is two items). clinician_text is
  the fact in clinical wording; patient_text is how the patient (or, for a young child, the parent) would say it,
  first person, plain words. negative is true for a denial ("no fever").
- category is one of: {categories}.
- exam: physical examination findings and vital signs; system is one of: {systems}.
- tests: laboratory, imaging, pathology and other investigation results, values copied exactly.
- Never name or hint at the diagnosis in patient_text. Do not invent anything that is not in the text."""


class _Fact(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    clinician_text: str = Field(..., min_length=1)
    patient_text: str = Field(..., min_length=1)
    category: FactCategory
    negative: bool = False


class _Exam(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    name: str = Field(..., min_length=1)
    system: ExamSystem
    finding: str = Field(..., min_length=1)


class _Test(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    name: str = Field(..., min_length=1)
    value: str = Field(..., min_length=1)


class Structured(BaseModel):
    """A validated LLM structuring of one vignette."""

    model_config = ConfigDict(extra="ignore")
    history: list[_Fact] = Field(..., min_length=1)
    exam: list[_Exam] = []
    tests: list[_Test] = []


def parse_structured(reply: str) -> Structured:
    """The JSON object of a reply (code fences and chatter around it tolerated), validated; ValueError if not."""
    text = reply.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the reply")
    try:
        obj = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the JSON does not parse: {exc.msg} at column {exc.colno}") from None
    try:
        return Structured.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[:3]
        raise ValueError(
            "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in first)
        ) from None


class LLMStructurer:
    """Batched, validated, bounded-retry structuring of vignettes with any ``ChatModel``."""

    def __init__(self, model: Any, *, max_retries: int = 2, max_tokens: int = 2048):
        if not hasattr(model, "generate"):
            raise TypeError(
                f"the structuring model must be a ChatModel with .generate, got {type(model).__name__}"
            )
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.name = str(getattr(model, "name", type(model).__name__))
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.stats = {"requests": 0, "retries": 0, "failed": 0}
        self.system = SYSTEM_PROMPT.format(
            categories=", ".join(c.value for c in FactCategory),
            systems=", ".join(s.value for s in ExamSystem),
        )

    def structure(self, texts: Sequence[str]) -> list[Structured | str]:
        """One result per text: a :class:`Structured`, or a string saying why the model's replies failed."""
        convs: list[list[dict[str, str]]] = [
            [{"role": "system", "content": self.system}, {"role": "user", "content": f"Vignette:\n{t}"}]
            for t in texts
        ]
        results: list[Structured | str | None] = [None] * len(texts)
        errors: dict[int, str] = {}
        todo = list(range(len(texts)))
        for attempt in range(self.max_retries + 1):
            if not todo:
                break
            replies = self.model.generate(
                [convs[i] for i in todo], max_tokens=self.max_tokens, temperature=0.0, seed=attempt
            )
            if len(replies) != len(todo):
                raise RuntimeError(
                    f"{self.name} returned {len(replies)} replies for {len(todo)} conversations"
                )
            self.stats["requests"] += len(todo)
            failed = []
            for i, reply in zip(todo, replies, strict=True):
                try:
                    results[i] = parse_structured(reply)
                except ValueError as exc:
                    errors[i] = str(exc)
                    convs[i] = [
                        *convs[i],
                        {"role": "assistant", "content": reply},
                        {
                            "role": "user",
                            "content": f"That reply is not valid ({exc}). Reply again with only the JSON object.",
                        },
                    ]
                    failed.append(i)
            if failed and attempt < self.max_retries:
                self.stats["retries"] += len(failed)
            todo = failed
        for i in todo:
            self.stats["failed"] += 1
            results[i] = (
                f"the LLM's structuring ({self.name}) failed validation after {self.max_retries + 1} attempt(s): "
                f"{errors[i]}"
            )
        return [r if r is not None else "no result" for r in results]
