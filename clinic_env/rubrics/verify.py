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

import bisect
import functools
import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from clinic_env.cases.schema import Case
from clinic_env.patient import lexicon as lx
from clinic_env.patient.text import normalize, words
from clinic_env.patient.understanding import compile_case

from .paraphrase import expand, parts
from .schema import Check, Criterion, Rubric

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
    (a structured plan recommends what it lists). A term ``"a & b"`` needs every part in one clause, in any order.
    """
    spec = _query(tuple(terms), tuple(cues))
    if not spec.terms:
        return []
    return _find(_scan(text, _vocabulary(spec.keys)), spec, unconditional)


_PRONOUNS = ("it", "them", "those", "that one", "this one")


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


class _Layout(NamedTuple):
    """A text split for matching: per sentence ``(index of its first conditional clause or None, starts with
    "plan", its normalized non-empty clauses)``; every clause flat, with its offset in ``joined`` (all clauses
    concatenated) and its ``(sentence, index in sentence)``."""

    sentences: tuple[tuple[int | None, bool, tuple[str, ...]], ...]
    joined: str
    offsets: tuple[int, ...]
    where: tuple[tuple[int, int], ...]


@functools.lru_cache(maxsize=256)
def _segments(text: str) -> _Layout:
    """``text`` as a :class:`_Layout`. Normalized text is space-padded with single inner spaces, so ``joined`` has
    a double space at each clause boundary; matches that straddle one are dropped anyway (see ``_scan``)."""
    sentences = []
    for sent in _SENT.split(text):
        in_plan = sent.lstrip().lower().startswith("plan")
        clauses = tuple(normalize(c) for c in _CLAUSE.split(sent) if c and c.strip())
        # the first clause under a condition: it and the clauses after it are conditional ("..., in case she
        # needs dialysis" leaves the disposition before it unconditional)
        conditional = next((i for i, c in enumerate(clauses) if any(k in c for k in _CONDITIONAL)), None)
        sentences.append((conditional, in_plan, clauses))
    offsets, where, pos = [], [], 0
    for s, (_, _, clauses) in enumerate(sentences):
        for j, c in enumerate(clauses):
            offsets.append(pos)
            where.append((s, j))
            pos += len(c)
    joined = "".join(c for _, _, cl in sentences for c in cl)
    return _Layout(tuple(sentences), joined, tuple(offsets), tuple(where))


_CONDITIONAL = tuple(normalize(x) for x in ("if", "should you", "in case", "unless", "whenever"))
_NEG_BEFORE_SET = frozenset(_NEG_BEFORE)
_NEG_AFTER_SET = frozenset(_NEG_AFTER)
_FAR = 1 << 30  # "no negation cue ends before this position"


class _Query:
    """One ``mentions`` question, compiled: the terms' part keys in term order, which terms each key occurs in,
    and the rank of each cue key (the first cue of ``cues`` present in a clause is the one that counts)."""

    __slots__ = ("by_key", "cue_rank", "keys", "terms")

    def __init__(self, terms: tuple[str, ...], cues: tuple[str, ...]):
        self.terms = _term_keys(terms)
        by_key: dict[str, list[int]] = {}
        for i, (_, key) in enumerate(self.terms):
            for p in key:
                by_key.setdefault(p, []).append(i)
        self.by_key = {k: tuple(dict.fromkeys(v)) for k, v in by_key.items()}
        self.cue_rank: dict[str, int] = {}
        for r, (_, k) in enumerate(_term_keys(cues)):
            self.cue_rank.setdefault(k[0], r)
        self.keys = frozenset(self.by_key) | frozenset(self.cue_rank)


@functools.lru_cache(maxsize=8192)
def _query(terms: tuple[str, ...], cues: tuple[str, ...]) -> _Query:
    return _Query(terms, cues)


class _Matcher:
    """Words with their roles (a query key, a negation cue before or after a term) in one Aho-Corasick automaton
    (pyahocorasick, the library the patient's parser uses), so that a text is scanned once for all of them instead
    of one substring search per term, criterion and clause."""

    def __init__(self, keys: frozenset[str], negation: bool):
        words = keys | (_NEG_BEFORE_SET | _NEG_AFTER_SET if negation else frozenset())
        self.roles = {w: (w, len(w), w in keys, w in _NEG_BEFORE_SET, w in _NEG_AFTER_SET) for w in words}
        try:
            import ahocorasick
        except ImportError:  # a pure-Python fallback with the same results (slower): str.find per word
            self.automaton = None
        else:
            self.automaton = ahocorasick.Automaton()
            for w, role in self.roles.items():
                self.automaton.add_word(w, role)
            if words:
                self.automaton.make_automaton()

    def matches(self, text: str) -> Iterator[tuple[int, tuple[str, int, bool, bool, bool]]]:
        """Every occurrence of every word in ``text``, overlapping ones included, by increasing end:
        ``(end index, role)``."""
        if self.automaton is None:
            return self._slow_matches(text)
        if not self.roles:
            return iter(())
        return self.automaton.iter(text)

    def _slow_matches(self, text: str) -> Iterator[tuple[int, tuple[str, int, bool, bool, bool]]]:
        found = []
        for w, role in self.roles.items():
            i = text.find(w)
            while i >= 0:
                found.append((i + len(w) - 1, -len(w), role))
                i = text.find(w, i + 1)
        found.sort()  # by end, as the automaton reports them
        return ((end, role) for end, _, role in found)


@functools.lru_cache(maxsize=1024)
def _matcher(keys: frozenset[str], negation: bool) -> _Matcher:
    return _Matcher(keys, negation)


@functools.lru_cache(maxsize=1)
def _common_keys() -> frozenset[str]:
    """The keys of the rule generator's fixed term and cue lists (empathy, urgency, safety-netting, reassurance,
    recommending and requesting cues), which most rubrics share. They get one automaton per process, so a rubric
    only compiles its own keys (building an automaton of ~300 words cost ~0.5 ms per rubric). Which keys go where
    changes no result: a scan reports every key of both automata."""
    from . import generate as g  # here, not at the top: generate imports this module

    lists = [
        *g.URGENCY_TERMS.values(),
        g.SAFETY_NET_TERMS,
        g.EMPATHY_TERMS,
        g.REASSURANCE_TERMS,
        g.RECOMMEND_CUES,
        g.SAFETY_IF,
        g.SAFETY_ACT,
        g.CONFIDENTIALITY_BREACH,
        _REQUEST_CUES,
    ]
    return frozenset(k for terms in lists for _, key in _term_keys(tuple(terms)) for k in key)


class _Vocabulary:
    """Every key a set of queries can ask about, plus the negation cues: the shared automaton of the common keys
    and one of the rest."""

    def __init__(self, keys: frozenset[str]):
        common = _common_keys()
        self.keys = keys | common
        self.covered: dict[_Query, bool] = {}  # queries (by identity) whose keys are all in ``keys``
        own = keys - common
        self.parts = (_matcher(common, True), _matcher(own, False)) if own else (_matcher(common, True),)

    def covers(self, q: _Query) -> bool:
        hit = self.covered.get(q)
        if hit is None:
            hit = self.covered[q] = q.keys <= self.keys
        return hit

    def matches(self, text: str) -> Iterator[tuple[int, tuple[str, int, bool, bool, bool]]]:
        """Every occurrence of every word in ``text``; a key's own occurrences come by increasing end (a key is
        in one automaton only; a word that is both a key and a negation cue is reported once per role)."""
        if len(self.parts) == 1:
            return self.parts[0].matches(text)
        return itertools.chain.from_iterable(p.matches(text) for p in self.parts)


@functools.lru_cache(maxsize=1024)
def _vocabulary(keys: frozenset[str]) -> _Vocabulary:
    return _Vocabulary(keys)


class _Scan(NamedTuple):
    """What a vocabulary found in one text, per flat clause: the first position of each key, the end of the
    earliest negation cue that may precede a term, and the start of the last one that may follow it."""

    layout: _Layout
    first: tuple[dict[str, int], ...]
    neg_end: list[int]
    neg_start: list[int]
    clauses_of: dict[str, list[int]]  # key -> flat indices of the clauses holding it, ascending


def _scan(text: str, vocab: _Vocabulary) -> _Scan:
    lay = _segments(text)
    offsets = lay.offsets
    n = len(offsets)
    first: tuple[dict[str, int], ...] = tuple({} for _ in range(n))
    neg_end, neg_start = [_FAR] * n, [-1] * n
    clauses_of: dict[str, list[int]] = {}
    if n == 0:
        return _Scan(lay, first, neg_end, neg_start, clauses_of)
    ends = [*offsets[1:], len(lay.joined)]
    for end, (w, size, is_key, neg_b, neg_a) in vocab.matches(lay.joined):
        start = end - size + 1
        c = bisect.bisect_right(offsets, start) - 1
        if end >= ends[c]:
            continue  # straddles a clause boundary: in no clause
        pos = start - offsets[c]
        if is_key and w not in first[c]:
            first[c][w] = pos
            clauses_of.setdefault(w, []).append(c)
        if neg_b and pos + size < neg_end[c]:
            neg_end[c] = pos + size
        if neg_a and pos > neg_start[c]:
            neg_start[c] = pos
    return _Scan(lay, first, neg_end, neg_start, clauses_of)


def _find(scan: _Scan, q: _Query, unconditional: bool) -> list[tuple[str, bool]]:
    """``mentions`` over a scanned text: clause by clause, as described there, touching only the clauses the scan
    found something in. Negation: a cue before the last part of a term, or after the whole term."""
    found: list[tuple[str, bool]] = []
    clauses_of = scan.clauses_of
    present = clauses_of.keys() & q.by_key.keys()
    if not present:
        return found
    # the terms with every part somewhere in the text, in term order
    idx = sorted({i for k in present for i in q.by_key[k]})
    terms = [q.terms[i] for i in idx if all(p in clauses_of for p in q.terms[i][1])]
    if not terms:
        return found
    lay, first_at, neg_end, neg_start = scan.layout, scan.first, scan.neg_end, scan.neg_start

    def hits_in(c: int, own_cue: int, cue_negated: bool) -> list[tuple[int, str, bool]]:
        first = first_at[c]
        hits = []
        for term, key in terms:
            if len(key) == 1:
                pos = first.get(key[0])
                if pos is None:
                    continue
                start = last_start = pos
                end = pos + len(key[0])
            else:
                spans = [(p, p + len(k)) for k in key if (p := first.get(k)) is not None]
                if len(spans) < len(key):
                    continue
                start, last_start = min(s for s, _ in spans), max(s for s, _ in spans)
                end = max(e for _, e in spans)
            neg = neg_end[c] <= last_start + 1 or neg_start[c] >= end - 1 or (own_cue < 0 and cue_negated)
            hits.append((start, term, neg))
        return hits

    if not q.cue_rank:
        # Without cues every clause counts on its own (no cue state, no pronouns): only clauses holding a term.
        for c in sorted({c for _, key in terms for c in clauses_of[key[0]]}):
            if unconditional:
                s, j = lay.where[c]
                conditional = lay.sentences[s][0]
                if conditional is not None and j >= conditional:
                    continue  # "if you get worse, call 999" is a safety net, not a disposition
            found += [(term, neg) for _, term, neg in hits_in(c, -1, False)]
        return found

    cue_rank = q.cue_rank
    # The last term named, for "it"/"them" in a later clause with a cue of its own ("stop it for now"); it is
    # forgotten after the next sentence, since a pronoun rarely reaches further back.
    last: str | None = None
    c = -1
    for conditional, in_plan, clauses in lay.sentences:
        # A recommending cue covers the rest of its sentence (a list of treatments after "we'll give you"), with
        # its negation ("I won't prescribe X or Y: X is ..." leaves every later clause negated).
        cued = in_plan
        cue_negated = False
        last_here = None
        for j, norm in enumerate(clauses):
            c += 1
            if unconditional and conditional is not None and j >= conditional:
                continue
            first = first_at[c]
            if not first:
                continue  # no term and no cue here: nothing can happen
            own_cue, rank = -1, _FAR
            for k, pos in first.items():
                r = cue_rank.get(k)
                if r is not None and r < rank:
                    own_cue, rank = pos, r
            if own_cue >= 0:
                cue_negated = neg_end[c] <= own_cue + 1
                cued = True
            hits = hits_in(c, own_cue, cue_negated)
            antecedent = last_here or last
            if hits:
                last_here = max(hits)[1]
            elif own_cue >= 0 and antecedent is not None and any(f" {p} " in norm for p in _PRONOUNS):
                pos = min(norm.find(f" {p} ") for p in _PRONOUNS if f" {p} " in norm)
                hits.append((pos, antecedent, neg_end[c] <= pos + 1 or neg_start[c] >= pos))
            if cued:
                found += [(term, neg) for _, term, neg in hits]
        last = last_here
    return found


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


def _requested(
    text: str, items: tuple[tuple[str, str, tuple[str, ...]], ...], a: _Analysis | None = None
) -> set[str]:
    """Ids of the examinations or tests that ``text`` asks for in words (a request cue in the clause, not negated)."""
    terms, by_term = _workup_terms(items)
    out: set[str] = set()
    found = a.mentions(text, terms, _REQUEST_CUES) if a is not None else mentions(text, terms, _REQUEST_CUES)
    for term, neg in found:
        if not neg:
            out |= by_term[term]
    return out


def says_with(text: str, terms: Sequence[str], cues: Sequence[str]) -> bool:
    """Whether ``text`` mentions one of ``terms`` affirmatively in a clause that also holds one of ``cues``."""
    return any(not neg for _, neg in mentions(text, terms, cues))


def _items(case: Case) -> dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]]:
    return {
        "examined": tuple((e.id, e.name, tuple(e.synonyms)) for e in case.exam),
        "ordered": tuple((t.id, t.name, tuple(t.synonyms)) for t in case.tests),
    }


class _CompiledRubric:
    """What grading needs of one rubric for one case, built once (at rubric generation, or at the first grade):
    one vocabulary of every key its checks, the case's examination and test names and the cue lists can ask
    about, the case's examination/test items, and the scoring plan."""

    def __init__(self, rubric: Rubric, case: Case):
        self.items = _items(case)
        keys: set[str] = set()
        # each check's queries, by the identity of its (immutable) term and cue tuples, which the rubric keeps alive
        self.queries: dict[tuple[int, int], _Query] = {}
        for c in rubric.criteria:
            ch = c.check
            if ch is None:
                continue
            for terms, cues in ((ch.terms, ch.cues), (ch.unless, ()), *((g, ()) for g in ch.groups)):
                q = self.queries[id(terms), id(cues)] = _query(tuple(terms), tuple(cues))
                keys |= q.keys
        keys |= _query(tuple(case.diagnosis.names), ()).keys
        for items in self.items.values():
            if items:  # any subset of the items asks for a subset of these keys
                keys |= _query(_workup_terms(items)[0], _REQUEST_CUES).keys
        self.vocab = _vocabulary(frozenset(keys))
        self.score = _score_plan(rubric)


