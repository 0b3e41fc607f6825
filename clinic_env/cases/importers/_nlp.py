"""Text rules shared by the importers: sentences, first-person wording, negations, concept keys, key phrases,
abnormality cues and diagnosis names.

Everything here is deterministic keyword and regex rules. We write our own few rules rather than pull in an NLP
library (spaCy, NLTK) because the core install must stay light and offline, and because the output has to meet
*our* vocabulary: concept keys come from :mod:`clinic_env.patient.lexicon`, the same phrases the rule patient
understands doctors' questions through, and phrases are compared after the patient's own
:func:`~clinic_env.patient.text.normalize`. The rules are heuristics; ``docs/importers.md`` lists what they do and
where they fail.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from clinic_env.patient import lexicon as lx
from clinic_env.patient.text import normalize

from ..schema import ExamSystem, FactCategory, TestKind

# --------------------------------------------------------------------------------------------- sentences

_ABBREV = frozenset(
    [
        "dr",
        "mr",
        "mrs",
        "ms",
        "st",
        "vs",
        "e.g",
        "i.e",
        "approx",
        "etc",
        "fig",
        "no",
        "nos",
        "jr",
        "sr",
        "u.s",
        "ca",
        "mt",
        "resp",
        "temp",
        "wt",
        "ht",
        "hr",
    ]
)
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+(?=[A-Z0-9\"'(\[])")


def clean_text(text: str) -> str:
    """Collapse whitespace and drop markdown emphasis and bullets (``**Label**:``, ``- item``)."""
    text = re.sub(r"\*\*([^*]+)\*\*\s*:?", r"\1:", text)
    text = re.sub(r"(?m)^\s*(?:[-*•]|#+)\s+", "", text)
    text = text.replace("*", "")
    return re.sub(r"\s+", " ", text).strip()


def sentences(text: str) -> list[str]:
    """Split prose into sentences; abbreviations ("Dr.", "e.g.") and initials ("C. difficile") do not split."""
    text = clean_text(text)
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        prev = text[start : m.start()].rsplit(" ", 1)[-1].lower().rstrip(".")
        if prev in _ABBREV or re.fullmatch(r"[a-z]", prev):
            continue
        piece = text[start : m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def clauses(sentence: str) -> list[str]:
    """A sentence split at "but" and semicolons (a denial and a complaint often share one sentence)."""
    parts = re.split(r";\s+|,?\s+but\s+(?=[a-z])", sentence)
    return [p.strip(" ,;") for p in parts if p and p.strip(" ,;.")]


def finish(text: str) -> str:
    """Capitalised, stripped, ending in punctuation."""
    text = re.sub(r"\s+", " ", text).strip(" ,;")
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?\"')" else text + "."


# ---------------------------------------------------------------------------------------- first person

_AGED = r"an?\s+\d+(?:\.\d+)?[\s-]*(?:year|month|week|day)s?[\s-]*old(?:\s+[a-z\-]+){0,3}?\s+"
_PERSON = (
    r"(?:patient|man|woman|boy|girl|child|infant|baby|newborn|neonate|gentleman|lady|male|female|toddler)"
)
_SUBJECT_ANY = (
    r"(?:the\s+(?:patient|pt|man|woman|boy|girl|child|infant|baby|newborn|neonate|gentleman|lady|student|"
    r"toddler|adolescent|teenager)|this\s+(?:patient|man|woman|boy|girl|child)|patient|she|he)"
)
_SUBJECT = rf"(?:{_AGED}{_PERSON}|{_SUBJECT_ANY})"  # at the start of a sentence only
_REPORT = (
    r"(?:(?:also|further|additionally|now|previously|then)\s+)?(?:reports?|reported|states?|stated|notes?|noted|"
    r"describes?|described|mentions?|mentioned|says|said|endorses?|endorsed|admits?(?:\s+to)?|admitted(?:\s+to)?|"
    r"indicates?|indicated|explains?|explained|recalls?|recalled|adds?|added|complains?\s+of|complained\s+of|"
    r"presents?\s+with|presented\s+with|has\s+been\s+experiencing|is\s+experiencing|experiences|experienced|"
    r"feels|felt|has\s+noticed|noticed|has\s+been\s+having)"
)
_PARENT = r"(?:the\s+)?(?:patient['’]s\s+|child['’]s\s+|infant['’]s\s+|baby['’]s\s+|his\s+|her\s+)?(?:mother|father|parents?|caregiver|mom|dad)"
_LEAD = re.compile(rf"^{_SUBJECT}\s+{_REPORT}\s+(that\s+)?", re.IGNORECASE)
_PARENT_LEAD = re.compile(rf"^{_PARENT}\s+{_REPORT}\s+(that\s+)?", re.IGNORECASE)
_CLAUSE_START = re.compile(r"^(?:she|he|it|they|there|these|this|the|her|his|my|i)\b", re.IGNORECASE)
_HISTORY_OF = re.compile(
    r"^an?\s+(\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|several|few)[\s-]*"
    r"(hour|day|week|month|year)s?[\s-]+history\s+of\s+(?:(?:experiencing|having)\s+)?(.+)$",
    re.IGNORECASE,
)
_ADVERB = (
    r"(?:(?:also|still|now|often|usually|always|never|recently|sometimes|occasionally|currently|only|just|"
    r"frequently|rarely|regularly|previously|then|additionally|further|typically|generally|normally|mostly)\s+)?"
)
_IRREGULAR = {
    "is": "am",
    "was": "was",
    "has": "have",
    "does": "do",
    "doesn't": "don't",
    "hasn't": "haven't",
    "isn't": "am not",
    "goes": "go",
}
# Third-person verbs that open a subjectless fragment ("Works as a designer.", "Drinks wine occasionally.").
_FRAGMENT_VERBS = frozenset(
    [
        "works",
        "drinks",
        "smokes",
        "lives",
        "uses",
        "takes",
        "exercises",
        "eats",
        "enjoys",
        "consumes",
        "travels",
        "plays",
        "attends",
        "studies",
        "walks",
        "runs",
        "sleeps",
        "has",
        "is",
        "was",
        "had",
        "quit",
        "stopped",
        "started",
        "denies",
        "reports",
        "recently",
        "occasionally",
        "lives",
        "drives",
        "owns",
        "keeps",
        "returned",
        "went",
        "visited",
        "vapes",
        "chews",
        "injects",
        "snorts",
        "teaches",
    ]
)


def deinflect(verb: str) -> str:
    """Third-person singular to first person: "has" -> "have", "drinks" -> "drink"; other forms unchanged."""
    low = verb.lower()
    if low in _IRREGULAR:
        out = _IRREGULAR[low]
    elif low.endswith("ies") and len(low) > 4:
        out = low[:-3] + "y"
    elif low.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        out = low[:-2]
    elif low.endswith("s") and not low.endswith(("ss", "us", "is", "ous")) and len(low) > 2:
        out = low[:-1]
    else:
        out = low
    return out if verb.islower() else out.capitalize() if verb[:1].isupper() else out


_HER_NOT_POSSESSIVE = frozenset(
    [
        "to",
        "and",
        "or",
        "that",
        "about",
        "with",
        "for",
        "in",
        "on",
        "at",
        "from",
        "of",
        "as",
        "by",
        "into",
        "up",
        "down",
        "out",
        "off",
        "over",
        "again",
        "too",
        "now",
        "when",
        "if",
        "because",
        "so",
        "than",
        "then",
    ]
)


def _her(m: re.Match[str]) -> str:
    nxt = m.group(2)
    word = "my" if nxt and nxt.lower() not in _HER_NOT_POSSESSIVE else "me"
    return (word.capitalize() if m.group(1)[0].isupper() else word) + m.group(0)[len(m.group(1)) :]


def _third_to_first(text: str) -> str:
    text = re.sub(r"\b(?:the\s+)?patient['’]s\b", "my", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(she|he)['’]s\s+been\b", "I've been", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(she|he)['’]s\b", "I'm", text, flags=re.IGNORECASE)
    text = re.sub(
        rf"^({_AGED}{_PERSON})\s+({_ADVERB})([A-Za-z']+)",
        lambda m: f"I {m.group(2)}{deinflect(m.group(3))}",
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(
        rf"\b({_SUBJECT_ANY})\s+({_ADVERB})([A-Za-z']+)",
        lambda m: f"I {m.group(2)}{deinflect(m.group(3))}",
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(r"\b(her)\b(?:\s+([A-Za-z']+))?", _her, text, flags=re.IGNORECASE)
    text = re.sub(r"\bhis\b", "my", text, flags=re.IGNORECASE)
    text = re.sub(r"\bhim\b", "me", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(?:her|him)self\b", "myself", text, flags=re.IGNORECASE)
    text = re.sub(r"\bthe patient\b", "me", text, flags=re.IGNORECASE)
    # Fragments: "Non-smoker, drinks wine occasionally." -> "I'm a non-smoker, I drink wine occasionally."
    text = re.sub(
        r"^(non-?smoker|ex-?smoker|former smoker|current smoker|smoker|nonsmoker)\b",
        lambda m: "I'm a " + m.group(1).lower(),
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(
        r"(^|[,;]\s+)([A-Za-z]+)\b",
        lambda m: (
            m.group(1) + ("I " + deinflect(m.group(2).lower()))
            if m.group(2).lower() in _FRAGMENT_VERBS
            and m.group(2).lower() not in ("recently", "occasionally")
            else m.group(0)
        ),
        text,
    )
    # "..., and reports new-onset difficulty walking" continues the first person.
    text = re.sub(
        rf"(\band\s+)({_REPORT}|does|doesn't|has|hasn't|{'|'.join(sorted(_FRAGMENT_VERBS - {'recently', 'occasionally', 'is', 'was', 'had'}))})\b",
        lambda m: m.group(1) + deinflect(m.group(2)) if " " not in m.group(2) else m.group(0),
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(r"^I present(?:ed)?\s+(for|to)\b", r"I've come \1", text)
    # "A 56-year-old man with known CAD presents to the ED" -> "I have known CAD and I've come to the ED".
    text = re.sub(
        r"^I (?:with|who has|who have)\s+(.+?)\s+(?:presents?|presented|comes?|came)\s+(to|for|with)\b",
        r"I have \1 and I've come \2",
        text,
    )
    text = re.sub(
        r"^I (?:with|who has|who have)\s+(.+?)\s+(?:is|was) brought\b",
        r"I have \1 and I've been brought",
        text,
    )
    text = re.sub(r"^I (?:is|was|am) brought\b", "I've been brought", text)
    text = re.sub(r"^I (?:come|came) to\b", "I've come to", text)
    text = re.sub(r"\bI am\b", "I'm", text)
    return re.sub(r"(?<![A-Za-z'])i(?![A-Za-z'])", "I", text)


def _second_to_first(text: str) -> str:
    text = re.sub(r"\byou['’]re\b", "I'm", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou['’]ve\b", "I've", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou['’]ll\b", "I'll", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou['’]d\b", "I'd", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou are\b", "I am", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou were\b", "I was", text, flags=re.IGNORECASE)
    text = re.sub(r"\byourself\b", "myself", text, flags=re.IGNORECASE)
    text = re.sub(r"\byours\b", "mine", text, flags=re.IGNORECASE)
    text = re.sub(r"\byour\b", "my", text, flags=re.IGNORECASE)
    # "you" opens a clause -> "I"; after a verb or preposition -> "me".
    text = re.sub(
        r"(^|[.,;:!?]\s*|\b(?:and|but|that|which|who|when|because|as|if|so|while|since|although)\s+)you\b",
        lambda m: m.group(1) + "I",
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(r"\byou\b", "me", text, flags=re.IGNORECASE)
    text = re.sub(r"\bI am\b", "I'm", text)
    return text


def _child_words(sex: str | None) -> tuple[str, str]:
    return (
        ("my daughter", "my daughter's")
        if sex == "female"
        else (("my son", "my son's") if sex == "male" else ("my child", "my child's"))
    )


def to_first_person(text: str, *, speaker: str = "patient", sex: str | None = None) -> str:
    """A clinician's third-person sentence as the patient (or, for a child, the parent) would say it.

    >>> to_first_person("The patient reports that she drinks wine occasionally.")
    'I drink wine occasionally.'
    >>> to_first_person("Works as a graphic designer.")
    'I work as a graphic designer.'
    >>> to_first_person("The mother reports that he has had constipation since birth.", speaker="parent")
    'He has had constipation since birth.'
    """
    text = clean_text(text).strip()
    text = re.sub(
        r"^for\s+your\s+role\s+as\s+(?:a|the)\s+patient(?:\s+actor)?,?\s*", "", text, flags=re.IGNORECASE
    )
    if not text:
        return text
    if re.search(r"\byou(?:r|rs|rself|['’](?:re|ve|ll|d))?\b", text, re.IGNORECASE) and not re.search(
        r"\b(?:she|he|the patient)\b", text, re.IGNORECASE
    ):
        return finish(_second_to_first(text))
    if speaker != "patient":
        child, childs = _child_words(sex)
        m = _PARENT_LEAD.match(text)
        if m:
            text = text[m.end() :]
        text = re.sub(
            r"\b(?:the\s+)?(?:patient|child|infant|baby|newborn|neonate|toddler|boy|girl)['’]s\b",
            childs,
            text,
            flags=re.IGNORECASE,
        )
        text = re.sub(
            r"\b(?:the|this)\s+(?:patient|child|infant|baby|newborn|neonate|toddler|boy|girl)\b",
            child,
            text,
            flags=re.IGNORECASE,
        )
        text = re.sub(rf"\b{_AGED}{_PERSON}\b", child, text, flags=re.IGNORECASE)
        text = re.sub(r"^patient\b", child, text, flags=re.IGNORECASE)
        text = re.sub(
            r"\b(?:her|his)\s+(daughter|son|child|baby|infant)\b", r"my \1", text, flags=re.IGNORECASE
        )
        first = text.split(" ", 1)[0].lower()
        if first in _FRAGMENT_VERBS and first not in ("recently", "occasionally"):
            pron = "She" if sex == "female" else "He" if sex == "male" else "My child"
            text = f"{pron} {text[0].lower()}{text[1:]}"
        return finish(text)
    m = _LEAD.match(text)
    if m:
        rest = text[m.end() :]
        h = _HISTORY_OF.match(rest)
        if h:
            n, unit, what = h.groups()
            plural = "" if n.lower() in ("1", "one", "a", "an") else "s"
            text = f"I've had {what.rstrip('.')} for {n} {unit}{plural}."
        elif m.group(1) or _CLAUSE_START.match(rest):
            text = rest
        elif re.search(r"presents?\s+with|presented\s+with|complain", m.group(0), re.IGNORECASE):
            text = "I have " + rest
        elif "experienc" in m.group(0).lower():
            text = "I've been experiencing " + rest
        elif "having" in m.group(0).lower():
            text = "I've been having " + rest
        elif "noticed" in m.group(0).lower():
            text = "I've noticed " + rest
        elif re.search(r"\bfe(?:els|lt)\b", m.group(0), re.IGNORECASE):
            text = "I feel " + rest
        elif re.match(r"^[a-z]+ing\b", rest):
            text = "I've been " + rest
        else:
            text = "I have " + rest
    elif (h := _HISTORY_OF.match(text)) is not None:
        n, unit, what = h.groups()
        plural = "" if n.lower() in ("1", "one", "a", "an") else "s"
        text = f"I've had {what.rstrip('.')} for {n} {unit}{plural}."
    return finish(_third_to_first(text))


# ------------------------------------------------------------------------------------------- negation

_NEG = re.compile(
    r"^(?:(?:the\s+)?patient\s+|she\s+|he\s+|they\s+|i\s+)?(?:also\s+)?"
    r"(?:denies|denied|deny|reports\s+no|reported\s+no|has\s+no|had\s+no|have\s+no|has\s+not\s+had|has\s+never\s+had|"
    r"has\s+not\s+experienced|no\s+history\s+of|negative\s+for|without|there\s+(?:is|was|are|were)\s+no|no)\s+"
    r"(?:any\s+|a\s+|recent\s+|known\s+|significant\s+|other\s+)*(?:history\s+of\s+)?(?:experiencing\s+|having\s+)?"
    r"(.+)$",
    re.IGNORECASE,
)
_VERBISH = re.compile(
    r"\b(?:is|are|was|were|elicits?|shows?|showed|reveals?|revealed|has|have|had|does|did|appears?|causes?|"
    r"demonstrates?)\b",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(
    r"^(?:information\s+)?(?:not\s+(?:provided|available|given|reported|specified|applicable|documented|mentioned)"
    r"|none\s+(?:provided|reported|given|mentioned)|n/?a|unknown|no\s+(?:additional\s+|other\s+|further\s+)?"
    r"(?:information|details?|data|symptoms?|findings?)\s+(?:provided|available|given|reported|mentioned|noted)"
    r"|no\s+(?:additional\s+|other\s+|further\s+)?(?:information|details?|data)|non-?contributory|unremarkable|"
    r"none|nil|normal)\.?$",
    re.IGNORECASE,
)


_PLACEHOLDER_2 = re.compile(
    r"^(?:no|not)\b.*\b(?:was|were|is|are)\s+(?:not\s+)?(?:mentioned|provided|documented|available|specified|"
    r"given|reported)\b|^not\s+applicable\b|^(?:information|details?|data)\s+(?:is\s+|are\s+)?(?:not|un)",
    re.IGNORECASE,
)


def is_placeholder(text: str) -> bool:
    """Text that records an absence of information ("Information not provided.") rather than a fact."""
    t = text.strip().rstrip(".").strip()
    return bool(_PLACEHOLDER.match(t + ".") or _PLACEHOLDER_2.match(t))


def negated_items(clause: str) -> list[str] | None:
    """The things a denial denies ("denies chest pain, palpitations, or cough" -> three items); None if no denial."""
    m = _NEG.match(clause.strip().rstrip("."))
    if not m:
        return None
    body = m.group(1).strip()
    if re.match(r"^(?:longer|more|one|difference|change|changes)\b", body, re.IGNORECASE):
        return None  # "no longer", "no more": not a denial of a finding
    parts = [p.strip() for p in re.split(r",\s*|\s+or\s+|\s+nor\s+", body) if p.strip()]
    if len(parts) > 1 and any(_VERBISH.search(p) for p in parts[1:]):
        return None  # "no X, and flexion of the neck elicits no pain": a sentence, not a list of denials
    items = []
    for p in parts:
        p = re.sub(r"^(?:and|or|nor|any|a|an)\s+", "", p, flags=re.IGNORECASE).strip(" .")
        if re.search(r"[A-Za-z]{3,}", p):
            items.append(p)
    # "past medical or surgical history": the shared head noun belongs to every item.
    if len(items) > 1:
        head = re.search(
            r"\s(history|symptoms|problems|diseases?|illness(?:es)?|complications|conditions|periods|episodes)$",
            items[-1],
        )
        if head:
            items = [
                it
                if re.search(rf"\b{head.group(1)}\b", it) or len(it.split()) > 2
                else f"{it} {head.group(1)}"
                for it in items
            ]
    return items or None


def denial_text(
    item: str, category: FactCategory, *, speaker: str = "patient", sex: str | None = None
) -> str:
    """How the patient (or a parent, about the child) voices a pertinent negative."""
    low = item.lower()
    if speaker == "patient":
        who, have, do, be = "I", "I haven't", "I don't", "I'm not"
    else:
        pron = "she" if sex == "female" else "he" if sex == "male" else "they"
        who = pron
        have = f"{pron} hasn't" if pron != "they" else "they haven't"
        do = f"{pron} doesn't" if pron != "they" else "they don't"
        be = f"{pron} isn't" if pron != "they" else "they aren't"
    if re.search(r"allerg", low):
        return (
            f"No, {do} have any allergies that we know of."
            if speaker != "patient"
            else ("I don't have any allergies that I know of.")
        )
    if re.search(
        r"\b(?:medical history|medical problems|health problems|illnesses|medical conditions)\b", low
    ):
        return f"No, {have} had any significant medical problems."
    if re.search(r"\b(?:medications?|medicines?|drugs taken)\b", low) and category is FactCategory.medication:
        return f"No, {be} taking any regular medicines."
    if category is FactCategory.family:
        return f"Not that I know of; nobody in the family has had {item}."
    del who
    if speaker == "patient":
        item = _third_to_first(item)
        item = item[0].lower() + item[1:] if item[:1].isupper() and item[1:2].islower() else item
    return f"No, {have} had {item}."


# ------------------------------------------------------------------------------------------ concepts

# Clinical vignette words the shared lexicon lacks, mapped to lexicon concept keys (used only to *assign* keys).
EXTRA_CONCEPT_PHRASES: dict[str, tuple[str, ...]] = {
    "shortness_of_breath": ("dyspnea", "dyspnoea", "short of breath", "breathless", "difficulty breathing"),
    "fever": ("febrile", "pyrexia", "fevers"),
    "vomiting": ("emesis", "vomited", "vomits", "bilious"),
    "nausea": ("nauseated",),
    "diarrhoea": ("loose stools", "watery stools", "bloody diarrhea"),
    "stool.blood": ("hematochezia", "haematochezia", "blood in stool", "bloody stool", "rectal bleeding"),
    "urine.symptoms": (
        "dysuria",
        "pain during urination",
        "painful urination",
        "burning on urination",
        "frequency",
    ),
    "urine.blood": ("hematuria", "haematuria", "blood in the urine", "blood in urine"),
    "syncope": ("passed out", "fainted", "loss of consciousness", "lost consciousness", "syncopal"),
    "itch": ("pruritic", "pruritus", "itchy"),
    "joint_pain": ("arthralgia", "arthralgias", "joint pain", "knee pain", "hip pain"),
    "myalgia": ("myalgias", "muscle pain", "muscle aches"),
    "diplopia": ("double vision", "diplopia"),
    "vision": ("blurred vision", "blurry vision", "visual", "ptosis", "drooping eyelid"),
    "weakness": ("weak", "weakness", "paresis", "hemiparesis"),
    "fatigue": ("lethargic", "lethargy", "tiredness", "malaise"),
    "drowsiness": ("somnolent", "somnolence"),
    "confusion": ("disoriented", "altered mental status", "agitation", "agitated"),
    "weight_loss": ("weight loss", "lost weight", "losing weight"),
    "rash": (
        "rash",
        "lesions",
        "patches",
        "plaques",
        "papules",
        "vesicles",
        "blisters",
        "macules",
        "nodules",
    ),
    "skin": ("skin", "darkening", "discoloration", "discolouration", "pigmentation"),
    "lumps": ("lump", "lumps", "mass", "masses", "swollen glands", "lymphadenopathy"),
    "swelling": ("swelling", "swollen", "edema", "oedema"),
    "cough": ("cough", "coughing"),
    "headache": ("headache", "headaches"),
    "dizziness": ("dizzy", "dizziness", "vertigo", "lightheaded", "light-headed", "spinning"),
    "seizure": ("seizure", "seizures", "convulsion", "convulsions", "staring spells"),
    "hearing": ("hearing loss", "hearing", "tinnitus"),
    "abdominal_pain": ("abdominal pain", "stomach pain", "belly pain", "epigastric pain", "abdominal cramps"),
    "chest_pain": ("chest pain", "chest discomfort", "chest tightness"),
    "back_pain": ("back pain", "low back pain", "lower back pain"),
    "constipation": ("constipation", "constipated", "no bowel movement"),
    "jaundice": ("jaundice", "jaundiced", "yellowing", "icteric", "yellow skin"),
    "bleeding": ("bleeding", "bruising", "bruises", "epistaxis", "nosebleeds"),
    "mobility": ("difficulty walking", "gait", "unsteady", "walking"),
    "speech": ("slurred speech", "speech"),
    "sleep": ("sleep", "insomnia", "nightmares"),
    "mood": ("depressed", "depression", "sad", "low mood", "irritable", "irritability", "mood"),
    "anxiety": ("anxious", "anxiety", "worried", "nervous"),
    "hallucinations": ("hallucinations", "hearing voices", "paranoid", "delusions"),
    "self_harm": ("suicidal", "suicide", "self-harm", "self harm"),
    "safety_at_home": (
        "domestic violence",
        "physical abuse",
        "sexual abuse",
        "abused",
        "intimate partner violence",
    ),
    "vaginal_discharge": ("vaginal discharge",),
    "smoking": ("smoker", "smokes", "smoking", "cigarettes", "pack-year", "pack years", "tobacco"),
    "alcohol": ("alcohol", "drinks", "beer", "wine", "liquor", "ethanol", "drinking"),
    "recreational_drugs": (
        "cocaine",
        "heroin",
        "marijuana",
        "cannabis",
        "methamphetamine",
        "illicit drug",
        "illicit drugs",
        "intravenous drug",
        "recreational drug",
    ),
    "medications": ("medication", "medications", "prescribed", "treated with", "started on", "regimen"),
    "allergies": ("allergy", "allergies", "allergic"),
    "family_history": ("family history",),
    "sexual_history": ("sexually active", "sexual partners", "sexual partner", "unprotected", "intercourse"),
    "contraception": ("contraceptive", "contraceptives", "condom", "condoms", "iud", "oral contraceptive"),
    "menstrual_history": ("menstrual", "menses", "menstruation", "menstrual period", "menarche", "lmp"),
    "pregnancy": ("pregnant", "pregnancy", "gestation", "gravida"),
    "obstetric_history": ("gravida", "para", "miscarriage", "delivered", "delivery", "cesarean", "caesarean"),
    "immunisations": ("immunizations", "immunisations", "vaccinations", "vaccinated", "vaccines"),
    "birth_history": ("born at", "birth", "apgar", "term delivery", "preterm", "premature"),
    "development": ("milestones", "developmental", "development"),
    "feeding": ("breastfed", "breastfeeding", "formula", "feeding", "feeds"),
    "occupation": ("works as", "employed", "occupation", "job", "student", "retired", "unemployed"),
    "living_situation": ("lives with", "lives alone", "married", "divorced", "widowed", "lives in"),
    "travel": (
        "traveled",
        "travelled",
        "returned from",
        "trip to",
        "emigrated",
        "immigrated",
        "moved from",
        "camping",
    ),
    "diet": ("diet", "vegetarian", "vegan"),
    "exercise": ("exercise", "exercises", "physical activity", "athlete", "bodybuilder", "runs", "gym"),
    "surgery": ("surgery", "operation", "underwent", "appendectomy", "cholecystectomy", "hysterectomy"),
    "past_medical_history": ("diagnosed with", "past medical history", "medical history"),
    "sick_contacts": ("sick contacts", "daycare", "day care", "classmates", "outbreak"),
    "trauma": ("fall", "fell", "injury", "injured", "accident", "trauma", "struck"),
    "appetite": ("appetite", "poor feeding"),
    "thirst": ("polydipsia", "thirsty"),
    "polyuria": ("polyuria",),
    "palpitations": ("palpitations", "racing heart", "heart racing", "pounding heart"),
    "wheeze": ("wheezing", "wheeze"),
    "sore_throat": ("sore throat", "throat pain", "odynophagia"),
    "swallowing": ("dysphagia", "difficulty swallowing", "trouble swallowing"),
    "numbness": ("numbness", "tingling", "paresthesia", "paresthesias", "paraesthesia"),
    "memory": ("memory", "forgetful", "forgetfulness", "cognitive decline"),
    "tremor": ("tremor", "tremors", "shaking"),
    "stiffness": ("stiffness", "rigidity", "stiff"),
}
# Lexicon phrases too generic to assign a concept from a statement ("fit" in "fit and well", "fall asleep").
_ASSIGN_SKIP = frozenset(
    normalize(p).strip()
    for p in (
        "fit",
        "trip",
        "car",
        "bug",
        "cost",
        "fall",
        "hair",
        "support",
        "contacts",
        "ear",
        "ears",
        "mass",
        "power",
        "tone",
        "hot",
        "work",
        "job",
        "pt",
        "bp",
        "dip",
        "eating",
        "remember",
        "focus",
        "gone up",
        "lighter",
        "heavier",
        "shake",
        "throat",
        "bowels",
        "stool",
        "poo",
        "injections up to date",
        "first time",
        "growing",
        "mobile",
        "independent",
        "duration",
        "the change",
        "period",
        "cycle",
        "bleeding between",
        "units",
        "at home",
        "substances",
        "injected",
        "partners",
        "discharge",
        "abuse",
        "how far",
        "spots",
    )
)
# SOCRATES-style details of a presenting complaint, recognised in statements.
_DETAIL_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "pain.onset",
        re.compile(
            r"\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|several|few)[\s-]*"
            r"(?:hour|day|week|month|year)s?\b|\bago\b|\bsince\b|\bbegan\b|\bstarted\b|\bonset\b|\bsudden(?:ly)?\b|"
            r"\bgradual(?:ly)?\b|\bfirst noticed\b",
            re.IGNORECASE,
        ),
    ),
    (
        "pain.duration",
        re.compile(
            r"\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|several|few)[\s-]*"
            r"(?:hour|day|week|month|year)s?\b(?!\s+ago)",
            re.IGNORECASE,
        ),
    ),
    ("pain.aggravating", re.compile(r"\bworse\b|\bworsen|\baggravat|\bexacerbat|\btrigger", re.IGNORECASE)),
    ("pain.relieving", re.compile(r"\bimprov|\bbetter\b|\brelie(?:f|ve)|\beases?\b|\bresolv", re.IGNORECASE)),
    ("pain.radiation", re.compile(r"\bradiat", re.IGNORECASE)),
    (
        "pain.timing",
        re.compile(
            r"\bintermittent|\bconstant\b|\bepisod|\bcomes and goes\b|\bat night\b|\bin the morning\b", re.I
        ),
    ),
    (
        "pain.severity",
        re.compile(r"\b(?:mild|moderate|severe|excruciating)\b|\b\d+\s*/\s*10\b", re.IGNORECASE),
    ),
    (
        "pain.character",
        re.compile(r"\b(?:sharp|dull|burning|stabbing|crushing|throbbing|aching|cramping|colicky)\b", re.I),
    ),
)
_PAIN = re.compile(
    r"\b(?:pain|painful|ache|aches|aching|hurts?|sore|tender|discomfort|cramps?)\b", re.IGNORECASE
)


@functools.lru_cache(maxsize=1)
def _concept_index() -> tuple[tuple[str, str], ...]:
    """(normalized phrase, concept key) pairs, longest phrase first."""
    pairs: dict[tuple[str, str], None] = {}
    for key, (_kind, phrases) in lx.CONCEPTS.items():
        for p in phrases:
            n = normalize(p)
            if n.strip() and n.strip() not in _ASSIGN_SKIP:
                pairs[(n, key)] = None
    for key, phrases in EXTRA_CONCEPT_PHRASES.items():
        for p in phrases:
            n = normalize(p)
            if n.strip():
                pairs[(n, key)] = None
    return tuple(sorted(pairs, key=lambda x: -len(x[0])))


_DOSE = re.compile(
    r"\b\d+(?:\.\d+)?\s*(?:mg|mcg|µg|units?|iu)\b|\b[a-z]+(?:pril|olol|statin|sartan|mab|azole|cillin|mycin|"
    r"oxacin|formin|zepam|azepam|pine|triptan|tidine|prazole|lukast|semide|thiazide|cycline|vir|parin|ximab)\b",
    re.IGNORECASE,
)


def concepts_for(text: str, *, detail: bool = False) -> list[str]:
    """Lexicon concept keys a statement answers, by keyword rules over its normalized words.

    ``detail`` adds SOCRATES keys (onset, aggravating, relieving, ...) for presenting-complaint statements.

    >>> concepts_for("Non-smoker, drinks wine occasionally.")
    ['smoking', 'alcohol']
    """
    norm = normalize(text)
    found: dict[str, int] = {}
    for phrase, key in _concept_index():
        pos = norm.find(phrase)
        if pos >= 0 and pos < found.get(key, len(norm)):
            found[key] = pos
    if _DOSE.search(text):
        found.setdefault("medications", len(norm))
    if detail:
        for key, pattern in _DETAIL_RULES:
            if pattern.search(text):
                found.setdefault(key, len(norm))
        if _PAIN.search(text):
            found.setdefault("pain.location", len(norm))  # "pain in the right knee": where it hurts
    # In order of appearance; SOCRATES details last.
    return sorted(found, key=lambda k: (k.startswith("pain."), found[k], k))


def slug(text: str, *, max_words: int = 4) -> str:
    """Lower snake_case of the first content words ("Difficulty climbing stairs" -> "difficulty_climbing_stairs")."""
    toks = [t for t in re.findall(r"[a-z][a-z0-9]*", text.lower()) if t not in _STOP]
    return "_".join(toks[:max_words])


def fallback_concept(category: FactCategory, text: str) -> str:
    s = slug(text, max_words=3)
    return f"{category.value}.{s}" if s else category.value


_CATEGORY_BY_CONCEPT: dict[str, FactCategory] = {
    **dict.fromkeys(("smoking", "alcohol", "recreational_drugs"), FactCategory.substance),
    **dict.fromkeys(("sexual_history", "sti_history"), FactCategory.sexual),
    **dict.fromkeys(
        ("medications", "medications.otc", "antibiotics", "nsaid", "anticoagulant"), FactCategory.medication
    ),
    "allergies": FactCategory.allergy,
    "family_history": FactCategory.family,
    **dict.fromkeys(("self_harm", "safety_at_home", "hallucinations"), FactCategory.psychosocial),
    **dict.fromkeys(
        ("menstrual_history", "pregnancy", "obstetric_history", "contraception", "menopause"),
        FactCategory.obstetric,
    ),
    **dict.fromkeys(("development", "feeding", "birth_history", "immunisations"), FactCategory.developmental),
    **dict.fromkeys(
        ("occupation", "living_situation", "travel", "diet", "exercise", "driving", "money", "finances"),
        FactCategory.social,
    ),
}
# Categories that a concept may impose on a sentence filed under a broader section (PMH, social, HPI).
_SPECIFIC = (
    FactCategory.allergy,
    FactCategory.family,
    FactCategory.sexual,
    FactCategory.substance,
    FactCategory.psychosocial,
    FactCategory.medication,
    FactCategory.obstetric,
    FactCategory.developmental,
)


def infer_category(text: str, concepts: Sequence[str], default: FactCategory) -> FactCategory:
    """The section's category unless the sentence is plainly about something more specific."""
    low = text.lower()
    if re.search(r"\ballerg", low):
        return FactCategory.allergy
    if re.search(
        r"\bfamily history\b|\b(?:mother|father|sister|brother|sibling|grandmother|grandfather|aunt|uncle|cousin)s?\b"
        r"(?:\s+\w+){0,3}\s+(?:has|had|have|died|was diagnosed|with|suffers)",
        low,
    ):
        return FactCategory.family
    found = [_CATEGORY_BY_CONCEPT[k] for k in concepts if k in _CATEGORY_BY_CONCEPT]
    if FactCategory.medication in found and re.search(
        r"\b(?:takes|taking|is on|has been on|uses|using|prescribed|started on)\b", low
    ):
        return FactCategory.medication
    for cat in _SPECIFIC:
        if cat in found:
            if cat is FactCategory.medication and default not in (
                FactCategory.pmh,
                FactCategory.social,
                FactCategory.medication,
            ):
                continue  # "treated with" inside the presenting story stays history
            return cat
    if default in (FactCategory.pmh, FactCategory.hpi) and FactCategory.social in found:
        return default
    if default is FactCategory.social and FactCategory.social not in found and found:
        return found[0]
    return default


