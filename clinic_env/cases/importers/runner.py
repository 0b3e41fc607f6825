"""Import a whole file: every record either becomes a case or gets a per-record error; OUT is written atomically.

``import_file(IN, OUT, fmt)`` reads IN (JSON Lines), converts each record, and writes

- ``OUT``: the imported cases, one per line (loadable with :func:`clinic_env.cases.load_cases`), written to a
  temporary file beside OUT and renamed into place only when every record has been processed, so OUT is never
  partial (an interrupted import leaves any earlier OUT as it was);
- ``OUT.errors.jsonl`` (``cases.jsonl`` -> ``cases.errors.jsonl``): one line per record that did not import, with its
  line, source id, the field at fault and the reason; empty when everything imported;
- ``OUT.report.json``: counts, timing, what the importer inferred or filled in, and the LLM's statistics.

A bad record never stops the import; only an unreadable IN, an unknown format or a failure to write stops it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..schema import Case
from .base import Draft, HistoryItem, RecordContext, RecordError
from .formats import FORMATS, Format

_ID_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class ImportInputError(ValueError):
    """The import cannot start: unknown format, unreadable input, bad options."""


@dataclass
class ImportReport:
    """What an import did."""

    format: str
    input: str
    output: str | None
    errors_path: str
    report_path: str
    n_records: int = 0
    n_imported: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    llm: dict[str, Any] | None = None
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return len(self.errors)

    @property
    def ok(self) -> bool:
        return self.n_failed == 0 and self.n_imported > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "input": self.input,
            "output": self.output,
            "errors_file": self.errors_path,
            "records": self.n_records,
            "imported": self.n_imported,
            "failed": self.n_failed,
            "seconds": round(self.seconds, 3),
            "llm": self.llm,
            "importer_notes": self.notes,
        }


def sidecar_paths(out: Path) -> tuple[Path, Path]:
    """``(errors, report)`` paths next to OUT: ``cases.jsonl`` -> ``cases.errors.jsonl``, ``cases.report.json``."""
    stem = out.stem if out.suffix in (".jsonl", ".json") else out.name
    return out.with_name(f"{stem}.errors.jsonl"), out.with_name(f"{stem}.report.json")


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise ImportInputError(f"unknown format {name!r}; use one of: {', '.join(FORMATS)}")
    return FORMATS[name]


def _read_lines(path: Path) -> list[tuple[int, bytes]]:
    if not path.exists():
        raise ImportInputError(f"input file {str(path)!r} does not exist")
    if path.is_dir():
        raise ImportInputError(f"input {str(path)!r} is a folder; give one JSON Lines file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportInputError(f"cannot read input file {str(path)!r}: {exc.strerror or exc}") from None
    lines = [(i, raw) for i, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]
    if not lines:
        raise ImportInputError(f"input file {str(path)!r} is empty: expected one JSON record per line")
    return lines


def _dump(case: Case) -> str:
    return json.dumps(case.model_dump(mode="json"), ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _apply_structure(draft: Draft, got: Any, fmt: Format) -> None:
    """Replace the draft's rule-based history (and, for prose formats, exam and tests) by the LLM's."""
    from . import _nlp as nlp
    from .base import ExamItem, TestItem

    cc = nlp.content_tokens(draft.chief_complaint)
    items = []
    for f in got.history:
        toks = nlp.content_tokens(f.clinician_text)
        primary = bool(toks) and len(toks & cc) >= 0.6 * len(toks) and not f.negative
        items.append(
            HistoryItem(
                f.clinician_text,
                f.category,
                "llm",
                patient_text=f.patient_text,
                negative=f.negative,
                primary=primary,
                atomic=True,
                fixed_category=True,
            )
        )
    draft.history = items
    if fmt.prose and (got.exam or got.tests):
        draft.exam = [ExamItem(e.name, e.finding, e.system) for e in got.exam]
        draft.tests = [TestItem(t.name, t.value) for t in got.tests]


def import_records(
    lines: list[tuple[int, bytes]],
    fmt: Format,
    *,
    file: str,
    prefix: str,
    structurer: Any = None,
    batch_size: int = 8,
    default_sex: str | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """Yield ``(line, Case | None, error dict | None)`` for every record, in order."""
    from .assemble import assemble

    total = len(lines)
    done = 0
    step = max(1, batch_size if structurer is not None else 64)
    for start in range(0, total, step):
        chunk = lines[start : start + step]
        parsed: list[tuple[int, Any, dict[str, Any] | None]] = []
        for line, raw in chunk:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                parsed.append(
                    (line, None, {"error": f"line is not UTF-8 text ({exc.reason} at byte {exc.start})"})
                )
                continue
            try:
                parsed.append((line, json.loads(text), None))
            except json.JSONDecodeError as exc:
                parsed.append(
                    (
                        line,
                        None,
                        {
                            "error": f"not valid JSON: {exc.msg} (column {exc.colno}); expected one record per line"
                        },
                    )
                )
        drafts: list[tuple[int, Any, Draft | Case | None, dict[str, Any] | None]] = []
        for line, rec, err in parsed:
            if err is not None:
                drafts.append((line, rec, None, err))
                continue
            ctx = RecordContext(file=file, line=line, prefix=prefix, default_sex=default_sex)
            try:
                drafts.append((line, rec, fmt.convert(rec, ctx), None))
            except RecordError as exc:
                drafts.append((line, rec, None, {"error": str(exc), "field": exc.field}))
            except Exception as exc:  # a converter bug must not stop the import: report it on the record
                drafts.append(
                    (
                        line,
                        rec,
                        None,
                        {"error": f"internal importer error ({type(exc).__name__}: {exc}); please report it"},
                    )
                )
        if structurer is not None and fmt.llm_text is not None:
            want = [
                (k, fmt.llm_text(rec)) for k, (_l, rec, d, _e) in enumerate(drafts) if isinstance(d, Draft)
            ]
            want = [(k, t) for k, t in want if t]
            got = structurer.structure([t for _, t in want]) if want else []
            for (k, _t), res in zip(want, got, strict=True):
                line, rec, draft, _ = drafts[k]
                if isinstance(res, str):
                    drafts[k] = (line, rec, None, {"error": res, "field": None})
                else:
                    _apply_structure(draft, res, fmt)
                    draft.note("inferred", f"history structured by the LLM {structurer.name}")
        for line, rec, draft, err in drafts:
            case = None
            if err is None:
                try:
                    case = draft if isinstance(draft, Case) else assemble(draft)
                except RecordError as exc:
                    err = {"error": str(exc), "field": exc.field}
                except Exception as exc:
                    err = {
                        "error": f"internal importer error ({type(exc).__name__}: {exc}); please report it"
                    }
            if err is not None:
                err = {"line": line, "original_id": fmt.original_id(rec), **err}
            done += 1
            if progress is not None:
                progress(done, total)
            yield line, case, err


def import_file(
    src: str | Path,
    out: str | Path,
    fmt: str,
    *,
    llm: Any = None,
    id_prefix: str | None = None,
    max_retries: int = 2,
    batch_size: int = 8,
    default_sex: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import ``src`` in format ``fmt`` into ``out``; see the module docstring for what is written."""
    t0 = time.perf_counter()
    spec = get_format(fmt)
    prefix = id_prefix or spec.prefix
    if not _ID_PREFIX.match(prefix):
        raise ImportInputError(f"id prefix {prefix!r} must be lower case letters, digits, '-' or '_'")
    if llm is not None and spec.llm_text is None:
        raise ImportInputError(f"--llm does not apply to {fmt!r}: its records are already structured")
    if default_sex not in (None, "female", "male"):
        raise ImportInputError(f"default sex must be 'female' or 'male', got {default_sex!r}")
    if batch_size < 1:
        raise ImportInputError(f"batch size must be at least 1, got {batch_size}")
    src_p, out_p = Path(src), Path(out)
    if out_p.exists() and out_p.is_dir():
        raise ImportInputError(f"output {str(out_p)!r} is a folder; give a file path such as cases.jsonl")
    if src_p.resolve() == out_p.resolve():
        raise ImportInputError("the output file must not be the input file")
    if not out_p.parent.exists():
        raise ImportInputError(f"the output's folder {str(out_p.parent)!r} does not exist")
    lines = _read_lines(src_p)
    structurer = None
    if llm is not None:
        from .llm import LLMStructurer

        structurer = LLMStructurer(llm, max_retries=max_retries)
    errors_p, report_p = sidecar_paths(out_p)
    report = ImportReport(fmt, str(src_p), None, str(errors_p), str(report_p), n_records=len(lines))
    notes: Counter[str] = Counter()
    seen: dict[str, int] = {}
    tmp = out_p.with_name(f".{out_p.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for line, case, err in import_records(
                lines,
                spec,
                file=src_p.name,
                prefix=prefix,
                structurer=structurer,
                batch_size=batch_size,
                default_sex=default_sex,
                progress=progress,
            ):
                if case is not None and case.id in seen:
                    err = {
                        "line": line,
                        "original_id": case.source.original_id,
                        "error": f"duplicate case id {case.id!r} (first made from line {seen[case.id]}); "
                        "give the records distinct ids or import them with different --id-prefix",
                        "field": "id",
                    }
                    case = None
                if err is not None:
                    report.errors.append(
                        {
                            "line": err.get("line"),
                            "original_id": err.get("original_id"),
                            "field": err.get("field"),
                            "error": err["error"],
                        }
                    )
                    continue
                seen[case.id] = line
                for kind, values in (case.extra.get("importer") or {}).items():
                    notes[kind] += len(values) if isinstance(values, list) else 1
                fh.write(_dump(case))
                report.n_imported += 1
            fh.flush()
            os.fsync(fh.fileno())
        if report.n_imported:
            os.replace(tmp, out_p)
            report.output = str(out_p)
    finally:
        tmp.unlink(missing_ok=True)
    report.seconds = time.perf_counter() - t0
    report.notes = dict(notes)
    if structurer is not None:
        report.llm = {"model": structurer.name, **structurer.stats}
    _write_atomic(errors_p, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in report.errors))
    _write_atomic(report_p, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return report
