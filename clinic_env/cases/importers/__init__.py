"""Importers: AgentClinic (OSCE and NEJM), MediQ and HealthBench records as clinic-env cases.

    clinic-env cases import --format FORMAT IN -o OUT.jsonl [--llm SPEC]

>>> from clinic_env.cases.importers import FORMATS
>>> sorted(FORMATS)
['agentclinic', 'agentclinic-nejm', 'healthbench', 'mediq']

Every record imports or gets a per-record error (``OUT.errors.jsonl``); OUT is written atomically. Imported cases
validate against the case schema; the shipped library's minimums do not apply to them. The rules (atomic facts,
concept keys, essential facts, keeping the diagnosis out of the patient's mouth, placeholders) are described in
:mod:`.assemble` and ``docs/importers.md``. This subpackage reads the patient's lexicon and the HealthBench
harness's checks; ``clinic_env.cases`` itself does not import it.
"""

from __future__ import annotations

from .base import RecordContext, RecordError
from .formats import FORMATS, Format
from .healthbench import is_healthbench_task
from .runner import ImportInputError, ImportReport, get_format, import_file, import_records, sidecar_paths

__all__ = [
    "FORMATS",
    "Format",
    "ImportInputError",
    "ImportReport",
    "RecordContext",
    "RecordError",
    "get_format",
    "import_file",
    "import_records",
    "is_healthbench_task",
    "sidecar_paths",
]