def is_sensitive(category: FactCategory, concepts: Sequence[str]) -> bool:
    """Sexual history, illicit drugs, self-harm, abuse and psychosis are only told on a direct question."""
    if category in (FactCategory.sexual, FactCategory.psychosocial):
        return True
    return any(k in ("recreational_drugs", "self_harm", "safety_at_home", "sexual_history") for k in concepts)


# ------------------------------------------------------------------------------------------ key phrases

_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "by",
        "from",
        "as",
        "is",
        "was",
        "were",
        "are",
        "be",
        "been",
        "being",
        "has",
        "have",
        "had",
        "do",
        "does",
        "did",
        "not",
        "no",
        "nor",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "his",
        "her",
        "him",
        "she",
        "he",
        "they",
        "them",
        "their",
        "i",
        "my",
        "me",
        "we",
        "our",
        "you",
        "your",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "why",
        "how",
        "than",
        "then",
        "there",
        "here",
        "very",
        "more",
        "most",
        "less",
        "least",
        "any",
        "some",
        "all",
        "each",
        "both",
        "either",
        "neither",
        "such",
        "own",
        "same",
        "so",
        "too",
        "can",
        "could",
        "should",
        "would",
        "may",
        "might",
        "must",
        "will",
        "shall",
        "just",
        "only",
        "also",
        "into",
        "over",
        "under",
        "again",
        "further",
        "once",
        "up",
        "down",
        "out",
        "off",
        "above",
        "below",
        "between",
        "through",
        "until",
        "while",
        "because",
        "if",
        "about",
        "per",
        "patient",
        "patients",
        "pt",
        "reports",
        "reported",
        "report",
        "presents",
        "presented",
        "present",
        "notes",
        "noted",
        "note",
        "states",
        "stated",
        "describes",
        "described",
        "complains",
        "complain",
        "complained",
        "complaining",
        "endorses",
        "endorsed",
        "significant",
        "experiencing",
        "experience",
        "experienced",
        "symptom",
        "symptoms",
        "year",
        "years",
        "old",
        "month",
        "months",
        "week",
        "weeks",
        "day",
        "days",
        "hour",
        "hours",
        "ago",
        "recently",
        "currently",
        "prior",
        "past",
        "previous",
        "shows",
        "showed",
        "show",
        "revealed",
        "reveals",
        "reveal",
        "demonstrates",
        "demonstrated",
        "approximately",
        "several",
        "multiple",
        "time",
        "times",
        "since",
        "following",
        "after",
        "before",
        "during",
        "new",
        "onset",
        "history",
        "found",
        "finding",
        "findings",
        "observed",
        "seen",
        "evidence",
        "including",
        "include",
        "includes",
        "noticed",
        "her",
        "his",
        "their",
        "mr",
        "mrs",
        "ms",
        "well",
        "last",
        "first",
        "second",
        "third",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "associated",
        "related",
        "due",
        "left",
        "right",
        "bilateral",
    ]
)
_MEDICAL_SUFFIX = re.compile(
    r"(?:itis|osis|emia|aemia|algia|pathy|opia|uria|rrhea|rrhoea|plegia|megaly|ectomy|oma|asis|ism|cele|penia|"
    r"cytosis|trophy|phagia|pnea|pnoea|ptosis|rrhage|esis)$"
)