_COMPILED: dict[tuple[int, int], tuple[Rubric, Case, _CompiledRubric]] = {}


def compile_rubric(rubric: Rubric, case: Case) -> _CompiledRubric:
    """The compiled form of ``rubric`` for ``case``, cached per (rubric, case) object: rubrics and cases are
    immutable, and an env keeps the rubric of each case it meets. The rule generator calls this, so grading never
    pays for it."""
    key = (id(rubric), id(case))
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is rubric and hit[1] is case:
        return hit[2]
    compiled = _CompiledRubric(rubric, case)
    if len(_COMPILED) >= 4096:  # bounded: rubrics are usually few and long-lived
        _COMPILED.clear()
    _COMPILED[key] = (rubric, case, compiled)
    return compiled


class _Analysis:
    """What the doctor did in a transcript, derived once and shared by every criterion."""

    def __init__(self, case: Case, transcript: Transcript, compiled: _CompiledRubric | None = None):
        cc = compile_case(case)
        self.doctor = transcript.doctor_turns
        self.vocab = compiled.vocab if compiled is not None else None
        self._queries = compiled.queries if compiled is not None else {}
        self._scans: dict[str, _Scan] = {}
        self.asked_at: dict[str, int] = {}
        self.exams: set[str] = set()
        self.tests: set[str] = set()
        self.catalog: set[str] = set()
        self.closing_from: int | None = None
        self.diagnosis_at: int | None = None
        self.all_text = "\n".join(self.doctor)
        dx = _query(tuple(case.diagnosis.names), ())
        # Every clause of a turn is a clause of the whole text, so a diagnosis named in no clause of the whole
        # text is named in no turn: one scan then spares the per-turn ones.
        maybe_dx = bool(_find(self._scan(self.all_text, dx), dx, False)) if dx.terms else False
        last_workup = -1  # the last turn that requested an examination or a test
        for i, turn in enumerate(self.doctor):
            it = cc.parse_recent(turn)  # the patient parsed these turns during the episode
            for f in it.facts:
                self.asked_at.setdefault(f, i)
            self.exams.update(it.exams)
            self.tests.update(it.tests)
            self.catalog.update(it.catalog_tests)
            if it.exams or it.tests or it.catalog_tests:
                last_workup = i
            if self.diagnosis_at is not None:
                continue  # the closing phase has begun too: nothing below can change
            gives_dx = it.diagnosis is not None or (
                maybe_dx and "?" not in turn and any(not neg for _, neg in self.mentions(turn, dx))
            )
            if gives_dx:
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
        self._items = compiled.items if compiled is not None else _items(case)
        self.closing_text = (
            "\n".join(self.doctor[self.closing_from :]) if self.closing_from is not None else ""
        )

    def _scan(self, text: str, q: _Query) -> _Scan:
        """``text`` scanned with the rubric's vocabulary when it covers ``q`` (once per text), else with ``q``'s."""
        vocab = self.vocab
        if vocab is None or not vocab.covers(q):
            return _scan(text, _vocabulary(q.keys))
        hit = self._scans.get(text)
        if hit is None:
            hit = self._scans[text] = _scan(text, vocab)
        return hit

    def mentions(
        self,
        text: str,
        terms: Sequence[str] | _Query,
        cues: Sequence[str] = (),
        *,
        unconditional: bool = False,
    ) -> list[tuple[str, bool]]:
        """:func:`mentions`, with the scans of this transcript's texts shared by every criterion."""
        if isinstance(terms, _Query):
            q = terms
        else:
            q = self._queries.get((id(terms), id(cues))) or _query(tuple(terms), tuple(cues))
        if not q.terms:
            return []
        return _find(self._scan(text, q), q, unconditional)

    def says(self, text: str, terms: Sequence[str]) -> bool:
        return any(not neg for _, neg in self.mentions(text, terms))

    def requested(self, kind: str, ids: Sequence[str]) -> set[str]:
        """Of ``ids``, the examinations (``kind`` "examined") or tests ("ordered") asked for in words the patient's
        parser did not recognise ("a blood test for inflammation"). Only the ids a check still misses are searched,
        so grading pays for this only when it can change a grade."""
        items = tuple(x for x in self._items[kind] if x[0] in ids)
        return _requested(self.all_text, items, self) if items else set()


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
        found = a.mentions(text, check.terms, check.cues, unconditional=check.unconditional)
        wanted = {"affirmative": (False,), "negated": (True,), "any": (False, True)}[check.polarity]
        yes = sorted({term for term, neg in found if neg in wanted})
        blocked = (
            sorted({term for term, neg in a.mentions(text, check.unless) if not neg}) if check.unless else []
        )
        met = bool(yes) and not blocked
        why = f"said {yes}" if yes else "not said" + (" (only negated)" if found else "")
        return met, why + (f"; but also {blocked}" if blocked else "")
    if t == "says_each":
        missing = [g[0] for g in check.groups if not a.says(text, g)]
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
        jargon = sorted(lx.JARGON.intersection(words(a.closing_text)))
        return len(jargon) <= check.limit, f"jargon in the explanation: {jargon or 'none'}"
    raise ValueError(f"unknown check type {t!r}")


