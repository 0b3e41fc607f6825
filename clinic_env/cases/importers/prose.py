"""Free-text vignettes (MediQ, NEJM) sorted into what the patient tells, what the examiner finds and what tests show.

Each sentence is classed by cue words: vital signs and examination wording go to the examiner as findings; results
of laboratory, imaging, pathology and other tests become test results (named from the sentence: "A culture of the
joint fluid shows ..." is the test "Culture of the joint fluid"); what a clinician did ("IV fluids are started")
is kept out of the patient's facts; a sentence that only states age and sex is mapped to the demographics; the rest
is history. A sentence that continues the previous result without naming a test ("Bacteria does not ferment
maltose.") is appended to that result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..schema import ExamSystem, FactCategory
from . import _nlp as nlp
from .base import ExamItem, HistoryItem, TestItem

_VITALS = re.compile(
    r"\b(?:blood pressure|pulse|heart rate|temperature|respirations?|respiratory rate|oxygen saturation|"
    r"pulse oximetry|spo2|vital signs|bmi|body mass index)\b",
    re.IGNORECASE,
)
_EXAM = re.compile(
    r"\b(?:examination|exam\b|on exam|physical exam|auscultation|palpation|percussion|inspection|"
    r"appears?\s+(?:to\s+be\s+)?(?:\w+ly\s+)?(?:pale|ill|unwell|well|emaciated|in\s+distress|distressed|lethargic|"
    r"cachectic|jaundiced|cyanotic|diaphoretic|drowsy|confused|toxic|dehydrated|comfortable|uncomfortable|anxious|"
    r"agitated|tired|sick|thin|obese|malnourished|flushed|sweaty|short|tall|healthy|older|younger)|is alert|oriented|tender|tenderness|murmurs?|breath sounds|lungs are|the lungs|abdomen is|reflexes|"
    r"mucous membranes|capillary refill|jugular|pupils?|funduscop|fundoscop|otoscop|dermoscop|afebrile|"
    r"is febrile|was noted|were noted|observed on|observed in|were observed|was observed|on physical|distended|"
    r"breaths\b|breath has|odor|odour|skin is|rash is|gait is|strength is|sensation is|palpable|nontender|"
    r"non-tender|cooperate|pulses? (?:is|are|was|were)|complexion|pallor|physician finds|on arrival)\b",
    re.IGNORECASE,
)
# "Patient's MCV is 79 fL": a named quantity with a laboratory unit.
_LAB_VALUE = re.compile(
    r"\b(?:is|are|was|were|of)\s+[<>≤≥~]?\s*\d[\d.,]*\s*(?:%|fl\b|mg\b|mg/|g/dl|g/l|mmol|meq|µ?mol|u/l|iu|ng|pg|"
    r"/mm|×|x\s*10|cells|mm/h|sec\b|seconds)",
    re.IGNORECASE,
)
_TEST = re.compile(
    r"\b(?:laborator\w*|labs?\b|serum|plasma|blood (?:test|count|culture|smear|work|film)|hemoglobin|haemoglobin|"
    r"hematocrit|leukocyte|platelet|count (?:is|was|of)|concentration|levels? (?:is|are|was|were|of)|x-?rays?|"
    r"radiograph\w*|ct\b|computed tomography|mri\b|magnetic resonance|ultrasound|ultrasonograph\w*|sonograph\w*|"
    r"echocardiograph\w*|ecg|ekg|electrocardiogra\w*|biops\w+|culture|gram stain|smear|urinalysis|"
    r"urine (?:analysis|test|culture|dipstick|studies|toxicology)|analysis (?:of|shows|showed|revealed)|"
    r"aspirat\w*|cerebrospinal|csf|pcr\b|titers?|titres?|antibod\w+|assay|scan\b|mammogra\w*|endoscop\w*|"
    r"colonoscop\w*|cystoscop\w*|spirometr\w*|eeg|emg|angiogra\w*|bacteri(?:a|um)|organisms?|ferment\w*|"
    r"capsule|p(?:co2|o2)|hco3|ph\b|glucose|potassium|sodium|creatinine|bilirubin|troponin|lavage|histolog\w*|"
    r"histopatholog\w*|cytolog\w*|molecular testing|tests? (?:for|is|was|were|are|shows?|showed|revealed?)|"
    r"testing (?:was|is|showed|revealed)|dermoscopy|stain\b)",
    re.IGNORECASE,
)
_RESULT_VERB = re.compile(
    r"\b(?:shows?|showed|shown|reveals?|revealed|demonstrates?|demonstrated|is notable for|was notable for|"
    r"indicates?|indicated|confirms?|confirmed|found|is positive|is negative|was positive|was negative|"
    r"were negative|were positive|are negative|are positive)\b|\b(?:is|are|was|were|of)\s+[<>≤≥~]?\s*\d",
    re.IGNORECASE,
)
_HISTORY_CUE = re.compile(
    r"\b(?:history of|reports?|reported|complains?|complained|states?|stated|has had|had a|was diagnosed|"
    r"diagnosed with|takes|is taking|took|underwent|previous|prior|ago|years|smok|drinks|alcohol)\b",
    re.IGNORECASE,
)
_COURSE = re.compile(
    r"\b(?:is|are|was|were)\s+(?:initiated|started|administered|given|performed|scheduled|planned|begun)\b|"
    r"\b(?:physician|doctor|clinician|resident)s?\b[^.]*\b(?:orders?|ordered|prescribes?|administers?|starts?|"
    r"gives?|performs?|recommends?|decides?|plans?)\b",
    re.IGNORECASE,
)
_DEMOGRAPHIC_ONLY = re.compile(
    r"^(?:the\s+)?(?:patient|she|he)\s+is\s+(?:an?\s+)?\d+(?:\.\d+)?[\s-]*(?:years?|months?|weeks?|days?)"
    r"(?:[\s-]*old)?(?:\s+(?:male|female|man|woman|boy|girl))?\.?$|"
    r"^(?:the\s+)?patient\s+is\s+(?:an?\s+)?(?:male|female|man|woman|boy|girl)\.?$",
    re.IGNORECASE,
)
_TEST_START = re.compile(
    r"^(?:an?\s+|the\s+|his\s+|her\s+|(?:the\s+)?patient['’]s\s+)?"
    r"(?:(?:initial|repeat|subsequent|follow-up|bedside|urgent|further|routine|complete)\s+)?(?:laborator|lab\b|serum|plasma|blood|urine|"
    r"urinalysis|x-?ray|radiograph|chest x|ct\b|computed|mri\b|magnetic|ultrasound|echo|ecg|ekg|"
    r"electrocardio|biopsy|culture|gram|smear|aspirat|cerebrospinal|csf|pcr|titer|antibod|assay|scan|"
    r"mammogra|endoscop|colonoscop|spirometr|eeg|emg|angiogra|tests?\b|testing|analysis|histo|cyto|molecular|"
    r"bronchoalveolar|dermoscop|skin biopsy|lymph node biopsy|p(?:co2|o2)|hco3|ph\b|glucose|potassium|sodium|"
    r"creatinine|hemoglobin|haemoglobin|leukocyte|platelet|a\s+\w+\s+(?:test|scan|biopsy|culture))",
    re.IGNORECASE,
)


def classify(sentence: str) -> str:
    """``"vitals"``, ``"exam"``, ``"test"``, ``"course"``, ``"demographic"`` or ``"history"``."""
    s = sentence.strip()
    if _DEMOGRAPHIC_ONLY.match(s.rstrip(".") + "."):
        return "demographic"
    if _COURSE.search(s) and not re.search(
        r"\bago\b|\bpreviously\b|\bprior to (?:admission|presentation)\b|\blast\s+(?:week|month|year)\b",
        s,
        re.I,
    ):
        return "course"
    if _VITALS.search(s) and not _HISTORY_CUE.search(s):
        return "vitals"
    if _LAB_VALUE.search(s) and not _HISTORY_CUE.search(s):
        return "test"
    test = bool(_TEST.search(s))
    exam = bool(_EXAM.search(s))
    if (
        test
        and (_RESULT_VERB.search(s) or _TEST_START.match(s))
        and not (_HISTORY_CUE.search(s) and not _RESULT_VERB.search(s))
    ):
        return "test"
    if exam and not re.search(
        r"\b(?:reports?|complains?|states?|denies|says|noticed|notices)\b|\b(?:mother|father|parents?|wife|husband)\b",
        s,
        re.IGNORECASE,
    ):
        return "exam"
    if test and _RESULT_VERB.search(s):
        return "test"
    return "history"


_NAME_VERB = re.compile(
    r"^(?:(?:an?|the|his|her)\s+|(?:the\s+)?patient['’]s\s+)?(.{3,80}?)\s+(shows?|showed|shown|reveals?|revealed|"
    r"demonstrates?|demonstrated|is notable for|was notable for|were notable for|indicates?|indicated|confirms?|"
    r"confirmed|found|(?:is|are|was|were)\s+(?:positive|negative))\b[:,]?\s*(.*)$",
    re.IGNORECASE,
)
_NAME_VALUE = re.compile(
    r"^(?:(?:an?|the|his|her)\s+|(?:the\s+)?patient['’]s\s+)?([A-Za-z][\w\s\-/+–()]{0,50}?)\s+"
    r"(?:is|are|was|were|of)\s+([<>≤≥~]?\s*\d.*)$",
    re.IGNORECASE,
)


def test_from_sentence(sentence: str) -> TestItem:
    """A test result named from its sentence ("A culture of the joint fluid shows X" -> name, value)."""
    s = nlp.clean_text(sentence).rstrip(".")
    m = _NAME_VERB.match(s)
    if m and (m.group(3).strip() or re.search(r"positive|negative", m.group(2), re.IGNORECASE)):
        name, verb, rest = m.group(1), m.group(2), m.group(3).strip()
        polarity = re.search(r"positive|negative", verb, re.IGNORECASE)
        value = f"{polarity.group(0).capitalize()} {rest}".strip() if polarity else rest
    else:
        m2 = _NAME_VALUE.match(s)
        if m2:
            name, value = m2.group(1), m2.group(2)
        else:
            cue = _TEST.search(s)
            name = cue.group(0) if cue else "Investigation"
            value = s
    name = re.sub(
        r"^(?:subsequent|further|repeat|additional|initial)\s+", "", name.strip(), flags=re.IGNORECASE
    )
    # "Urine color is yellow, bacteria are absent, nitrites" is no name: take the sentence's first words.
    if ("," in name or len(name.split()) > 8) and not re.match(r"^tests?\s+for\b", name, re.IGNORECASE):
        words_ = re.findall(r"[A-Za-z0-9+\-]+", re.sub(r"^(?:an?|the)\s+", "", s, flags=re.IGNORECASE))
        name = " ".join(words_[:2])
        value = s
    if name and (len(name) == 1 or name[1:2].islower()):
        name = name[0].upper() + name[1:]
    name = name or "Investigation"
    return TestItem(name=name, value=nlp.finish(value.strip()) or nlp.finish(s))


def exam_from_sentence(sentence: str, system: ExamSystem | None = None) -> ExamItem:
    system = system or nlp.exam_system("", sentence)
    label = (
        "Vital signs"
        if system is ExamSystem.vitals
        else f"{system.value.replace('_', ' ').capitalize()} examination"
    )
    finding = re.sub(
        r"^(?:on\s+)?(?:physical\s+)?examination(?:\s+(?:shows|showed|reveals|revealed|finds|found))?[:,]?\s*",
        "",
        nlp.clean_text(sentence),
        flags=re.IGNORECASE,
    )
    return ExamItem(name=label, finding=nlp.finish(finding or sentence), system=system)


@dataclass
class Sorted:
    """Sentences of a vignette, sorted."""

    history: list[HistoryItem] = field(default_factory=list)
    exam: list[ExamItem] = field(default_factory=list)
    tests: list[TestItem] = field(default_factory=list)
    course: list[str] = field(default_factory=list)
    demographic: list[str] = field(default_factory=list)


def sort_sentences(
    sentences: list[str], *, category: FactCategory = FactCategory.hpi, section: str = ""
) -> Sorted:
    """Sort statements into history, exam findings (vital signs merged into one), test results and the rest."""
    out = Sorted()
    vitals: list[str] = []
    last = ""
    for raw in sentences:
        s = nlp.clean_text(raw)
        s = re.sub(r"^\d{1,2}\.\s+", "", s).strip()
        if not s:
            continue
        kind = classify(s)
        if kind == "history" and last == "test" and out.tests and not _HISTORY_CUE.search(s):
            prev_tokens = nlp.content_tokens(out.tests[-1].value + " " + out.tests[-1].name)
            if prev_tokens & nlp.content_tokens(s):
                kind = "continuation"
        if (
            kind == "test"
            and last == "test"
            and out.tests
            and not _TEST_START.match(s)
            and not _NAME_VERB.match(s)
        ):
            kind = "continuation"
        if (
            kind == "history"
            and last == "test"
            and out.tests
            and not _HISTORY_CUE.search(s)
            and not re.match(r"^(?:she|he|the patient|patient|her|his|they|i|you)\b", s, re.IGNORECASE)
        ):
            kind = "continuation"
        if kind == "continuation":
            t = out.tests[-1]
            out.tests[-1] = TestItem(
                t.name, f"{t.value.rstrip('.')}. {nlp.finish(s)}", t.kind, t.abnormal, t.synonyms
            )
            continue
        last = kind
        if kind == "vitals":
            vitals.append(nlp.finish(s))
        elif kind == "exam":
            out.exam.append(exam_from_sentence(s))
        elif kind == "test":
            out.tests.append(test_from_sentence(s))
        elif kind == "course":
            out.course.append(s)
        elif kind == "demographic":
            out.demographic.append(s)
        else:
            out.history.append(HistoryItem(text=s, category=category, section=section))
    if vitals:
        out.exam.insert(0, ExamItem(name="Vital signs", finding=" ".join(vitals), system=ExamSystem.vitals))
    return out


def covered(text: str, others: list[str], threshold: float = 0.6) -> bool:
    """Whether most of ``text``'s content words already appear in ``others`` (a statement said already)."""
    toks = nlp.content_tokens(text)
    if not toks:
        return True
    seen: set[str] = set()
    for o in others:
        seen |= nlp.content_tokens(o)
    return len(toks & seen) >= threshold * len(toks)


_CC_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\bcomplain(?:s|ed|ing)?\s+of\s+(.+)$",
        r"\bcomplaints?\s+of\s+(.+)$",
        r"\bbecause\s+of\s+(.+)$",
        r"\b(?:presents?|presented|comes?|came|(?:is|was)\s+brought)\b[^.]*?\bwith\s+(.+)$",
        r"\b(?:presents?|presented|comes?|came)\s+(?:to\s+[^,.]*?\s+)?for\s+(.+)$",
        r"\breports?(?!\s+that)\s+(.+)$",
        r"\bevaluation\s+of\s+(.+)$",
        r"\bwith\s+(.+)$",
    )
)


def chief_complaint(sentence: str) -> str | None:
    """The complaint of an opening sentence ("... presents with X" -> "X"); None when there is no such phrase."""
    s = nlp.clean_text(sentence).rstrip(".")
    m = next((m for p in _CC_PATTERNS if (m := p.search(s))), None)
    if not m:
        return None
    cc = re.split(r"\.[\"'”]?\s|;\s", m.group(1))[0].strip(" ,")
    cc = re.sub(r"^(?:a|an)\s+(?=\d)", "", cc)
    return cc if re.search(r"[A-Za-z]{3,}", cc) else None