def key_phrases(text: str, *, limit: int = 8) -> list[str]:
    """Content-word runs of two or three words ("double vision", "climbing stairs"): ways a question can name it."""
    toks = re.findall(r"[a-z][a-z'\-]*[a-z]|[a-z]|[^a-z\s]", strip_parentheticals(clean_text(text)).lower())
    runs: list[list[str]] = [[]]
    for t in toks:
        t = t.strip("'-")
        if not t or t in _STOP or len(t) < 3 or not t[0].isalpha():
            runs.append([])
        else:
            runs[-1].append(t)
    out: dict[str, None] = {}
    for run in runs:
        if len(run) < 2:
            continue
        if len(run) <= 4:
            out[" ".join(run)] = None
        for n in (3, 2):
            for i in range(len(run) - n + 1):
                out[" ".join(run[i : i + n])] = None
    return list(out)[:limit]


def medical_terms(text: str) -> list[str]:
    """Single clinical words (by jargon list or suffix: "diplopia", "ptosis") a clinician may ask about."""
    out: dict[str, None] = {}
    for t in re.findall(r"[a-z][a-z\-]{4,}", clean_text(text).lower()):
        if t in lx.JARGON or _MEDICAL_SUFFIX.search(t):
            out[t] = None
    return list(out)


def parentheticals(text: str) -> list[str]:
    return [p.strip() for p in re.findall(r"\(([^()]{2,40})\)", text) if re.search(r"[A-Za-z]", p)]


