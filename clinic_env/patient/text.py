"""Text normalisation shared by the matcher, the checks and the examiner.

``normalize`` lowercases, drops control characters and punctuation, and reduces each word to a crude stem so that
"smoke", "smoking" and "smoker" meet. The stemmer is our own few lines (suffix stripping), chosen over a full
Porter stemmer because phrases and utterances go through the same function, so consistency matters more than
linguistic accuracy, and it keeps ``import clinic_env`` free of NLP dependencies.
"""

from __future__ import annotations

import re
import unicodedata

_NON_WORD = re.compile(r"[^a-z0-9]+")
_APOSTROPHE = re.compile(r"['’`]")
_SUFFIXES = ("ations", "ation", "ings", "ing", "ness", "ers", "ies", "ied", "ed", "er", "es", "ly", "s")
_KEEP = frozenset(
    {
        "is",
        "was",
        "has",
        "does",
        "this",
        "his",
        "yes",
        "us",
        "gas",
        "plus",
        "pus",
        "bus",
        "virus",
        "less",
        "loss",
        "stress",
        "dizziness",
        "illness",
        "weakness",
        "numbness",
        "tiredness",
        "sickness",
        "breathlessness",
        "always",
        "sometimes",
        "perhaps",
        "times",
        "physics",
        "diabetes",
        "herpes",
        "rabies",
        "scabies",
        "measles",
        "mumps",
        "tetanus",
        "news",
        "series",
        "species",
        "feces",
        "faeces",
        "lymph",
        "glasses",
        "stairs",
        "jaundice",
        "other",
        "over",
        "never",
        "ever",
        "water",
        "fever",
        "after",
        "ulcer",
        "cancer",
        "liver",
        "bladder",
        "finger",
        "shoulder",
        "under",
        "whether",
        "either",
        "sugar",
        "hunger",
        "matter",
        "better",
        "daughter",
        "mother",
        "father",
        "brother",
        "sister",
        "partner",
        "number",
        "paper",
        "river",
        "september",
        "october",
        "november",
        "december",
        "anger",
        "danger",
        "bed",
        "red",
        "need",
        "feed",
        "seed",
        "speed",
        "bleed",
        "shed",
        "weed",
        "here",
        "there",
        "where",
        "were",
        "some",
        "none",
        "one",
        "done",
        "gone",
        "sure",
        "during",  # not "dur", the stem of "duration"
    }
)


def stem(word: str) -> str:
    """The crude stem of one lower-cased word (memoized: the same words recur in every turn and rubric)."""
    cached = _STEMS.get(word)
    if cached is None:
        cached = _stem(word)
        if len(_STEMS) < _STEMS_MAX:  # bounded: novel tokens (numbers, LLM noise) must not grow it forever
            _STEMS[word] = cached
    return cached


# A plain dict rather than functools.lru_cache: a hit is one dict lookup, which matters on this hot path.
_STEMS: dict[str, str] = {}
_STEMS_MAX = 1 << 16


def _stem(word: str) -> str:
    if len(word) <= 3 or word in _KEEP or word.isdigit():
        return word
    if word[-1] == "s" and word[:-1] in _KEEP:
        return word[:-1]  # "fevers" meets "fever" (otherwise the "-ers" suffix makes it "fev")
    for suf in _SUFFIXES:
        # "-ly" needs a stem of four letters: "early" must not become "ear", "belly" not "bel".
        if word.endswith(suf) and len(word) - len(suf) >= (4 if suf == "ly" else 3):
            word = word[: -len(suf)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # "stopp" -> "stop", "swell" stays
    if word.endswith("e") and len(word) >= 4:
        word = word[:-1]  # "smoke" -> "smok" meets "smoking"; "make" -> "mak" meets "makes"
    return word


_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # the category-C characters of ASCII, less \t \n


def clean(text: str) -> str:
    """Drop control and format characters; keep letters, digits, punctuation and emoji."""
    if text.isascii():  # fast path, same result: in ASCII only these control characters are category C
        return _ASCII_CONTROL.sub("", text)
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t")


_CONTRACTIONS = (
    (re.compile(r"\bcan['’`]t\b"), "can not"),
    (re.compile(r"\bwon['’`]t\b"), "will not"),
    (re.compile(r"n['’`]t\b"), " not"),
    (re.compile(r"['’`]ll\b"), " will"),
    (re.compile(r"['’`]re\b"), " are"),
    (re.compile(r"['’`]ve\b"), " have"),
    (re.compile(r"\bi['’`]m\b"), "i am"),
)


def words(text: str) -> list[str]:
    t = text.lower()
    if not t.isascii():  # NFKD leaves ASCII unchanged
        t = unicodedata.normalize("NFKD", t)
    # Expand contractions first: "we'll" is "we will", not "well" (which would meet a "Wells score").
    # Every contraction pattern and _APOSTROPHE needs an apostrophe, so text without one skips them all.
    if "'" in t or "’" in t or "`" in t:
        for pattern, repl in _CONTRACTIONS:
            t = pattern.sub(repl, t)
        t = _APOSTROPHE.sub("", t)
    return [w for w in _NON_WORD.split(t) if w]


def normalize(text: str) -> str:
    """Space-padded stemmed words: ``" do you smok "``. Pad so phrases match on word boundaries."""
    return " " + " ".join([stem(w) for w in words(text)]) + " "


def contains_phrase(norm_text: str, phrase: str) -> bool:
    """Whether an already normalized text contains ``phrase`` (normalized here) on word boundaries."""
    p = normalize(phrase)
    return p.strip() != "" and p in norm_text