class RuleVerifier:
    """Grades criteria with a ``check``; criteria without one are reported not met, with the reason."""

    name = "rule"

    def grade(self, case: Case, rubric: Rubric, transcript: Transcript) -> list[Grade]:
        if not transcript.doctor_turns:
            raise ValueError(f"transcript for case {case.id!r} has no doctor turn to grade")
        a = _Analysis(case, transcript, compile_rubric(rubric, case))
        out = []
        for c in rubric.criteria:
            if c.check is None:
                out.append(Grade(c.id, False, "no machine-checkable form: needs an LLM verifier"))
                continue
            met, why = evaluate(c.check, a)
            out.append(Grade(c.id, met, why))
        return out


class _ScorePlan:
    """A rubric's HealthBench scoring, precomputed: criterion ids and points in order, and for the whole rubric
    and each tag (in order of first appearance) the criteria it covers and its possible points. Scores are the same
    integer sums divided the same way as :func:`~clinic_env.rubrics.scoring.example_metrics`, so identical."""

    def __init__(self, rubric: Rubric):
        self.ids = tuple(c.id for c in rubric.criteria)
        self.points = tuple(c.points for c in rubric.criteria)
        self.possible = sum(p for p in self.points if p > 0)
        by_tag: dict[str, list[int]] = {}
        for i, c in enumerate(rubric.criteria):
            for t in dict.fromkeys(c.all_tags):
                by_tag.setdefault(t, []).append(i)
        self.tags = tuple(
            (t, tuple(ix), possible)
            for t, ix in by_tag.items()
            if (possible := sum(self.points[i] for i in ix if self.points[i] > 0))
        )

    def metrics(self, met: Sequence[bool]) -> dict[str, float]:
        if not self.possible:
            raise ValueError("the rubric has no positive points: the example cannot be scored")
        pts = self.points
        out = {"overall_score": sum(p for p, m in zip(pts, met, strict=True) if m) / self.possible}
        for t, ix, possible in self.tags:
            out[t] = sum(pts[i] for i in ix if met[i]) / possible
        return out


def score_grades(rubric: Rubric, grades: Sequence[Grade]) -> dict[str, float]:
    """HealthBench metrics of one graded consultation (``overall_score`` and per-tag scores)."""
    by_id = {g.criterion_id: g for g in grades}
    plan = _score_plan(rubric)
    missing = [i for i in plan.ids if i not in by_id]
    if missing:
        raise ValueError(f"no grade for criteria {missing}")
    return plan.metrics([by_id[i].met for i in plan.ids])


def _score_plan(rubric: Rubric) -> _ScorePlan:
    """The rubric's scoring plan, cached per rubric object (built with its compiled form at generation)."""
    hit = _PLANS.get(id(rubric))
    if hit is not None and hit[0] is rubric:
        return hit[1]
    plan = _ScorePlan(rubric)
    if len(_PLANS) >= 4096:  # bounded: rubrics are usually few and long-lived
        _PLANS.clear()
    _PLANS[id(rubric)] = (rubric, plan)
    return plan


_PLANS: dict[int, tuple[Rubric, _ScorePlan]] = {}


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
