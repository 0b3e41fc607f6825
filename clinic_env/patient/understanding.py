"""Understanding a doctor's turn: which facts it asks for, which exams and tests it requests, and what else it does.

A :class:`CompiledCase` is built once per case (cached) and holds one Aho-Corasick automaton over every phrase that
matters for the case: its facts' synonyms and lay terms, the shared concept phrases, exam and test names, and the
intent cues. Parsing a turn is then one linear pass per sentence, with no regex compiled on the hot path.

Each sentence is classed before its matches count: an exam request ("can I listen to your chest?") releases exam
findings but no history; a test order releases results; a diagnosis or plan statement is recorded; anything else is
a history question. A dismissive cue ("I don't need to know about ...") cancels the history matches of its sentence.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

from clinic_env.cases.schema import Case, ExamSystem

from . import lexicon as lx
from .text import clean, normalize, words

SOCRATES_LEAVES = frozenset(
    {
        "onset",
        "duration",
        "character",
        "location",
        "radiation",
        "severity",
        "timing",
        "aggravating",
        "relieving",
    }
)
_PREVIOUS_LEAVES = frozenset({"previous", "previous_episodes", "recurrent"})
_SENTENCE_SPLIT = re.compile(r"(?<=[.?!;\n])\s+|\n+")
_PREFIX = re.compile(r"^\s*(EXAM|TEST|DIAGNOSIS|PLAN)\s*:\s*", re.IGNORECASE)

# How a patient answers a concept the case has no fact for: deny a symptom, "not sure" for descriptive history.
UNSURE_CONCEPTS = frozenset(
    {
        "pain.onset",
        "pain.duration",
        "pain.character",
        "pain.location",
        "pain.severity",
        "pain.timing",
        "family_history",
        "ice.concerns",
        "birth_history",
        "development",
        "immunisations",
        "obstetric_history",
    }
)

_STRONG_EXAM_VERBS = (
    "check her",
    "check his",
    "take her",
    "take his",
    "see how",
    "examine",
    "listen to",
    "have a listen",
    "have a look",
    "look at",
    "look in",
    "feel your",
    "feel the",
    "feel his",
    "feel her",
    "press on",
    "auscultate",
    "palpate",
    "inspect",
    "shine a light",
    "let me see",
    "do an examination",
    "test your reflexes",
    "test your strength",
    "monitor",
    "set of obs",
    "set of observations",
    "exam:",
)
_EXAM_VERBS = (
    "examine",
    "listen to",
    "have a listen",
    "have a look",
    "look at",
    "look in",
    "feel your",
    "feel the",
    "press on",
    "check your",
    "take your",
    "measure",
    "test your",
    "shine a light",
    "auscultate",
    "palpate",
    "inspect",
    "let me see",
    "do an examination",
    "do a quick examination",
    "get his",
    "get her",
    "get your",
    "assess",
    "check how",
    "check for",
    "exam:",
)
# Order verbs only count in a sentence that also names a test, so they can be broad.
_TEST_VERBS = (
    "order",
    "i'd like",
    "i would like",
    "i want",
    "let's",
    "lets",
    "we'll",
    "we will",
    "i'll",
    "i will",
    "i'm going to",
    "i am going to",
    "going to send",
    "send off",
    "send a",
    "send some",
    "arrange",
    "request",
    "need to do",
    "need a",
    "need an",
    "should do",
    "should get",
    "run some",
    "run a",
    "take some blood",
    "take a blood",
    "do some bloods",
    "get some bloods",
    "do a",
    "get a",
    "get an",
    "check your blood",
    "can we do",
    "can we get",
    "could we do",
    "could we get",
    "check",
    "send",
    "book",
    "dip",
    "swab",
    "repeat",
    "organise",
    "please",
    "get",
    "do",
    "test:",
)


# Questions about tests already done ("have you ever had an HIV test?") are history, not orders.
_PAST_CUES = (
    "have you ever had",
    "have you had",
    "has she had",
    "has he had",
    "did you have",
    "did she have",
    "did he have",
    "ever been tested",
    "been tested",
    "did they do",
    "last time you had",
)


@dataclass(frozen=True)
class Intents:
    """What one doctor turn does. Ids refer to the case; everything is deduplicated and ordered."""

    facts: tuple[str, ...] = ()  # facts the turn asks for (the Fact Unit decides what to release)
    missing_concepts: tuple[str, ...] = ()  # concepts asked that the case holds no fact for
    exams: tuple[str, ...] = ()  # case exam findings requested
    normal_systems: tuple[ExamSystem, ...] = ()  # systems examined that the case records nothing for
    tests: tuple[str, ...] = ()  # case tests ordered
    catalog_tests: tuple[str, ...] = ()  # tests ordered that the case does not list (reported normal)
    diagnosis: str | None = None
    plan: str | None = None
    greeting: bool = False
    empathy: bool = False
    goodbye: bool = False
    rude: bool = False
    open_question: bool = False
    asks_results: bool = False
    asks_diagnosis: bool = False  # the doctor asks the patient for the diagnosis
    jargon: tuple[str, ...] = ()  # jargon words the doctor used
    unmatched: bool = True  # nothing at all was understood

    @property
    def requests_examiner(self) -> bool:
        return bool(self.exams or self.normal_systems or self.tests or self.catalog_tests)


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


@dataclass
class CompiledCase:
    """Everything the patient needs about a case, precomputed. Build with :func:`compile_case` (cached)."""

    case: Case
    automaton: object = field(repr=False)
    concept_facts: dict[str, tuple[str, ...]] = field(repr=False)
    system_exams: dict[ExamSystem, tuple[str, ...]] = field(repr=False)
    diagnosis_pattern: re.Pattern[str] = field(repr=False)  # on lower-cased text
    diagnosis_abbrev: re.Pattern[str] | None = field(repr=False)  # short all-caps names, on the original text
    fact_signature: dict[str, frozenset[str]] = field(repr=False)
    test_numbers: dict[str, frozenset[str]] = field(repr=False)
    test_grams: dict[str, frozenset[str]] = field(repr=False)
    facts: dict[str, object] = field(repr=False, default_factory=dict)  # id -> Fact
    exams: dict[str, object] = field(repr=False, default_factory=dict)  # id -> ExamFinding
    tests: dict[str, object] = field(repr=False, default_factory=dict)  # id -> TestResult
    # Every fact a key reaches, at any tier, sensitive facts included: used only to narrow a concept to the facts
    # a sentence also names directly, never to add facts.
    concept_reach: dict[str, frozenset[str]] = field(repr=False, default_factory=dict)
    # The literal strings the two diagnosis patterns are built from (lower-cased names, abbreviations as written):
    # a pattern can match only text holding one of them, so a plain substring test can skip the regex.
    # None: unknown, always run the patterns.
    diagnosis_needles: tuple[tuple[str, ...], tuple[str, ...]] | None = field(repr=False, default=None)
    # The last few parses, so the verifier grading an episode reuses what the patient parsed during it.
    _recent: dict[str, Intents] = field(repr=False, compare=False, default_factory=dict)

    def parse(self, utterance: str) -> Intents:
        """What ``utterance`` does (always parsed afresh; the result is remembered for :meth:`parse_recent`)."""
        intents = _parse(self, utterance)
        with _CACHE_LOCK:
            self._recent[utterance] = intents
            if len(self._recent) > _RECENT_SIZE:
                del self._recent[next(iter(self._recent))]  # oldest first
        return intents

    def parse_recent(self, utterance: str) -> Intents:
        """Like :meth:`parse`, reusing a recent parse of the same utterance (parsing is a pure function of the
        case and the text, and :class:`Intents` is immutable). For graders of episodes just played."""
        hit = self._recent.get(utterance)
        return hit if hit is not None else self.parse(utterance)

    def find_diagnosis(self, text: str) -> str | None:
        """The first diagnosis name or synonym in ``text``, if any."""
        m = self.diagnosis_pattern.search(text.lower())
        if m:
            return m.group(0)
        m = self.diagnosis_abbrev.search(text) if self.diagnosis_abbrev else None
        return m.group(0) if m else None


class _Automaton:
    """Phrase -> payloads, over normalized, space-padded text. Uses pyahocorasick when installed (the fast path);
    otherwise a pure-Python scan over phrases grouped by first word, so the core install needs no C extension."""

    def __init__(self, table: dict[str, list[tuple[str, str]]]):
        # Payloads are interned (shared across compiled cases); the phrase table is kept only for the pure-Python
        # scan, since the C automaton holds its own (phrase, payload) pairs.
        payloads = {p: _intern(tuple(dict.fromkeys(v))) for p, v in table.items()}
        try:
            import ahocorasick
        except ImportError:
            ahocorasick = None
        if ahocorasick is not None:
            a = ahocorasick.Automaton()
            for phrase, payload in payloads.items():
                a.add_word(phrase, _intern((phrase, payload)))
            a.make_automaton()
            self._ac = a
        else:
            self.table = payloads
            self._ac = None
            by_first: dict[str, list[str]] = defaultdict(list)
            for phrase in self.table:
                by_first[phrase.split()[0]].append(phrase)
            self._by_first = dict(by_first)

    def iter(self, norm: str):
        """Yield (start offset, phrase, payloads) for every occurrence."""
        if self._ac is not None:
            for end, (phrase, payload) in self._ac.iter(norm):
                yield end - len(phrase) + 1, phrase, payload
            return
        pos = 0
        for w in norm.split(" "):
            if w:
                for phrase in self._by_first.get(w, ()):
                    start = pos - 1
                    if norm.startswith(phrase, start):
                        yield start, phrase, self.table[phrase]
            pos += len(w) + 1


PhraseIndex = _Automaton  # public name: agents index their own phrases with it


def _exam_variants(phrases) -> list[str]:
    """Exam phrases plus their "examination" spelling: the stemmer keeps "exam" and "examin" apart, and authors
    write "rectal exam" where doctors say "a rectal examination"."""
    out = list(phrases)
    for p in phrases:
        low = p.lower()
        if low.endswith(" exam"):
            out.append(low + "ination")
        elif low.endswith(" examination"):
            out.append(low[: -len("ination")])
    return out


def _key(phrase: str) -> str | None:
    """The normalized key of a phrase, or None when it has no words. Memoized: most phrases of every case are
    the shared lexicon's, so compiling a case mostly looks keys up, and compiled cases share the key strings."""
    hit = _KEYS.get(phrase, _NO_KEY)
    if hit is _NO_KEY:
        n = normalize(phrase)
        hit = n if n.strip() else None
        if len(_KEYS) < _INTERN_MAX:
            _KEYS[phrase] = hit
    return hit


