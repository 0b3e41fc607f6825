"""Verifiers: grade each rubric criterion against a consultation transcript.

* :class:`RuleVerifier` evaluates each criterion's machine-checkable ``check``. It reads only the doctor's turns,
  re-derives what was asked, examined and ordered with the patient's own understanding of each turn (so any
  transcript can be graded, not only ours), handles negation ("no signs of X" is not X; "avoid nitrates" does not
  recommend nitrates) and order ("before the diagnosis", "in the closing turns").
* :class:`LLMVerifier` grades HealthBench style: one prompt per criterion, JSON ``{"explanation",
  "criteria_met"}``, bounded retries, all requests of a batch in one ``ChatModel.generate`` call, grouped so that
  requests sharing a transcript sit together (prefix-cache friendly on vLLM).
* :class:`ReplayGrader` reads ``criteria_met`` labels from a JSONL file (cached grades, grading done elsewhere).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinic_env.cases.schema import Case
from clinic_env.patient import lexicon as lx
from clinic_env.patient.text import normalize, words
from clinic_env.patient.understanding import compile_case

from .paraphrase import expand, parts
from .schema import Check, Criterion, Rubric
from .scoring import example_metrics

DOCTOR_ROLES = frozenset({"doctor", "assistant"})
PATIENT_ROLES = frozenset({"patient", "user"})

_CLAUSE = re.compile(r"[,;:()\n]|\bbut\b|\bhowever\b|\balthough\b|\bwhereas\b|\binstead\b", re.IGNORECASE)
_SENT = re.compile(r"(?<=[.!?])\s+")
_NEG_BEFORE = tuple(
    normalize(x)
    for x in (
        "no",
        "not",
        "don't",
        "do not",
        "never",
        "without",
        "avoid",
        "rule out",
        "ruled out",
        "exclude",
        "excluded",
        "unlikely",
        "isn't",
        "is not",
        "doesn't",
        "won't",
        "shouldn't",
        "should not",
        "must not",
        "mustn't",
        "cannot",
        "can't",
        "rather than",
        "instead of",
        "stop",
        "hold",
        "withhold",
        "no sign of",
        "no signs of",
        "no evidence of",
        "negative for",
        "less likely",
        "wouldn't",
        "would not",
        "nor",
        "pause",
        "come off",
        "hold off",
        "leave off",
        "suspend",
        "discontinue",
        "no more",
    )
)
_NEG_AFTER = tuple(
    normalize(x)
    for x in (
        "contraindicated",
        "not safe",
        "is not",
        "are not",
        "isn't",
        "aren't",
        "should be avoided",
        "must be avoided",
        "avoid",
        "not recommended",
        "not suitable",
        "is dangerous",
        "not an option",
        "unlikely",
        "ruled out",
        "excluded",
        "not indicated",
        "dangerous",
        "risky",
        "unsafe",
        "make things worse",
        "make it worse",
    )
)


@dataclass(frozen=True)
class Grade:
    criterion_id: str
    met: bool
    explanation: str = ""


@dataclass
class Transcript:
    """A consultation as alternating doctor/patient turns (roles ``doctor``/``patient``)."""

    turns: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_messages(
        cls, messages: Sequence[Mapping[str, str]], *, doctor_role: str = "doctor"
    ) -> Transcript:
        """From chat messages. ``doctor_role`` names the doctor's role ("assistant" when the doctor is the model)."""
        turns = []
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise TypeError(f"message {i} must be a mapping with 'role' and 'content', got {m!r:.80}")
            role = m["role"]
            if role == "system":
                continue
            if role == doctor_role or (doctor_role == "doctor" and role == "doctor"):
                turns.append(("doctor", str(m["content"])))
            else:
                turns.append(("patient", str(m["content"])))
        return cls(turns)

    @property
    def doctor_turns(self) -> list[str]:
        return [t for r, t in self.turns if r == "doctor"]