def strip_parentheticals(text: str) -> str:
    return re.sub(r"\s*\([^()]*\)", "", text).strip()


def content_tokens(text: str) -> set[str]:
    """Stemmed content words, for overlap measures."""
    return {t for t in normalize(text).split() if len(t) > 3 and t not in _STOP_NORM and not t.isdigit()}


_STOP_NORM = frozenset(normalize(" ".join(_STOP)).split()) | frozenset(
    normalize("normal abnormal level levels test tests result results value values within range").split()
)


# ------------------------------------------------------------------------------------------ abnormality

_ABNORMAL_CUES = re.compile(
    r"\b(?:elevated|raised|high|increased|decreased|reduced|low|diminished|abnormal|positive|present|enlarged|"
    r"tender|tenderness|swelling|swollen|mass|masses|lesions?|rash|erythema|erythematous|edema|oedema|murmur|"
    r"crackles|rales|wheez\w*|rhonchi|ptosis|atrophy|deformity|effusion|consolidation|opacit\w+|infiltrates?|"
    r"fracture|consistent with|suggestive of|indicative of|evidence of|distended|distension|jaundice|jaundiced|"
    r"icterus|pallor|pale|cyanosis|cyanotic|ataxi\w*|weakness|weak|tachycardi\w*|bradycardi\w*|tachypn\w*|"
    r"hypotension|hypotensive|hypertension|hypertensive|febrile|fever|hypo\w+|hyper\w+|impaired|loss|"
    r"absent reflexes|asymmetr\w*|irregular|nodules?|nodular|plaques?|papules?|vesicles?|ulcers?|ulceration|"
    r"thickening|thickened|dilated|dilation|stenosis|obstruction|blockage|hemorrhage|haemorrhage|bleeding|"
    r"infection|infected|inflamed|inflammation|growth|detected|isolated|leukocytosis|anemia|"
    r"anaemia|thrombocytopenia|neutrophilia|eosinophilia|lymphocytosis|blasts|casts|proteinuria|"
    r"glucosuria|ketones|nitrites|bacteria|organisms|spasm|rigidity|clonus|nystagmus|hepatomegaly|"
    r"splenomegaly|lymphadenopathy|bruising|bruit|gallop|rub|guarding|rebound|dull|dullness|decreased breath)\b"
    r"|[↑↓]|\(\s*[hl]\s*\)|\b\d/5\b",
    re.IGNORECASE,
)
_NORMAL_CUES = re.compile(
    r"\b(?:normal|unremarkable|within normal (?:limits|range)|wnl|negative|no abnormalit\w+|clear|intact|"
    r"non-?tender|nontender|soft|regular|symmetric|equal|appropriate|stable|no acute|none|absent)\b",
    re.IGNORECASE,
)
_NEGATORS = re.compile(
    r"\b(?:no|not|without|non|negative for|absence of|free of|denies|denied|ruled out|nor)\b|\bnon-",
    re.IGNORECASE,
)
_CLAUSE_CUT = re.compile(r"[.;:]|\bbut\b|\bhowever\b|\balthough\b|\bwhereas\b|\bwhile\b", re.IGNORECASE)