def _intern(value: tuple) -> tuple:
    """One shared copy of an immutable payload: the lexicon's phrases carry equal payloads in every case."""
    if len(_INTERNED) >= _INTERN_MAX:
        return value
    return _INTERNED.setdefault(value, value)


_NO_KEY = object()
_KEYS: dict[str, str | None] = {}
_INTERNED: dict[tuple, tuple] = {}
# Bounds both tables (the lexicon holds a few thousand phrases; cases add a few hundred).
_INTERN_MAX = 1 << 17


def _build(case: Case) -> CompiledCase:
    table: dict[str, list[tuple[str, str]]] = defaultdict(list)

    def add(phrases, kind: str, target: str) -> None:
        for p in phrases:
            k = _key(p)
            if k:
                table[k].append((kind, target))

    # Which facts answer a concept: a fact answers its own keys; when it is not sensitive, its SOCRATES leaves also
    # answer the shared "pain.<leaf>" keys and its parent keys reach it (sensitive needs a direct question).
    # Two tiers: a fact holding a key (or an equivalent) answers it directly; a fact holding only a child key
    # ("headache.frequency" under "headache") is reached through the parent only when no fact holds the key
    # itself, so a plain "any headaches?" gets the headache fact, not every fact that mentions headaches.
    direct: dict[str, list[str]] = defaultdict(list)
    inherited: dict[str, list[str]] = defaultdict(list)
    reach: dict[str, set[str]] = defaultdict(set)
    for f in case.facts:
        keys, parents = set(), set()
        for k in f.concepts:
            keys.add(k)
            keys.update(lx.ALIASES.get(k, ()))  # equivalent shared keys (allowed for sensitive facts too)
            parts = k.split(".")
            for key in (k, *lx.ALIASES.get(k, ()), *(".".join(parts[:i]) for i in range(1, len(parts)))):
                reach[key].add(f.id)
            if not f.sensitive:  # shared aliases and parents widen reach: never for a sensitive fact
                if _leaf(k) in SOCRATES_LEAVES:
                    keys.add(f"pain.{_leaf(k)}")
                if _leaf(k) in _PREVIOUS_LEAVES and "." in k:
                    keys.add("previous_episodes")  # "headache.previous" answers "had this before?"
                parts = k.split(".")
                parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
        for k in sorted(keys):
            direct[k].append(f.id)
        for k in sorted(parents - keys):
            inherited[k].append(f.id)
        add(f.synonyms, "fact", f.id)
        add(f.lay_terms, "fact", f.id)
    concept_facts = {k: direct.get(k) or inherited[k] for k in (*direct, *inherited)}
    for key, (_, phrases) in lx.CONCEPTS.items():
        add(phrases, "concept", key)

    system_exams: dict[ExamSystem, list[str]] = defaultdict(list)
    for e in case.exam:
        add(_exam_variants([*e.synonyms, e.name]), "exam", e.id)
        system_exams[e.system].append(e.id)
    for system, (phrases, _) in lx.EXAM_SYSTEMS.items():
        add(_exam_variants(phrases), "system", system.value)
    for t in case.tests:
        add([*t.synonyms, t.name], "test", t.id)
    # A catalog test the case also lists (same name or a shared phrase) releases the case's result.
    case_test_keys = {t.id: {_key(p) for p in (*t.synonyms, t.name)} - {None} for t in case.tests}
    for name, (phrases, _) in lx.TEST_CATALOG.items():
        keys = {_key(p) for p in (*phrases, name)} - {None}
        same = [tid for tid, tk in case_test_keys.items() if keys & tk]
        for p in (*phrases, name):
            for tid in same:
                add([p], "test", tid)
            if not same:
                add([p], "catalog", name)

    for kind, phrases in (
        ("greeting", lx.GREETING),
        ("empathy", lx.EMPATHY),
        ("goodbye", lx.GOODBYE),
        ("rude", lx.RUDE),
        ("dismissive", lx.DISMISSIVE),
        ("open", lx.OPEN_QUESTION),
        ("plan", lx.PLAN_CUES),
        ("diagnosis", lx.DIAGNOSIS_CUES),
        ("results", lx.RESULTS_ASK),
        ("exam_verb", _EXAM_VERBS),
        ("strong_exam_verb", _STRONG_EXAM_VERBS),
        ("test_verb", _TEST_VERBS),
        ("past_cue", _PAST_CUES),
        (
            "asks_dx",
            (
                "what is your diagnosis",
                "what's your diagnosis",
                "what do you think i have",
                "what is wrong with you",
                "what's wrong with you",
                "tell me your diagnosis",
                "what's the diagnosis",
                "what is the diagnosis",
            ),
        ),
    ):
        add(phrases, "intent", kind)

    names = sorted({n.strip() for n in case.diagnosis.names if n.strip()}, key=len, reverse=True)
    # Full names match case-insensitively; short all-caps abbreviations ("MS", "AF", "TB") only as written, so
    # the "ms" of "120 ms" is not a diagnosis.
    short = [n for n in names if len(n) <= 3 and n.isupper()]
    long_names = [n for n in names if n not in short] or names
    abbrev = (
        re.compile("|".join(r"(?<![A-Za-z0-9])" + re.escape(n) + r"(?![A-Za-z0-9])" for n in short))
        if short
        else None
    )
    dx = re.compile("|".join(r"(?<![a-z0-9])" + re.escape(n.lower()) + r"(?![a-z0-9])" for n in long_names))

    opening = set(normalize(case.opening_statement).split())
    signature = {}
    for f in case.facts:
        toks = {t for t in normalize(f.patient_text).split() if len(t) > 2 and t not in _STOP}
        signature[f.id] = frozenset(toks - opening)
    # Distinctive numbers of each result (three or more characters: "1840", "11.2") and its 4-word runs.
    numbers = {
        t.id: frozenset(n for n in re.findall(r"\d+(?:\.\d+)?", t.value) if len(n) >= 3) for t in case.tests
    }
    grams = {}
    for t in case.tests:
        toks = normalize(t.value).split()
        grams[t.id] = frozenset(" ".join(toks[i : i + 4]) for i in range(len(toks) - 3))

    return CompiledCase(
        case=case,
        automaton=_Automaton(table),
        concept_facts={k: tuple(dict.fromkeys(v)) for k, v in concept_facts.items()},
        concept_reach={k: frozenset(v) for k, v in reach.items()},
        system_exams={k: tuple(v) for k, v in system_exams.items()},
        diagnosis_pattern=dx,
        diagnosis_abbrev=abbrev,
        diagnosis_needles=(tuple(n.lower() for n in long_names), tuple(short)),
        fact_signature=signature,
        test_numbers=numbers,
        test_grams=grams,
        facts={f.id: f for f in case.facts},
        exams={e.id: e for e in case.exam},
        tests={t.id: t for t in case.tests},
    )


