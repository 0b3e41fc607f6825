"""The registry of source formats: name -> how to convert a record, what to send an LLM, how to name it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .agentclinic import nejm_draft, nejm_llm_text, osce_draft, osce_llm_text
from .healthbench import healthbench_case
from .mediq import mediq_draft, mediq_llm_text


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    prefix: str  # default case-id prefix
    convert: Callable[..., Any]  # (record, RecordContext) -> Draft | Case; raises RecordError
    llm_text: Callable[[Any], str | None] | None  # the free text an LLM structures (None: not applicable)
    prose: bool  # the LLM may also restructure examination findings and results
    id_key: str | None = None  # the source's own record-id field

    def original_id(self, rec: Any) -> str | None:
        if self.id_key and isinstance(rec, dict) and rec.get(self.id_key) is not None:
            return str(rec[self.id_key])
        return None


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "agentclinic",
            "AgentClinic OSCE JSONL (MedQA / MIMIC-IV): OSCE_Examination with Patient_Actor, findings, results",
            "agentclinic",
            osce_draft,
            osce_llm_text,
            prose=False,
        ),
        Format(
            "agentclinic-nejm",
            "AgentClinic NEJM Image Challenge JSONL: question, patient_info, physical_exams, answers",
            "agentclinic-nejm",
            nejm_draft,
            nejm_llm_text,
            prose=True,
        ),
        Format(
            "mediq",
            "MediQ JSONL: id, question, context, options, answer, facts, patient",
            "mediq",
            mediq_draft,
            mediq_llm_text,
            prose=True,
            id_key="id",
        ),
        Format(
            "healthbench",
            "HealthBench JSONL as single-turn rubric tasks: prompt, prompt_id, rubrics, example_tags",
            "healthbench",
            healthbench_case,
            None,
            prose=False,
            id_key="prompt_id",
        ),
    )
}