def abnormal_cue(text: str) -> bool | None:
    """True if the text reports something abnormal, False if only normal cues, None if it says neither.

    An abnormal word counts unless a negation ("no", "without", "negative for") precedes it in the same clause:
    "Normal, no thymoma or other masses detected" is normal; "no fever but elevated CRP" is abnormal.
    """
    for m in _ABNORMAL_CUES.finditer(text):
        window = text[max(0, m.start() - 80) : m.start()]
        cuts = list(_CLAUSE_CUT.finditer(window))
        if cuts:
            window = window[cuts[-1].end() :]
        if _NEGATORS.search(window):
            continue
        return True
    if _NORMAL_CUES.search(text):
        return False
    return None


def vitals_abnormal(text: str, age_years: float) -> bool | None:
    """Adult vital-sign thresholds (fever, tachy/bradycardia, hypo/hypertension, tachypnoea, low SpO2)."""
    if age_years < 16:
        return None
    low = text.lower()
    checks = []
    for m in re.finditer(r"(\d{2,3}(?:\.\d)?)\s*°?\s*(c|f)\b", low):
        v, unit = float(m.group(1)), m.group(2)
        checks.append(v >= 38.0 or v < 35.0 if unit == "c" else v >= 100.4 or v < 95.0)
    for m in re.finditer(r"(\d{2,3})\s*/\s*(\d{2,3})\s*mm\s*hg", low):
        sys_, dia = int(m.group(1)), int(m.group(2))
        checks.append(sys_ >= 160 or sys_ < 90 or dia >= 100)
    for m in re.finditer(r"(\d{2,3})\s*(?:bpm|beats?\s*(?:per|/)\s*min|/min)", low):
        if "resp" in low[max(0, m.start() - 30) : m.start()] or "breath" in low[m.end() : m.end() + 12]:
            continue
        checks.append(int(m.group(1)) > 100 or int(m.group(1)) < 50)
    for m in re.finditer(
        r"(\d{1,2})\s*(?:breaths?\s*(?:per|/)\s*min)|resp\w*(?:\s+rate)?\D{0,12}?(\d{1,2})\s*/\s*min", low
    ):
        rr = int(m.group(1) or m.group(2))
        checks.append(rr > 22 or rr < 10)
    for m in re.finditer(r"(\d{2,3})\s*%", low):
        if re.search(r"sat|spo2|o2|oxygen|oximetry", low[max(0, m.start() - 40) : m.start()]):
            checks.append(int(m.group(1)) < 94)
    return any(checks) if checks else None