_STOP = frozenset(
    normalize(
        "the and but for not you your yes was were have has had been with that this them they what when where which "
        "who how its it's just really about like feel felt get got some any all one two now then there their our out "
        "from into over very much more most little bit lot well good yeah okay dont didnt cant wont think know said "
        "also too only even ever never always sometimes because since after before would could should can will did "
        "does doing done make made take took thing things time day days week weeks month months year years ago "
        "last first back right left mean sure doctor i'm i've i'd i'll it's that's there's haven't hasn't wasn't "
        "isn't aren't weren't didn't doesn't don't won't can't couldn't wouldn't shouldn't i'm we're you're they're "
        "he's she's my me mine myself him her she he we us an a of to in on at by or if so as no yes be am is are "
        "than then these those here other another every each both either any anything something nothing"
    ).split()
)

_CACHE: OrderedDict[int, tuple[Case, CompiledCase]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4096
_RECENT_SIZE = 32  # parses remembered per compiled case: an episode's doctor turns, a few episodes deep


def compile_case(case: Case) -> CompiledCase:
    """The compiled form of ``case``, built on first use and cached (keyed by object identity)."""
    key = id(case)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] is case:
            _CACHE.move_to_end(key)
            return hit[1]
    compiled = _build(case)
    with _CACHE_LOCK:
        _CACHE[key] = (case, compiled)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled


def _longest(matches):
    """Drop content matches nested inside a longer content match ("allergies to medicines" beats "medicines").

    Intent cues are kept regardless: "i'd like an ECG" must see both the order verb and the test name.
    """
    content, cues = [], []
    for start, phrase, payload in matches:
        (cues if all(k == "intent" for k, _ in payload) else content).append((start, phrase, payload))
    content.sort(key=lambda m: (-len(m[1]), m[0]))
    kept: list[tuple[int, int]] = []
    out = []
    for start, phrase, payload in content:
        end = start + len(phrase)
        if any(s <= start and end <= e for s, e in kept):
            # A phrase may be both content and a cue ("dip" names urinalysis and is an order verb): the nested
            # content goes, the cue stays.
            cue = tuple(p for p in payload if p[0] == "intent")
            if cue:
                cues.append((start, phrase, cue))
            continue
        kept.append((start, end))
        out.append((start, phrase, payload))
    return cues + out


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(text) if s and s.strip()]


def _parse(cc: CompiledCase, utterance: str) -> Intents:
    if not isinstance(utterance, str):
        raise TypeError(f"a doctor utterance must be a str, got {type(utterance).__name__}")
    text = clean(utterance)
    facts: dict[str, None] = {}
    missing: dict[str, None] = {}
    exams: dict[str, None] = {}
    systems: dict[ExamSystem, None] = {}
    tests: dict[str, None] = {}
    catalog: dict[str, None] = {}
    flags: set[str] = set()
    diagnosis = plan = None
    carried: str | None = None
    for raw in _sentences(text):
        prefix = _PREFIX.match(raw)
        forced = prefix.group(1).upper() if prefix else carried
        carried = (
            forced if forced in ("DIAGNOSIS", "PLAN") else None
        )  # these prefixes carry on to later sentences
        body = raw[prefix.end() :] if prefix else raw
        norm = normalize(body)
        hits: dict[str, list[tuple[int, str]]] = defaultdict(list)
        intents: set[str] = set()
        for start, _phrase, payload in _longest(cc.automaton.iter(norm)):
            for kind, target in payload:
                if kind == "intent":
                    intents.add(target)
                else:
                    hits[kind].append((start, target))
        flags |= intents & {"greeting", "empathy", "goodbye", "rude", "open", "results", "asks_dx"}
        exam_hits = hits["exam"] or hits["system"]
        test_hits = hits["test"] or hits["catalog"]
        question = body.rstrip().endswith("?")
        # A sentence may both examine and order ("check your pulse and send a blood count"). Generic verbs
        # ("check", "take") examine only when no test is named; strong ones ("listen to") always do. A statement
        # (not a question) naming a test is an order even without a verb: "Urgent U&Es and an ECG, please."
        # "Have you ever had an HIV test?" asks about the past: it orders nothing.
        is_test = forced == "TEST" or (
            forced is None
            and bool(test_hits)
            and not (question and "past_cue" in intents)
            and ("test_verb" in intents or "exam_verb" in intents or not question)
        )
        is_exam = forced == "EXAM" or (
            forced is None
            and bool(exam_hits)
            and ("strong_exam_verb" in intents or ("exam_verb" in intents and not is_test))
        )
        if forced == "DIAGNOSIS" or (
            forced is None
            and "diagnosis" in intents
            and "asks_dx" not in intents
            and not body.rstrip().endswith("?")
        ):
            diagnosis = f"{diagnosis} {body.strip()}".strip() if diagnosis else body.strip()
            continue
        if forced == "PLAN" or (forced is None and "plan" in intents and not body.rstrip().endswith("?")):
            plan = f"{plan} {body.strip()}".strip() if plan else body.strip()
            continue
        if is_exam:
            case_exams = [t for _, t in hits["exam"]]
            exams.update(dict.fromkeys(case_exams))
            test_starts = {start for start, _ in hits["test"]} if is_test else set()
            exam_starts = {start for start, _ in hits["exam"]}
            for start, sys_value in hits["system"]:
                if start in test_starts:
                    continue  # "thyroid" named as a test is not a request to examine the thyroid
                if start in exam_starts:
                    continue  # "look in your ears" names the case's otoscopy: not every ENT exam of the case
                system = ExamSystem(sys_value)
                found = cc.system_exams.get(system, ())
                if found:
                    if not any(e in case_exams for e in found):
                        exams.update(dict.fromkeys(found))
                elif not case_exams:
                    systems[system] = None
        if is_test:
            tests.update(dict.fromkeys(t for _, t in hits["test"]))
            catalog.update(dict.fromkeys(t for _, t in hits["catalog"]))
        if is_exam or is_test:
            continue
        if "dismissive" in intents:
            continue
        fact_hits = [fid for _, fid in hits["fact"]]
        concept_hits = [key for _, key in hits["concept"]]
        if "family_history" in concept_hits or any(cc.facts[f].category.value == "family" for f in fact_hits):
            # "Does anyone in your family have heart trouble?" asks about the family, not the patient (a fact that
            # records family history among other things, e.g. "no sudden deaths in the family", still counts).
            fact_hits = [
                f
                for f in fact_hits
                if cc.facts[f].category.value == "family"
                or any(k.startswith("family_history") for k in cc.facts[f].concepts)
            ]
            concept_hits = [k for k in concept_hits if k.startswith("family_history")]
        for fid in fact_hits:
            facts[fid] = None
        named = set(fact_hits)
        for key in concept_hits:
            answered = cc.concept_facts.get(key, ())
            if answered:
                # A fact's own phrase picks among the facts of a shared concept in the same sentence: in
                # "which inhalers and tablets do you take?", "inhalers" names the regular-medicines fact, so
                # "tablets" does not also reach the rescue-pack and reliever facts.
                reach = cc.concept_reach.get(key, ())
                picked = [f for f in named if f in reach]
                facts.update(dict.fromkeys(picked or answered))
            elif key in lx.CONCEPTS:
                missing[key] = None
    # A missing concept is not missing when a fact of the same topic was matched directly in the same turn.
    asked_keys = {k for fid in facts for k in cc.facts[fid].concepts} if facts else set()
    missing = {k: None for k in missing if k not in asked_keys}
    jargon = tuple(dict.fromkeys(w for w in words(text) if w in lx.JARGON))
    unmatched = not (facts or missing or exams or systems or tests or catalog or diagnosis or plan or flags)
    return Intents(
        facts=tuple(facts),
        missing_concepts=tuple(missing),
        exams=tuple(exams),
        normal_systems=tuple(systems),
        tests=tuple(tests),
        catalog_tests=tuple(catalog),
        diagnosis=diagnosis,
        plan=plan,
        greeting="greeting" in flags,
        empathy="empathy" in flags,
        goodbye="goodbye" in flags,
        rude="rude" in flags,
        open_question="open" in flags,
        asks_results="results" in flags,
        asks_diagnosis="asks_dx" in flags,
        jargon=jargon,
        unmatched=unmatched,
    )