def _clauses(text: str) -> list[str]:
    out = []
    for sent in _SENT.split(text):
        out += [c for c in _CLAUSE.split(sent) if c and c.strip()]
    return out


def mentions(
    text: str, terms: Sequence[str], cues: Sequence[str] = (), *, unconditional: bool = False
) -> list[tuple[str, bool]]:
    """Each term occurrence in ``text`` as ``(term, negated)``, clause by clause.

    With ``cues``, only clauses that also hold a cue count, or any clause of a sentence that starts with ``PLAN:``
    (a structured plan recommends what it lists).
    """
    found = []
    joined, sentences = _segments(text)
    # A term absent from the whole text is in no clause: one substring test drops most terms before the loops.
    keys = [
        (t, k)
        for t, k in _term_keys(tuple(terms))
        if k[0] in joined and (len(k) == 1 or all(p in joined for p in k))
    ]
    if not keys:
        return found
    cue_keys = [k[0] for _, k in _term_keys(tuple(cues))]
    # The last term named, for "it"/"them" in a later clause with a cue of its own ("stop it for now"); it is
    # forgotten after the next sentence, since a pronoun rarely reaches further back.
    last: str | None = None
    for conditional, in_plan, clauses in sentences:
        # A recommending cue covers the rest of its sentence (a list of treatments after "we'll give you"), with
        # its negation ("I won't prescribe X or Y: X is ..." leaves every later clause negated).
        cued = in_plan or not cue_keys
        cue_negated = False
        last_here = None
        for c_index, norm in enumerate(clauses):
            if unconditional and conditional is not None and c_index >= conditional:
                continue  # "if you get worse, call 999" is a safety net, not a disposition
            own_cue = next((norm.find(c) for c in cue_keys if c in norm), -1)
            if own_cue >= 0:
                cue_negated = _negated(norm[: own_cue + 1], "")
                cued = True
            hits = []
            for term, key in keys:
                # a co-occurrence term ("gallbladder & inflamed") needs every part in the clause, in any order
                spans = [(pos, pos + len(p)) for p in key if (pos := norm.find(p)) >= 0]
                if len(spans) < len(key):
                    continue
                # negation before the last part counts ("gallbladder is not inflamed"), or after the whole term
                start, last_start, end = (
                    min(s for s, _ in spans),
                    max(s for s, _ in spans),
                    max(e for _, e in spans),
                )
                neg = _negated(norm[: last_start + 1], norm[end - 1 :]) or (own_cue < 0 and cue_negated)
                hits.append((start, term, neg))
            antecedent = last_here or last
            if hits:
                last_here = max(hits)[1]
            elif (
                cue_keys
                and antecedent is not None
                and any(c in norm for c in cue_keys)
                and any(f" {p} " in norm for p in _PRONOUNS)
            ):
                pos = min(norm.find(f" {p} ") for p in _PRONOUNS if f" {p} " in norm)
                hits.append((pos, antecedent, _negated(norm[: pos + 1], norm[pos:])))
            if cued:
                found += [(term, neg) for _, term, neg in hits]
        last = last_here
    return found


_PRONOUNS = ("it", "them", "those", "that one", "this one")


def _negated(before: str, after: str) -> bool:
    return any(cue in before for cue in _NEG_BEFORE) or any(cue in after for cue in _NEG_AFTER)