# ---------------------------------------------------------------------------------------- exam systems

_SYSTEM_RULES: tuple[tuple[ExamSystem, re.Pattern[str]], ...] = tuple(
    (s, re.compile(p, re.IGNORECASE))
    for s, p in (
        (
            ExamSystem.vitals,
            r"vital|temperature|blood pressure|heart rate|pulse rate|respiratory rate|oxygen sat|spo2|"
            r"pulse oximetry|\bbp\b|\bhr\b|\brr\b|growth param|weight|height|bmi\b",
        ),
        (
            ExamSystem.mental_state,
            r"mental status|mental state|psychiatric|affect|mood|orient|cognit|thought|behaviou?r",
        ),
        (ExamSystem.obstetric, r"obstetric|fundal height|fetal|foetal|uterine contraction|cervical dilat"),
        (
            ExamSystem.pelvic,
            r"pelvic|rectovaginal|vaginal|cervix|cervical motion|adnexa|speculum|uterus|bimanual",
        ),
        (ExamSystem.breast, r"breast|nipple|axillary mass"),
        (
            ExamSystem.genitourinary,
            r"genit|testi|scrot|penile|penis|urethr|kidney|costovertebral|cva tender|prostat|"
            r"inguinal hernia",
        ),
        (
            ExamSystem.eye,
            r"ophthalm|\beyes?\b|fundus|fundoscop|funduscop|pupil|retina|conjunctiv|visual acuity|"
            r"sclera|cornea|ocular|eyelid",
        ),
        (
            ExamSystem.ent,
            r"\bent\b|\bear|otoscop|tympanic|audiolog|hearing|oral|mouth|pharyn|throat|tonsil|nasal|"
            r"\bnose\b|sinus|oropharyn|dentition|tongue|gums?\b|weber|rinne|dix-hallpike|positional test",
        ),
        (ExamSystem.lymphatic, r"lymph"),
        (ExamSystem.head_neck, r"head and neck|\bneck\b|thyroid|\bhead\b|scalp|fontanel|jugular|jvp|trachea"),
        (
            ExamSystem.cardiovascular,
            r"cardi|heart|murmur|\bs1\b|\bs2\b|peripheral pulse|capillary refill|"
            r"vascular|extremit.*pulse|bruit|aort",
        ),
        (
            ExamSystem.respiratory,
            r"respirat|\blungs?\b|chest|pulmonary|breath sound|auscultation of the lung|"
            r"crackles|wheez|percussion note|breaths\b|breathing",
        ),
        (
            ExamSystem.abdominal,
            r"abdom|liver|spleen|bowel sound|rectal|anoscop|hernia|epigastr|\bbelly\b|perianal|"
            r"murphy|mcburney",
        ),
        (
            ExamSystem.neurological,
            r"neuro|cranial nerve|reflex|motor|strength|sensation|sensory|coordination|gait|"
            r"cerebell|romberg|tone|babinski|plantar|ataxi|tremor|power|dysmetria|nystagmus",
        ),
        (
            ExamSystem.skin,
            r"\bskin\b|derm|rash|lesion|cutaneous|nail|\bhair\b|wound|ulcer|mole|scalp lesion|"
            r"macul|papul|vesic|plaque|patch|erythema|telangiect|pigment|blister|bulla|pustul|nodul|eschar",
        ),
        (
            ExamSystem.musculoskeletal,
            r"musculoskeletal|joint|knee|\bhip\b|shoulder|elbow|wrist|\bhand\b|finger|"
            r"ankle|\bfoot\b|\bfeet\b|spine|spinal|\bback\b|extremit|\blimbs?\b|\blegs?\b|\barms?\b|muscle|tendon|"
            r"range of motion|bone",
        ),
        (
            ExamSystem.general,
            r"general|appearance|habitus|distress|hydration|nutrition|development|well-appearing",
        ),
    )
)


