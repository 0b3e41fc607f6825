"""Is a doctor turn language at all? A word-level check for garbled text.

A policy under RL pressure can drift into "keyword salad": fragments glued together (``creatininemptoms``,
``epenicillin?logypertinent``) that a keyword-based patient or grader might still reward. A real patient would not
understand such a turn, and after a few of them would give up. This module gives the simulator (and the rule
verifier) one shared judgement:

    >>> is_garbled("Have you had any chest pain, and does it go anywhere?")
    False
    >>> is_garbled("monitor }, untilorecontrulse? creatininemptoms 36 epenicillin?logypertinentweatute")
    True

A word is *known* when it is in pyspellchecker's English frequency list (about 160k words), in the project's own
clinical vocabulary (every word of the case library, the knowledge base and the patient lexicon: drug names,
abbreviations such as "ecg"), or in the caller's ``extra`` words (the case's and the conversation's own text, so a
doctor echoing the patient's "sofa-surfing" is fine). A turn is garbled when at least ``min_unknown`` of its
alphabetic words are unknown and they make up at least ``min_share`` of them: one typo, one unusual name or one
foreign word does not make a turn garbled. Text that is made of real words in a senseless order is not caught;
this is a check for non-words, not a language model.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Collection
from pathlib import Path

# Alphabetic runs within a token; "x10^9/L" gives "x" and "l", which are short and ignored below.
_WORD = re.compile(r"[a-z]+")
UNINTELLIGIBLE = "[unintelligible]"  # what a grader reads in place of a garbled doctor turn
MIN_UNKNOWN = 2
MIN_SHARE = 0.25
_MIN_LEN = 3  # one- and two-letter runs ("mg", "iv", "x") are never counted as unknown


@functools.cache
def project_vocabulary() -> frozenset[str]:
    """Every lower-case alphabetic word in the case library, the knowledge base and the patient lexicon."""
    from . import lexicon

    root = Path(__file__).resolve().parents[1] / "cases"
    vocab: set[str] = set()
    for pattern in ("library/**/*.json", "library/**/*.jsonl", "knowledge/*.yaml"):
        for path in root.glob(pattern):
            vocab.update(_WORD.findall(path.read_text(encoding="utf-8").lower()))
    vocab.update(_WORD.findall(Path(lexicon.__file__).read_text(encoding="utf-8").lower()))
    return frozenset(vocab)


@functools.cache
def _english() -> frozenset[str]:
    # pyspellchecker ships an English word-frequency list (no network); we only need its keys. Written on it rather
    # than on our own list because a doctor's everyday words are far wider than the project's text.
    from spellchecker import SpellChecker

    return frozenset(SpellChecker(language="en", distance=1).word_frequency.keys())


@functools.cache
def known_words() -> frozenset[str]:
    """The vocabulary ``unknown_words`` checks against (loaded once per process, ~0.2 s)."""
    return _english() | project_vocabulary()


_CASE_VOCAB: dict[int, tuple[object, frozenset[str]]] = {}


def case_vocabulary(case: object) -> frozenset[str]:
    """Every word of one case (a pydantic ``Case``; ``None`` gives nothing), cached per case object: imported and
    generated cases bring their own names and terms, which a doctor may fairly repeat."""
    if case is None:
        return frozenset()
    hit = _CASE_VOCAB.get(id(case))
    if hit is not None and hit[0] is case:
        return hit[1]
    vocab = frozenset(_WORD.findall(case.model_dump_json().lower()))  # type: ignore[attr-defined]
    if len(_CASE_VOCAB) > 4096:  # bounded: cases are usually few and long-lived
        _CASE_VOCAB.clear()
    _CASE_VOCAB[id(case)] = (case, vocab)
    return vocab


def unknown_words(text: str, extra: Collection[str] = ()) -> tuple[list[str], int]:
    """The unknown words of ``text`` (in order) and how many words of at least three letters it has."""
    known = known_words()
    runs = [w for w in _WORD.findall(text.lower()) if len(w) >= _MIN_LEN]
    return [w for w in runs if w not in known and w not in extra], len(runs)


_TOKEN = re.compile(r"[a-z0-9&]+")
REPEAT_RUN = 3  # the same word three times in a row ("day day day")
MIN_DISTINCT_TRIGRAMS = 0.8  # share of distinct word trigrams, for turns of at least REPEAT_MIN_WORDS words
REPEAT_MIN_WORDS = 8


def is_repetitive(text: str) -> bool:
    """Degenerate repetition, the other way a drifting policy stops making sense: a word three times in a row, or a
    turn of 8+ words in which under 80% of the word trigrams are distinct ("blood count, blood count, blood
    count", "do you take any chance you take any medical conditions? you take any..."). A doctor's list of
    questions or tests repeats words ("any ... any ...") but not whole runs of them."""
    w = _TOKEN.findall(text.lower())
    run = 1
    for a, b in itertools.pairwise(w):
        run = run + 1 if a == b else 1
        if run >= REPEAT_RUN:
            return True
    if len(w) < REPEAT_MIN_WORDS:
        return False
    trigrams = list(zip(w, w[1:], w[2:], strict=False))
    return len(set(trigrams)) < MIN_DISTINCT_TRIGRAMS * len(trigrams)


def is_garbled(
    text: str, extra: Collection[str] = (), *, min_unknown: int = MIN_UNKNOWN, min_share: float = MIN_SHARE
) -> bool:
    """Whether ``text`` is not language a patient could follow: degenerate repetition (``is_repetitive``), or at
    least ``min_unknown`` unknown words making up at least ``min_share`` of its words."""
    # The simulator's and the grader's calls pass a frozenset: the grader re-asks for each turn, so cache.
    check = _garbled_cached if isinstance(extra, frozenset) else _garbled
    return check(text, extra, min_unknown, min_share)


def _garbled(text: str, extra: Collection[str], min_unknown: int, min_share: float) -> bool:
    if is_repetitive(text):
        return True
    unknown, n = unknown_words(text, extra)
    return len(unknown) >= min_unknown and len(unknown) >= min_share * n


_garbled_cached = functools.lru_cache(maxsize=4096)(_garbled)
