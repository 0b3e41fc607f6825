"""Load cases from the built-in library, a JSON file, a JSONL file, a folder, or Python objects.

``load_cases`` either returns a complete, immutable :class:`CaseSet` or raises :class:`CaseLoadError` listing every
problem found (file, line, case id, field path); ``check_cases`` returns the problems instead of raising, for the
``clinic-env cases validate`` command.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union, overload

from pydantic import ValidationError

from ._jsonpos import line_of, list_item_start
from .errors import CaseLoadError, CaseProblem
from .library_rules import library_problems
from .schema import Case, CaseReferenceError

LIBRARY_DIR = Path(__file__).resolve().parent / "library"

CaseSource = Union[str, Path, "CaseSet", Sequence[Case | Mapping[str, Any]]]


class CaseSet(Sequence[Case]):
    """An immutable, ordered set of cases with unique ids; index by position or by case id."""

    __slots__ = ("_by_id", "_cases", "origin")

    def __init__(self, cases: Iterable[Case], *, origin: str | None = None):
        self._cases: tuple[Case, ...] = tuple(cases)
        by_id: dict[str, Case] = {}
        dupes = []
        for c in self._cases:
            if not isinstance(c, Case):
                raise TypeError(f"CaseSet holds Case objects, got {type(c).__name__}")
            if c.id in by_id:
                dupes.append(CaseProblem(None, None, c.id, "id", "duplicate case id in the set"))
            by_id[c.id] = c
        if dupes:
            raise CaseLoadError(dupes)
        self._by_id = MappingProxyType(by_id)
        self.origin = origin

    @overload
    def __getitem__(self, key: int) -> Case: ...
    @overload
    def __getitem__(self, key: str) -> Case: ...
    @overload
    def __getitem__(self, key: slice) -> CaseSet: ...
    def __getitem__(self, key: int | str | slice) -> Case | CaseSet:
        if isinstance(key, str):
            return self.get(key)
        if isinstance(key, slice):
            return CaseSet(self._cases[key], origin=self.origin)
        return self._cases[key]

    def __len__(self) -> int:
        return len(self._cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self._cases)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._by_id
        return isinstance(item, Case) and self._by_id.get(item.id) is item

    def __repr__(self) -> str:
        origin = f", origin={self.origin!r}" if self.origin else ""
        return f"CaseSet({len(self)} cases{origin})"

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self._cases)

    def get(self, case_id: str) -> Case:
        try:
            return self._by_id[case_id]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(case_id, self._by_id.keys(), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(f"no case with id {case_id!r} in this set of {len(self)} cases{hint}") from None

    def filter(self, predicate: Callable[[Case], bool] | None = None, **fields: Any) -> CaseSet:
        """Cases matching a predicate and/or field values, e.g. ``filter(specialty="cardiology")``."""

        def value(c: Case, name: str) -> Any:
            v = getattr(c, name)
            return v.value if hasattr(v, "value") else v

        out = [
            c
            for c in self._cases
            if (predicate is None or predicate(c)) and all(value(c, k) == v for k, v in fields.items())
        ]
        return CaseSet(out, origin=self.origin)


# ----------------------------------------------------------------------------------------------- reading


def _loc_str(loc: Sequence[str | int]) -> str:
    return ".".join(str(x) for x in loc)


def _path_tuple(path: str) -> tuple[str | int, ...]:
    return tuple(int(p) if p.isdigit() else p for p in path.split(".") if p)


def _validate(
    data: Any,
    *,
    file: str | None,
    text: str | None,
    start: int,
    line: int | None,
    prefix: tuple[str | int, ...] = (),
) -> tuple[Case | None, list[CaseProblem]]:
    """Validate one case record; ``text``/``start`` locate fields inside a JSON document for line numbers."""
    case_id = data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) else None

    def where(loc: tuple[str | int, ...]) -> int | None:
        if text is not None:
            return line_of(text, loc, start)
        return line

    if not isinstance(data, dict):
        return None, [
            CaseProblem(
                file,
                where(()),
                None,
                _loc_str(prefix) or None,
                f"a case must be a JSON object, got {type(data).__name__}",
            )
        ]
    try:
        return Case.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, CaseReferenceError):
                for path, msg in ctx_err.problems:
                    ploc = _path_tuple(path)
                    problems.append(CaseProblem(file, where(ploc), case_id, _loc_str(prefix + ploc), msg))
                continue
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "required field is missing"
            elif err["type"] == "extra_forbidden":
                msg = "unknown field (not in the case schema)"
            problems.append(CaseProblem(file, where(loc), case_id, _loc_str(prefix + loc) or None, msg))
        return None, problems


def _read_json(path: Path) -> tuple[list[Case], list[CaseProblem]]:
    file = str(path)
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return [], [
            CaseProblem(file, 1, None, None, "file is empty: expected a case object or a list of cases")
        ]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [
            CaseProblem(file, exc.lineno, None, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
        ]
    records = data if isinstance(data, list) else [data]
    if isinstance(data, list) and not data:
        return [], [CaseProblem(file, 1, None, None, "file holds an empty list: no cases")]
    cases, problems = [], []
    for i, rec in enumerate(records):
        prefix: tuple[str | int, ...] = (i,) if isinstance(data, list) else ()
        start = list_item_start(text, i) if isinstance(data, list) else 0
        case, probs = _validate(rec, file=file, text=text, start=start, line=None, prefix=prefix)
        problems += probs
        if case is not None:
            cases.append(case)
    return cases, problems


def _read_jsonl(path: Path) -> tuple[list[Case], list[CaseProblem]]:
    file = str(path)
    cases, problems = [], []
    n_records = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            n_records += 1
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(
                    CaseProblem(file, lineno, None, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
                )
                continue
            case, probs = _validate(data, file=file, text=None, start=0, line=lineno)
            problems += probs
            if case is not None:
                cases.append(case)
    if n_records == 0:
        problems.append(CaseProblem(file, 1, None, None, "file is empty: expected one case per line"))
    return cases, problems


def _read_path(path: Path) -> tuple[list[Case], list[CaseProblem], list[Path]]:
    """Cases from a file or folder, their problems, and the file each case came from (parallel to cases)."""
    if not path.exists():
        return [], [CaseProblem(str(path), None, None, None, "no such file or directory")], []
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())
        if path.is_dir()
        else [path]
    )
    if path.is_dir() and not files:
        return (
            [],
            [CaseProblem(str(path), None, None, None, "folder holds no .json or .jsonl case files")],
            [],
        )
    cases: list[Case] = []
    origins: list[Path] = []
    problems: list[CaseProblem] = []
    for f in files:
        if f.suffix == ".jsonl":
            got, probs = _read_jsonl(f)
        elif f.suffix == ".json":
            got, probs = _read_json(f)
        else:
            probs, got = (
                [CaseProblem(str(f), None, None, None, "unsupported file type: use .json or .jsonl")],
                [],
            )
        cases += got
        origins += [f] * len(got)
        problems += probs
    return cases, problems, origins


def check_cases(
    source: CaseSource = "builtin", *, library: bool | None = None
) -> tuple[list[Case], list[CaseProblem]]:
    """Read ``source`` and return ``(valid cases, problems)`` without raising.

    ``library`` also applies the shipped library's minimums (:mod:`~clinic_env.cases.library_rules`); it defaults to
    True for ``"builtin"`` and False otherwise.
    """
    origins: list[Path | None]
    if isinstance(source, CaseSet):
        cases, problems, origins = list(source), [], [None] * len(source)
    elif isinstance(source, (str, Path)):
        is_builtin = isinstance(source, str) and source == "builtin"
        path = LIBRARY_DIR if is_builtin else Path(source)
        if library is None:
            library = is_builtin
        cases, problems, files = _read_path(path)
        origins = list(files)
    elif isinstance(source, Sequence):
        cases, problems, origins = [], [], []
        for i, item in enumerate(source):
            if isinstance(item, Case):
                cases.append(item)
                origins.append(None)
            elif isinstance(item, Mapping):
                case, probs = _validate(dict(item), file=None, text=None, start=0, line=None, prefix=(i,))
                problems += probs
                if case is not None:
                    cases.append(case)
                    origins.append(None)
            else:
                problems.append(
                    CaseProblem(
                        None, None, None, str(i), f"expected a Case or a dict, got {type(item).__name__}"
                    )
                )
    else:
        raise TypeError(
            f"cases must be 'builtin', a path, a CaseSet or a list of cases/dicts, got {type(source).__name__}"
        )

    seen: dict[str, Path | None] = {}
    for case, origin in zip(cases, origins, strict=False):
        if case.id in seen:
            first = seen[case.id]
            problems.append(
                CaseProblem(
                    str(origin) if origin else None,
                    None,
                    case.id,
                    "id",
                    f"duplicate case id (first seen in {first or 'this list'})",
                )
            )
        else:
            seen[case.id] = origin
        if library:
            for field, msg in library_problems(
                case, file_stem=origin.stem if origin and origin.suffix == ".json" else None
            ):
                problems.append(
                    CaseProblem(str(origin) if origin else None, None, case.id, field, f"[library] {msg}")
                )
    return cases, problems


def load_cases(source: CaseSource = "builtin") -> CaseSet:
    """Load an immutable :class:`CaseSet`.

    ``source`` is ``"builtin"`` (the shipped library), a path to a ``.json`` file (one case or a list),
    a ``.jsonl`` file (one case per line) or a folder of such files (searched recursively), an existing
    ``CaseSet``, or a list of :class:`Case` objects and/or dicts. Raises :class:`CaseLoadError` listing every
    problem when anything fails to validate; nothing is returned half-loaded. An empty source is an error.
    """
    if isinstance(source, CaseSet):
        return source
    cases, problems = check_cases(source, library=False)
    if problems:
        raise CaseLoadError(problems)
    if not cases:
        raise CaseLoadError(
            [
                CaseProblem(
                    str(source) if isinstance(source, (str, Path)) else None, None, None, None, "no cases"
                )
            ]
        )
    origin = str(source) if isinstance(source, (str, Path)) else None
    return CaseSet(cases, origin=origin)