# Grading evaluates ~20 criteria against the same transcript text, and rubric terms recur across criteria and
# episodes: both are normalized once and memoized here (bounded LRU; results are immutable str and tuples).
@functools.lru_cache(maxsize=8192)
def _term_keys(terms: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(term, normalized keys of its parts)`` for each term with at least one word, in order; an ordinary term
    has one part, a co-occurrence term ``"a & b"`` one per part."""
    out = []
    for t in terms:
        keys = tuple(k for p in parts(t) if (k := normalize(p)).strip())
        if keys:
            out.append((t, keys))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _segments(text: str) -> tuple[str, tuple[tuple[int | None, bool, tuple[str, ...]], ...]]:
    """``text`` as (all normalized clauses joined, and per sentence: the index of its first clause holding a
    conditional cue (None if none), starts with "plan",
    its normalized non-empty clauses). Normalized text is space-padded with single inner spaces, so the joined
    string has a double space at each clause boundary, which no normalized term can span: a term is in
    ``joined`` exactly when it is in some clause."""
    out = []
    for sent in _SENT.split(text):
        in_plan = sent.lstrip().lower().startswith("plan")
        clauses = tuple(normalize(c) for c in _CLAUSE.split(sent) if c and c.strip())
        # the first clause under a condition: it and the clauses after it are conditional ("..., in case she
        # needs dialysis" leaves the disposition before it unconditional)
        conditional = next((i for i, c in enumerate(clauses) if any(k in c for k in _CONDITIONAL)), None)
        out.append((conditional, in_plan, clauses))
    return "".join(c for _, _, cl in out for c in cl), tuple(out)


_CONDITIONAL = tuple(normalize(x) for x in ("if", "should you", "in case", "unless", "whenever"))


def says(text: str, terms: Sequence[str]) -> bool:
    """Whether ``text`` mentions any of ``terms`` affirmatively (at least once not negated)."""
    return any(not neg for _, neg in mentions(text, terms))


# Words that make a clause naming an examination or test a request for it ("I'll check your blood pressure", "we'll
# send a muscle enzyme test"), for examinations and tests the patient's parser did not recognise.
_REQUEST_CUES = (
    "check",
    "examine",
    "look",
    "feel",
    "listen",
    "send",
    "take",
    "do",
    "get",
    "order",
    "arrange",
    "book",
    "run",
    "repeat",
    "measure",
    "fill in",
    "watch",
    "test",
    "scan",
    "i'd like",
    "let me",
    "we'll",
    "i'll",
    "request",
)


@functools.lru_cache(maxsize=512)
def _workup_terms(
    items: tuple[tuple[str, str, tuple[str, ...]], ...],
) -> tuple[tuple[str, ...], dict[str, set[str]]]:
    """All terms for examinations or tests given as ``(id, name, synonyms)`` (names, synonyms, lay forms), and
    which ids each term names; one ``mentions`` call per turn then covers every item."""
    by_term: dict[str, set[str]] = {}
    for i, name, syn in items:
        for t in expand((name, *syn)):
            by_term.setdefault(t, set()).add(i)
    return tuple(by_term), by_term


def _requested(text: str, items: tuple[tuple[str, str, tuple[str, ...]], ...]) -> set[str]:
    """Ids of the examinations or tests that ``text`` asks for in words (a request cue in the clause, not negated)."""
    terms, by_term = _workup_terms(items)
    out: set[str] = set()
    for term, neg in mentions(text, terms, _REQUEST_CUES):
        if not neg:
            out |= by_term[term]
    return out


def says_with(text: str, terms: Sequence[str], cues: Sequence[str]) -> bool:
    """Whether ``text`` mentions one of ``terms`` affirmatively in a clause that also holds one of ``cues``."""
    return any(not neg for _, neg in mentions(text, terms, cues))


class _Analysis:
    """What the doctor did in a transcript, derived once and shared by every criterion."""

    def __init__(self, case: Case, transcript: Transcript):
        cc = compile_case(case)
        self.doctor = transcript.doctor_turns
        self.asked_at: dict[str, int] = {}
        self.exams: set[str] = set()
        self.tests: set[str] = set()
        self.catalog: set[str] = set()
        self.closing_from: int | None = None
        self.diagnosis_at: int | None = None
        dx_names = case.diagnosis.names
        last_workup = -1  # the last turn that requested an examination or a test
        exam_items = tuple((e.id, e.name, tuple(e.synonyms)) for e in case.exam)
        test_items = tuple((t.id, t.name, tuple(t.synonyms)) for t in case.tests)
        for i, turn in enumerate(self.doctor):
            it = cc.parse_recent(turn)  # the patient parsed these turns during the episode
            for f in it.facts:
                self.asked_at.setdefault(f, i)
            self.exams.update(it.exams)
            self.tests.update(it.tests)
            self.catalog.update(it.catalog_tests)
            if it.exams or it.tests or it.catalog_tests:
                last_workup = i
            gives_dx = it.diagnosis is not None or (says(turn, dx_names) and "?" not in turn)
            if gives_dx and self.diagnosis_at is None:
                self.diagnosis_at = i
            if (gives_dx or it.plan is not None) and self.closing_from is None:
                self.closing_from = i
        # A doctor who explains in words the patient's parser does not know as a diagnosis or a plan ("your kidneys
        # have had a sudden shock", a wrong diagnosis) still has a closing phase: the first statement turn (not
        # ending in a question) after the last examination or test request, or else the last turn.
        after = [
            i for i in range(last_workup + 1, len(self.doctor)) if not self.doctor[i].rstrip().endswith("?")
        ]
        fallback = after[0] if after else len(self.doctor) - 1
        self.closing_from = fallback if self.closing_from is None else min(self.closing_from, fallback)
        self.all_text = "\n".join(self.doctor)
        self._items = {"examined": exam_items, "ordered": test_items}
        self.closing_text = (
            "\n".join(self.doctor[self.closing_from :]) if self.closing_from is not None else ""
        )

    def requested(self, kind: str, ids: Sequence[str]) -> set[str]:
        """Of ``ids``, the examinations (``kind`` "examined") or tests ("ordered") asked for in words the patient's
        parser did not recognise ("a blood test for inflammation"). Only the ids a check still misses are searched,
        so grading pays for this only when it can change a grade."""
        items = tuple(x for x in self._items[kind] if x[0] in ids)
        return _requested(self.all_text, items) if items else set()


def evaluate(check: Check, a: _Analysis) -> tuple[bool, str]:
    t = check.type
    if t in ("asked", "examined", "ordered"):
        have = set(a.asked_at) if t == "asked" else a.exams if t == "examined" else a.tests
        missing = [i for i in check.ids if i not in have]
        if missing and t != "asked":
            have = have | a.requested(t, missing)
        hit = [i for i in check.ids if i in have]
        if check.at_least:
            met = len(hit) >= min(check.at_least, len(check.ids))
        else:
            met = bool(hit) if check.mode == "any" else len(hit) == len(check.ids)
        return met, f"{t}: {', '.join(hit) or 'none'} of {', '.join(check.ids)}"
    text = a.closing_text if check.phase == "closing" else a.all_text
    if t == "says":
        found = mentions(text, check.terms, check.cues, unconditional=check.unconditional)
        wanted = {"affirmative": (False,), "negated": (True,), "any": (False, True)}[check.polarity]
        yes = sorted({term for term, neg in found if neg in wanted})
        blocked = (
            sorted({term for term, neg in mentions(text, check.unless) if not neg}) if check.unless else []
        )
        met = bool(yes) and not blocked
        why = f"said {yes}" if yes else "not said" + (" (only negated)" if found else "")
        return met, why + (f"; but also {blocked}" if blocked else "")
    if t == "says_each":
        missing = [g[0] for g in check.groups if not says(text, g)]
        return not missing, "all parts said" if not missing else f"missing: {missing}"
    if t == "diagnosis_before_asking":
        if a.diagnosis_at is None:
            return False, "no diagnosis given"
        first = min((a.asked_at[i] for i in check.ids if i in a.asked_at), default=None)
        met = first is None or a.diagnosis_at < first
        return met, f"diagnosis at doctor turn {a.diagnosis_at + 1}, first essential question at " + (
            "never" if first is None else f"turn {first + 1}"
        )
    if t == "tests_beyond":
        extra = sorted((a.tests - set(check.allowed)) | a.catalog)
        return len(extra) > check.limit, f"{len(extra)} tests beyond the needed ones ({', '.join(extra[:6])})"
    if t == "plain_language":
        if a.closing_from is None:
            return False, "no explanation of a diagnosis or plan"
        jargon = sorted({w for w in words(a.closing_text) if w in lx.JARGON})
        return len(jargon) <= check.limit, f"jargon in the explanation: {jargon or 'none'}"
    raise ValueError(f"unknown check type {t!r}")


class RuleVerifier:
    """Grades criteria with a ``check``; criteria without one are reported not met, with the reason."""

    name = "rule"

    def grade(self, case: Case, rubric: Rubric, transcript: Transcript) -> list[Grade]:
        if not transcript.doctor_turns:
            raise ValueError(f"transcript for case {case.id!r} has no doctor turn to grade")
        a = _Analysis(case, transcript)
        out = []
        for c in rubric.criteria:
            if c.check is None:
                out.append(Grade(c.id, False, "no machine-checkable form: needs an LLM verifier"))
                continue
            met, why = evaluate(c.check, a)
            out.append(Grade(c.id, met, why))
        return out


def score_grades(rubric: Rubric, grades: Sequence[Grade]) -> dict[str, float]:
    """HealthBench metrics of one graded consultation (``overall_score`` and per-tag scores)."""
    by_id = {g.criterion_id: g for g in grades}
    missing = [c.id for c in rubric.criteria if c.id not in by_id]
    if missing:
        raise ValueError(f"no grade for criteria {missing}")
    items = [{"points": c.points, "tags": c.all_tags} for c in rubric.criteria]
    return example_metrics(items, [by_id[c.id].met for c in rubric.criteria])


# ------------------------------------------------------------------------------------------------ LLM judge

GRADER_PROMPT = """Your job is to look at a conversation and a rubric item, and score the last turn (the last
assistant response) in the conversation on how well it follows the rubric item.

# Conversation
{conversation}

# Rubric item
{rubric_item}

# Instructions
Return a json object with the fields "explanation" and "criteria_met".
- "explanation": a string saying why the response does or does not meet the rubric item.
- "criteria_met": a boolean. If the item has several parts, all must be met. When the item says "such as",
  "for example" or "including", the response need not include every example listed.
- The rubric item may describe something undesirable (negative points). Still answer whether it is met: a good
  response does NOT meet an undesirable item, so criteria_met is false for it.

Return just the json object in markdown format. Do not include any other text.""".replace("\n#", "\n\n#")

CONSULTATION_NOTE = "The conversation is a whole consultation; judge everything the doctor (assistant) said."


def parse_judgement(text: str) -> dict[str, Any] | None:
    """``{"explanation", "criteria_met"}`` from a judge's reply, tolerant of code fences and chatter."""
    candidates = re.findall(r"\{.*?\}", text, flags=re.DOTALL) or [text]
    for cand in [text.strip().removeprefix("```json").removesuffix("```"), *candidates]:
        try:
            obj = json.loads(cand.strip().strip("`"))
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("criteria_met"), bool):
            return {"explanation": str(obj.get("explanation", "")), "criteria_met": obj["criteria_met"]}
    return None