def exam_system(label: str, text: str = "", default: ExamSystem | None = None) -> ExamSystem:
    """The exam system a finding belongs to: by its label first, then by its text, else ``default``/general.

    Within one source the system with the most cue words wins; ties go to the earlier rule (vital signs, mental
    state and the specific organs before the broad musculoskeletal and general ones).
    """
    for source in (label, text):
        if not source:
            continue
        best, best_n = None, 0
        for system, pattern in _SYSTEM_RULES:
            n = len(pattern.findall(source))
            if n > best_n:
                best, best_n = system, n
        if best is not None:
            return best
        if source is label and default is not None:
            return default
    return default or ExamSystem.general


def exam_phrases(system: ExamSystem) -> tuple[str, ...]:
    """The shared phrases a doctor asks for this system with (from the lexicon)."""
    return lx.EXAM_SYSTEMS[system][0]


# --------------------------------------------------------------------------------------------- tests

_KIND_RULES: tuple[tuple[TestKind, re.Pattern[str]], ...] = tuple(
    (k, re.compile(p, re.IGNORECASE))
    for k, p in (
        (TestKind.ecg, r"\becg\b|\bekg\b|electrocardiogra|holter|rhythm strip"),
        (
            TestKind.imaging,
            r"x-?ray|radiograph|\bct\b|computed tomograph|\bmri\b|magnetic resonance|ultrasound|"
            r"sonogra|echocardiogra|\becho\b|mammogra|\bscan\b|angiogra|imaging|fluoroscop|barium|\bpet\b|doppler|"
            r"scintigra|dexa|cholangiogra|venogra|\bkub\b",
        ),
        (
            TestKind.pathology,
            r"biopsy|histolog|patholog|cytolog|bone marrow|flow cytometry|smear|aspirate|"
            r"immunohisto|frozen section|karyotype|genetic|dna|chromosom",
        ),
        (
            TestKind.microbiology,
            r"culture|gram stain|\bpcr\b|swab|serolog|antigen|antibod|titer|titre|elisa|"
            r"microscopy|\bkoh\b|scraping|stool (?:test|exam|ova)|ova and parasites|viral load|\bhiv\b|hepatitis|"
            r"torch|sti\b|std\b|chlamydia|gonorrh|syphilis|rpr|vdrl|tuberculin|ppd|quantiferon|monospot",
        ),
        (
            TestKind.physiology,
            r"spirometr|pulmonary function|\beeg\b|electroencephalogra|\bemg\b|electromyogra|"
            r"nerve conduction|audiometr|hearing test|audiolog|vestibular|tilt table|sleep study|polysomnogra|"
            r"autonomic|urodynamic|manometr|tympanometr|visual field|evoked potential",
        ),
        (
            TestKind.bedside,
            r"urinalysis|urine dip|dipstick|pregnancy test|\bhcg\b|capillary glucose|fingerstick|"
            r"peak flow|bladder scan|bedside",
        ),
        (
            TestKind.other,
            r"endoscop|colonoscop|cystoscop|bronchoscop|anoscop|laryngoscop|arthrocentesis|"
            r"lumbar puncture|paracentesis|thoracentesis|consult|assessment tool|questionnaire|screening tool",
        ),
    )
)
# US clinical names the shared test catalogue misses, mapped to catalogue names (so catalogue orders reach them).
_CATALOG_EXTRA: dict[str, tuple[str, ...]] = {
    "Full blood count": (
        "cbc",
        "hematology",
        "haematology",
        "leukocyte count",
        "platelet count",
        "platelets",
        "differential",
        "wbc",
        "rbc",
        "hematocrit",
        "mcv",
        "white blood cell",
        "red blood cell",
    ),
    "Urea and electrolytes": (
        "chemistry",
        "chemistries",
        "metabolic panel",
        "bmp",
        "cmp",
        "serum biochemistry",
        "blood chemistry",
        "serum chemistry",
        "serum electrolytes",
        "bun",
        "chloride",
        "bicarbonate",
        "blood urea nitrogen",
    ),
    "Liver function tests": ("liver panel", "hepatic panel", "transaminases", "ast", "albumin", "ggt"),
    "Blood glucose": ("blood glucose", "glucose level", "fasting glucose"),
    "Coagulation screen": ("coagulation profile", "coagulation studies", "prothrombin time", "ptt"),
    "Blood gas": ("arterial blood gas", "blood gases", "pco2", "po2", "hco3", "ph"),
    "ECG": ("electrocardiogram", "ekg"),
    "Urinalysis": ("urine analysis", "urine tests", "urine test"),
    "Stool tests": ("stool test", "stool examination", "stool culture", "routine stool examination", "fecal"),
    "STI screen": ("std panel", "sti screening", "sti screen", "gonorrhea", "chlamydia"),
    "HIV test": ("elisa for hiv", "hiv"),
    "Throat swab": ("throat culture", "rapid strep"),
    "Ferritin and iron studies": ("iron studies", "iron panel", "ferritin"),
    "MRI brain": ("mri brain", "brain mri", "mri of the brain", "mri head"),
    "MRI spine": (
        "mri lumbar spine",
        "mri spine",
        "mri of the spine",
        "spinal mri",
        "mri brain and spinal cord",
    ),
    "CT head": ("ct head", "head ct", "ct brain", "ct of the head"),
    "Chest X-ray": ("chest x-ray", "chest radiograph", "cxr", "chest film"),
    "Abdominal X-ray": ("abdominal x-ray", "abdominal radiograph", "kub"),
    "Ultrasound abdomen": (
        "abdominal ultrasound",
        "ultrasound of the abdomen",
        "rue ultrasound",
        "ruq ultrasound",
    ),
    "Pelvic ultrasound": ("pelvic ultrasound", "transvaginal ultrasound", "ultrasound of the pelvis"),
    "Echocardiogram": ("echocardiogram", "echocardiography", "transthoracic echo", "tte"),
    "Spirometry": ("spirometry", "pulmonary function tests", "pulmonary function test", "pft"),
    "Lumbar puncture": ("lumbar puncture", "csf analysis", "cerebrospinal fluid"),
    "Pregnancy test": ("pregnancy test", "beta-hcg", "serum hcg", "urine hcg"),
    "Blood cultures": ("blood cultures", "blood culture"),
    "C-reactive protein": ("crp", "c-reactive protein"),
    "ESR": ("esr", "erythrocyte sedimentation rate", "sedimentation rate"),
    "Thyroid function tests": ("thyroid function", "tsh", "thyroid panel", "thyroid function tests"),
    "Troponin": ("troponin",),
    "Amylase / lipase": ("lipase", "amylase"),
    "Lipid profile": ("lipid panel", "lipid profile", "cholesterol"),
    "HbA1c": ("hba1c", "hemoglobin a1c", "glycated hemoglobin"),
    "Urine culture": ("urine culture",),
    "CT abdomen and pelvis": ("ct abdomen", "ct of the abdomen", "abdominal ct", "ct abdomen and pelvis"),
    "CT pulmonary angiogram": ("ct pulmonary angiogram", "ctpa", "ct angiography of the chest"),
}


