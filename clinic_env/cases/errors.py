"""Errors raised while loading cases: every problem with file, line, case id and field path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CaseProblem:
    """One thing wrong with one case (or one file)."""

    file: str | None
    line: int | None
    case_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file or "<memory>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.case_id:
            parts.append(f"case {self.case_id!r}")
        if self.field:
            parts.append(self.field)
        return " | ".join(parts) + f": {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "case_id": self.case_id,
            "field": self.field,
            "message": self.message,
        }


class CaseLoadError(ValueError):
    """Raised when a case source does not load; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[CaseProblem]):
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) loading cases:"
        shown = "\n  ".join(str(p) for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{head}\n  {shown}{more}")