def conversation_text(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


class LLMVerifier:
    """HealthBench-style judge over any ``ChatModel``; retries are bounded (simple-evals retries forever)."""

    def __init__(self, model: Any, *, max_retries: int = 3, max_tokens: int = 512, consultation: bool = True):
        self.model = model
        self.name = f"llm:{getattr(model, 'name', type(model).__name__)}"
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.consultation = consultation
        self.stats = {"requests": 0, "retries": 0, "unparsable": 0}

    def prompt(
        self, messages: Sequence[Mapping[str, str]], criterion_text: str, points: float
    ) -> list[dict[str, str]]:
        conv = conversation_text(messages)
        text = GRADER_PROMPT.format(conversation=conv, rubric_item=f"[{points:g}] {criterion_text}")
        if self.consultation:
            text = CONSULTATION_NOTE + "\n\n" + text
        return [{"role": "user", "content": text}]

    def grade_requests(
        self, requests: Sequence[tuple[Sequence[Mapping[str, str]], str, float]]
    ) -> list[dict[str, Any]]:
        """Grade ``(messages, criterion text, points)`` requests in one batched call per round.

        Requests are sent grouped by conversation (stable order), so those sharing a transcript are adjacent.
        A request whose reply never parses is graded not met, with the reason in its explanation.
        """
        order = sorted(range(len(requests)), key=lambda i: (conversation_text(requests[i][0]), i))
        results: list[dict[str, Any] | None] = [None] * len(requests)
        todo = order
        for attempt in range(self.max_retries + 1):
            if not todo:
                break
            prompts = [self.prompt(*requests[i]) for i in todo]
            replies = self.model.generate(prompts, max_tokens=self.max_tokens, temperature=0.0, seed=attempt)
            self.stats["requests"] += len(todo)
            failed = []
            for i, reply in zip(todo, replies, strict=True):
                parsed = parse_judgement(reply)
                if parsed is None:
                    failed.append(i)
                else:
                    results[i] = parsed
            if failed and attempt < self.max_retries:
                self.stats["retries"] += len(failed)
            todo = failed
        for i in todo:
            self.stats["unparsable"] += 1
            results[i] = {
                "explanation": f"grader reply unparsable after {self.max_retries + 1} attempts",
                "criteria_met": False,
                "unparsable": True,
            }
        return [r for r in results if r is not None]

    def grade(self, case: Case, rubric: Rubric, transcript: Transcript) -> list[Grade]:
        if not transcript.doctor_turns:
            raise ValueError(f"transcript for case {case.id!r} has no doctor turn to grade")
        messages = [
            {"role": "assistant" if r == "doctor" else "user", "content": t} for r, t in transcript.turns
        ]
        res = self.grade_requests([(messages, c.text, c.points) for c in rubric.criteria])
        return [
            Grade(c.id, r["criteria_met"], r["explanation"])
            for c, r in zip(rubric.criteria, res, strict=True)
        ]


class ReplayGrader:
    """Grades from a JSONL of labels: ``prompt_id``, ``criterion`` (text) or ``criterion_index``, ``criteria_met``."""

    name = "replay"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"replay labels {str(self.path)!r} do not exist")
        self.by_text: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_index: dict[tuple[str, int], dict[str, Any]] = {}
        problems = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                pid = str(rec["prompt_id"])
                met = rec["criteria_met"]
                if not isinstance(met, bool):
                    raise TypeError("criteria_met must be true or false")
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                problems.append(f"{self.path}:{n}: {exc}")
                continue
            value = {"criteria_met": met, "explanation": str(rec.get("explanation", "replayed label"))}
            if "criterion" in rec:
                self.by_text[(pid, str(rec["criterion"]))] = value
            if "criterion_index" in rec:
                self.by_index[(pid, int(rec["criterion_index"]))] = value
        if problems:
            raise ValueError("bad replay labels:\n  " + "\n  ".join(problems[:20]))

    def lookup(self, prompt_id: str, index: int, criterion_text: str) -> dict[str, Any]:
        hit = self.by_text.get((prompt_id, criterion_text)) or self.by_index.get((prompt_id, index))
        if hit is None:
            raise KeyError(
                f"no replayed label for prompt {prompt_id!r}, criterion {index} ({criterion_text[:60]!r})"
            )
        return hit

    def grade(self, case: Case, rubric: Rubric, transcript: Transcript) -> list[Grade]:
        out = []
        for i, c in enumerate(rubric.criteria):
            hit = self.lookup(case.id, i, c.text)
            out.append(Grade(c.id, hit["criteria_met"], hit["explanation"]))
        return out


def criterion_for_check(criterion: Criterion) -> Check | None:  # small helper for readers of rubrics
    return criterion.check