def test_kind(name: str, value: str = "") -> TestKind:
    for source in (name, value):
        for kind, pattern in _KIND_RULES:
            if pattern.search(source):
                return kind
    return TestKind.lab


@functools.lru_cache(maxsize=1)
def _catalog_keys() -> tuple[tuple[str, frozenset[str]], ...]:
    out = []
    for name, (phrases, _normal) in lx.TEST_CATALOG.items():
        keys = {normalize(p) for p in (name, *phrases, *_CATALOG_EXTRA.get(name, ()))}
        # Two-letter catalogue phrases ("pt", "bm", "lp") only as a whole name, never inside a longer one.
        out.append((name, frozenset(k for k in keys if k.strip())))
    return tuple(out)


_AMBIGUOUS_SHORT = frozenset({" bm ", " fit ", " dip ", " pt ", " ast ", " alt ", " lp ", " echo "})


def catalog_matches(name: str) -> list[str]:
    """Shared-catalogue tests a case test is (so "order an FBC" reaches a case's "Complete blood count").

    A catalogue phrase matches when it occurs in the test's name on word boundaries; a few ambiguous short ones
    ("BM", "PT", "FIT") only when they are the whole name.
    """
    norm = normalize(name)
    found = []
    for cat, keys in _catalog_keys():
        for k in keys:
            if (k in _AMBIGUOUS_SHORT and k == norm) or (k not in _AMBIGUOUS_SHORT and k in norm):
                found.append(cat)
                break
    return found


def test_synonyms(name: str) -> list[str]:
    """Names a doctor may order a test by: the name, its short forms and the catalogue entries it matches."""
    base = strip_parentheticals(name)
    out: dict[str, None] = {base.lower(): None}
    for p in parentheticals(name):
        out[p] = None
    short = re.sub(
        r"\b(?:test(?:s|ing)?|panel|screen(?:ing)?|studies|study|level|levels|results?|findings?|analysis|"
        r"profile|serum|plasma|of the)\b",
        " ",
        base,
        flags=re.IGNORECASE,
    )
    short = re.sub(r"\s+", " ", short).strip().lower()
    if short and len(short) > 2:
        out[short] = None
    for cat in catalog_matches(name):
        out[cat] = None
    return [s for s in out if s]


# ------------------------------------------------------------------------------------------ diagnosis

# (US pattern, UK spelling, UK pattern, US spelling)
_SPELLING = (
    (r"\bhem(?=[a-z])", "haem", r"\bhaem(?=[a-z])", "hem"),
    (r"(?<![a])emia\b", "aemia", r"aemia\b", "emia"),
    (r"\bedema\b", "oedema", r"\boedema\b", "edema"),
    (r"\besophag", "oesophag", r"\boesophag", "esophag"),
    (r"tumor\b", "tumour", r"tumour\b", "tumor"),
    (r"\bceliac", "coeliac", r"\bcoeliac", "celiac"),
    (r"\bpediatric", "paediatric", r"\bpaediatric", "pediatric"),
    (r"orthopedic", "orthopaedic", r"orthopaedic", "orthopedic"),
    (r"(?<!o)rrhea\b", "rrhoea", r"rrhoea\b", "rrhea"),
)


def spelling_variants(name: str) -> list[str]:
    """The name in the other spelling (US <-> UK: "leukemia" <-> "leukaemia")."""
    to_uk, to_us = name, name
    for us, uk, uk_pat, us_word in _SPELLING:
        to_uk = re.sub(us, uk, to_uk, flags=re.IGNORECASE)
        to_us = re.sub(uk_pat, us_word, to_us, flags=re.IGNORECASE)
    return [o for o in dict.fromkeys((to_uk, to_us)) if o.lower() != name.lower()]


def diagnosis_names(raw: str) -> tuple[str, list[str]]:
    """``(primary, synonyms)`` from a source's diagnosis string ("Progressive ... (PML)" -> primary + "PML")."""
    raw = clean_text(raw).strip().rstrip(".")
    synonyms: list[str] = []
    for p in parentheticals(raw):
        synonyms.append(p)
    primary = strip_parentheticals(raw) or raw
    if "’" in primary or "'" in primary:
        plain = re.sub(r"['’]s\b", "", primary)
        synonyms.append(plain)
        head = re.match(r"^([A-Z][A-Za-z\-]+)['’]s\b", primary)
        if head and len(head.group(1)) >= 5:
            synonyms.append(head.group(1))
        synonyms.append(primary.replace("’", "'"))
    for name in [primary, *synonyms]:
        synonyms += spelling_variants(name)
    seen = {primary.lower()}
    out = []
    for s in synonyms:
        s = s.strip()
        if s and s.lower() not in seen and len(s) >= 2:
            seen.add(s.lower())
            out.append(s)
    return primary, out


def _name_pattern(name: str) -> re.Pattern[str]:
    if len(name) <= 4 and name.isupper():
        return re.compile(r"(?<![A-Za-z0-9])" + re.escape(name) + r"(?![A-Za-z0-9])")
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(name) + r"(?![A-Za-z0-9])", re.IGNORECASE)


def mentions(text: str, names: Iterable[str]) -> str | None:
    """The first of ``names`` that ``text`` mentions (short all-caps names only as written)."""
    for name in sorted(names, key=len, reverse=True):
        if name and _name_pattern(name).search(text):
            return name
    return None


def redact(text: str, names: Iterable[str], replacement: str) -> str:
    for name in sorted(names, key=len, reverse=True):
        if name:
            text = _name_pattern(name).sub(replacement, text)
    return text
