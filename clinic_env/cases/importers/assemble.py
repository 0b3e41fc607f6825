"""Turn a :class:`~.base.Draft` into a validated :class:`~clinic_env.cases.Case`: the rules every format shares.

Facts
    Each history section is split into sentences, a sentence with a denial ("denies chest pain, palpitations or
    cough") into one pertinent negative per item; list items (symptoms) stay as they are. Placeholder text
    ("Information not provided.") is skipped and recorded. The category is the section's unless the sentence is
    plainly about something more specific (allergy, family, substance, sexual, medication, ...). Concept keys come
    from the patient's own lexicon (:mod:`clinic_env.patient.lexicon`) by keyword rules over the sentence, plus
    SOCRATES details (onset, aggravating, relieving, ...) for the presenting story; a fact with no lexicon concept
    gets a specific key (``hpi.difficulty_climbing_stairs``) and is reached through its own phrases: the sentence's
    content-word runs become ``lay_terms``, its clinical words and parenthesised terms ``synonyms``.

Essential facts
    The presenting complaint and every item of the source's symptom list; any fact that shares a distinctive word
    with the diagnosis' names; any fact sharing at least two distinctive words with the abnormal findings and
    results (the diagnosis' key evidence) or the presenting complaint. Pertinent negatives are not essential.
    ``diagnosis.key_evidence`` lists the essential facts and the abnormal findings and results.

The patient never says the diagnosis
    A fact's ``patient_text`` or the opening that names the diagnosis (or a synonym) has the name replaced with
    "something I can't remember the name of"; the clinician wording keeps it. A finding or result that names it
    is reported with "[diagnosis withheld]" in its place; a result keeps its full text as ``interpretation``
    (which the examiner drops when it names the diagnosis). Every replacement is recorded under
    ``extra["importer"]["redacted"]``.

Inferred and placeholder fields (recorded under ``extra["importer"]``)
    Specialty, setting, acuity and disposition by keyword rules; a default persona (name drawn from the case id,
    a parent as the speaker for children under 12); ICD-10 ``R69`` ("illness, unspecified") when the source
    gives no code; a placeholder first-line plan ("Specialist assessment") when the source gives no management.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from clinic_env.patient import lexicon as lx
from clinic_env.patient.text import normalize, words

from ..schema import (
    Acuity,
    Case,
    ExamSystem,
    FactCategory,
    Setting,
    Specialty,
    Urgency,
)
from . import _nlp as nlp
from .base import Draft, HistoryItem, RecordError

PLACEHOLDER_ICD10 = "R69"  # ICD-10 "Illness, unspecified": the sources give no codes
PLACEHOLDER_TREATMENT = "Specialist assessment"
PATIENT_REDACTION = "something I can't remember the name of"
FINDING_REDACTION = "[diagnosis withheld]"

# ------------------------------------------------------------------------------------------ demographics

_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_AGE = re.compile(
    r"\b(\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)[\s-]*"
    r"(year|yr|month|mo|week|wk|day|hour|hr)s?[\s-]*old\b",
    re.IGNORECASE,
)
_AGE_PLAIN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(years?|yrs?|y|months?|weeks?|days?)?\b", re.IGNORECASE)
_AGE_OTHER = re.compile(r"\baged?\s+(\d{1,3})\b|\b(\d{1,3})\s*(?:yo|y/o|y\.o\.)(?![a-z])", re.IGNORECASE)
_NEWBORN = re.compile(r"\b(?:newborn|neonate|neonatal|new-born)\b", re.IGNORECASE)
_FEMALE = re.compile(
    r"\b(?:female|woman|girl|lady|women|mother|she|her|hers|herself|daughter)\b", re.IGNORECASE
)
_MALE = re.compile(r"\b(?:male|man|boy|gentleman|men|father|he|his|him|himself|son)\b", re.IGNORECASE)
_FEMALE_NOUN = re.compile(r"\b(?:female|woman|girl|lady|daughter)\b", re.IGNORECASE)
_MALE_NOUN = re.compile(r"\b(?:male|man|boy|gentleman|son)\b", re.IGNORECASE)
_ETHNICITY = re.compile(
    r"\b(caucasian|white|black|african[- ]american|hispanic|latina|latino|asian|african|ashkenazi jewish|"
    r"native american|south asian|east asian|middle eastern)\b",
    re.IGNORECASE,
)


def _unit_years(n: float, unit: str) -> float:
    u = unit.lower()
    if u.startswith(("month", "mo")):
        return round(n / 12, 3)
    if u.startswith(("week", "wk")):
        return round(n / 52, 3)
    if u.startswith("day"):
        return round(n / 365, 4)
    if u.startswith(("hour", "hr")):
        return 0.0
    return float(n)


def parse_age(*texts: str) -> float | None:
    """Age in years from "35-year-old", "8-month-old", "Newborn", "21 years old", "aged 45"; None if absent."""
    for text in texts:
        if not text:
            continue
        m = _AGE.search(text)
        if m:
            raw = m.group(1).lower()
            n = float(_NUMBER_WORDS.get(raw, raw))
            return _unit_years(n, m.group(2))
        if _NEWBORN.search(text):
            return 0.0
        m = _AGE_OTHER.search(text)
        if m:
            return float(m.group(1) or m.group(2))
    return None


def parse_age_field(value: Any) -> float | None:
    """An age given as its own field: 21, "21", "21 years old", "51 years", "8 months"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        got = parse_age(value)
        if got is not None:
            return got
        m = _AGE_PLAIN.match(value)
        if m:
            return _unit_years(float(m.group(1)), m.group(2) or "year")
    return None


def parse_sex(demographics: str, narrative: str = "") -> str | None:
    """ "female"/"male" from the demographics' nouns, else from the pronouns of the narrative; None if unclear."""
    f, m = bool(_FEMALE_NOUN.search(demographics)), bool(_MALE_NOUN.search(demographics))
    if f != m:
        return "female" if f else "male"
    nf = len(_FEMALE.findall(narrative))
    nm = len(_MALE.findall(narrative))
    if nf > nm:
        return "female"
    if nm > nf:
        return "male"
    return None


def parse_pregnancy(text: str, sex: str, age: float) -> tuple[bool | None, int | None]:
    """Pregnancy from "at 38 weeks' gestation", "gravida 2", "pregnant" in the demographics or opening line."""
    if sex != "female" or age < 10:
        return None, None
    if re.search(r"\bnot\s+(?:currently\s+)?pregnant\b", text, re.IGNORECASE):
        return False, None
    weeks = re.search(r"\b(\d{1,2})\s*weeks?['’]?\s*(?:of\s+)?(?:gestation|pregnan)", text, re.IGNORECASE)
    if weeks and 1 <= int(weeks.group(1)) <= 44:
        return True, int(weeks.group(1))
    if re.search(r"\bpregnant\b|\bgravida\b|\bprimigravid|\bmultigravid|\bG\d+P\d+", text, re.IGNORECASE):
        return True, None
    return None, None


def parse_ethnicity(text: str) -> str | None:
    m = _ETHNICITY.search(text)
    return m.group(1).title() if m else None


def parse_occupation(text: str) -> str | None:
    m = re.search(
        r"\b(?:works|working|worked|employed)\s+as\s+(?:an?\s+)?([A-Za-z][A-Za-z \-]{2,40}?)(?=[.,;]|\s+(?:and|at|for|in|with)\b|$)",
        text,
        re.IGNORECASE,
    )
    if m:
        return m.group(1).strip().lower()
    m = re.search(r"\b(college student|university student|student|retired|unemployed)\b", text, re.IGNORECASE)
    return m.group(1).lower() if m else None


# ------------------------------------------------------------------------------------- inferred fields

_SPECIALTY_RULES: tuple[tuple[Specialty, str], ...] = (
    (
        Specialty.dermatology,
        r"\bskin\b|derm|rash|eczema|psoriasis|melanoma|keratosis|pemphig|molluscum|acne|ochronosis|erythema|"
        r"bowen|epidermoid|pyoderma|bed bug|urticaria|vitiligo|lentig|tinea|scabies|lichen|cellulitis",
    ),
    (
        Specialty.cardiology,
        r"cardi|heart|coronary|myocard|aort|atrial|ventricular|septal defect|coarctation|arrhythm|tachycardia|"
        r"murmur|endocarditis|venous insufficiency|angina|valv",
    ),
    (
        Specialty.respiratory,
        r"\blungs?\b|pulmonary|pneumon|asthma|bronch|copd|pleur|respiratory|emphysema|apical lung",
    ),
    (
        Specialty.gastroenterology,
        r"bowel|colitis|hepat|liver|pancrea|gastr|esophag|oesophag|duoden|crohn|hirschsprung|hemorrhoid|"
        r"haemorrhoid|cholang|biliary|gallstone|dumping|mesenteric|boerhaave|celiac|coeliac|rectal|colon|anal",
    ),
    (
        Specialty.neurology,
        r"neuro|seizure|epilep|stroke|parkinson|huntington|myasthenia|dementia|encephal|sclerosis|neuralgia|"
        r"ataxia|syringomyelia|system atrophy|migraine|headache|neuropathy|palsy|intraventricular",
    ),
    (
        Specialty.endocrinology,
        r"thyroid|diabet|adrenal|pituitar|aromatase|hormon|cushing|addison|hyperparathyroid|acromegaly",
    ),
    (
        Specialty.infectious_disease,
        r"infect|sepsis|\bhiv\b|tuberculosis|leprosy|listeri|gonococc|cytomegalovirus|viral|bacterial|malaria|"
        r"rubella|measles|syphilis|hepatitis b|hepatitis c|roseola|parvovirus",
    ),
    (
        Specialty.obstetrics_gynaecology,
        r"pregnan|uterine|uterus|ovar|endometri|cervical|vagin|pelvic inflammatory|gestation|meigs|granulosa|"
        r"menstrua|placent|ectopic|genitopelvic",
    ),
    (
        Specialty.psychiatry,
        r"personality disorder|schizo|defiant|nightmare disorder|psych|depress|anxiety|bipolar|intoxication|"
        r"akathisia|neuroleptic|adhd|autism|anorexia nervosa|bulimia|obsessive|ptsd|conduct disorder",
    ),
    (
        Specialty.urology_nephrology,
        r"kidney|renal|nephr|bladder|cystitis|testic|prostat|urethr|medullary sponge|erythropoietin",
    ),
    (
        Specialty.rheumatology_msk,
        r"arthritis|bursitis|tendon|capsulitis|tenosynovitis|osteoarthritis|dislocation|disc herniation|gout|"
        r"lupus|perthes|osteoclastoma|fracture|musculoskeletal|fibromyalgia|spondyl",
    ),
    (
        Specialty.ent_ophthalmology,
        r"\bear\b|hearing|labyrinthitis|vertigo|bppv|\beye\b|retin|ocular|glossopharyngeal|sinusitis|tonsil|"
        r"otitis|glaucoma|cataract|uveitis|conjunctivitis",
    ),
    (
        Specialty.haematology,
        r"leuk|lymphoma|anemia|anaemia|thromb|hemophilia|haemophilia|myeloma|waldenstr|sickle|macroglobulin|"
        r"coagul|neutropenia",
    ),
    (Specialty.oncology, r"cancer|carcinoma|adenocarcinoma|tumou?r|malignan|neoplasm|sarcoma|metasta"),
)
_MEDIQ_SPECIALTY = {
    "internal medicine": Specialty.general_medicine,
    "family medicine": Specialty.general_practice,
    "general practice": Specialty.general_practice,
    "pediatrics": Specialty.paediatrics,
    "paediatrics": Specialty.paediatrics,
    "psychiatry": Specialty.psychiatry,
    "urology": Specialty.urology_nephrology,
    "nephrology": Specialty.urology_nephrology,
    "neurology": Specialty.neurology,
    "cardiology": Specialty.cardiology,
    "gastroenterology": Specialty.gastroenterology,
    "hepatology": Specialty.gastroenterology,
    "emergency medicine": Specialty.emergency,
    "infectious disease": Specialty.infectious_disease,
    "obstetrics and gynecology": Specialty.obstetrics_gynaecology,
    "obstetrics": Specialty.obstetrics_gynaecology,
    "gynecology": Specialty.obstetrics_gynaecology,
    "dermatology": Specialty.dermatology,
    "endocrinology": Specialty.endocrinology,
    "hematology": Specialty.haematology,
    "oncology": Specialty.oncology,
    "hematology/oncology": Specialty.haematology,
    "pulmonology": Specialty.respiratory,
    "pulmonary medicine": Specialty.respiratory,
    "rheumatology": Specialty.rheumatology_msk,
    "orthopedics": Specialty.rheumatology_msk,
    "orthopaedics": Specialty.rheumatology_msk,
    "ophthalmology": Specialty.ent_ophthalmology,
    "otolaryngology": Specialty.ent_ophthalmology,
    "ent": Specialty.ent_ophthalmology,
    "geriatrics": Specialty.geriatrics,
    "sleep medicine": Specialty.neurology,
}


def specialty_from_name(name: str) -> Specialty | None:
    """A source's specialty label ("Pediatrics", "Internal Medicine") as ours."""
    return _MEDIQ_SPECIALTY.get(name.strip().lower())


def infer_specialty(diagnosis: str, text: str, age: float, pregnant: bool | None) -> Specialty:
    """Children are paediatrics and pregnancy obstetrics; otherwise keyword hits (diagnosis weighted 3x)."""
    if pregnant:
        return Specialty.obstetrics_gynaecology
    if age < 16:
        return Specialty.paediatrics
    best, best_score = Specialty.general_medicine, 0
    for specialty, pattern in _SPECIALTY_RULES:
        score = 3 * len(re.findall(pattern, diagnosis, re.IGNORECASE)) + len(
            re.findall(pattern, text, re.IGNORECASE)
        )
        if score > best_score:
            best, best_score = specialty, score
    return best


_CRITICAL = re.compile(
    r"unresponsive|unconscious|cardiac arrest|\bshock\b|gcs (?:of |score of )?[3-8]\b|intubat|apneic|pulseless|"
    r"agonal|status epilepticus|obtunded|comatose",
    re.IGNORECASE,
)
_HIGH = re.compile(
    r"emergency department|emergency room|\bambulance|paramedic|severe|sudden onset|acute onset|hypotensi|"
    r"unstable|respiratory distress|altered mental|septic|\brupture|torsion|intensive care|\bnicu\b|"
    r"\bhours? ago\b|worst headache|lethargic|hematemesis|haematemesis|profuse",
    re.IGNORECASE,
)
_LOW = re.compile(
    r"\broutine\b|well[- ]child|check-?up|annual (?:exam|visit|physical)|for (?:several )?(?:months|years)\b|"
    r"\d+[- ](?:month|year)[- ]history|\bchronic\b|gradual",
    re.IGNORECASE,
)
_EMERGENCY_SETTING = re.compile(
    r"emergency department|emergency room|\bER\b|\bED\b|\bambulance|paramedic|brought to the emergency"
)
_INPATIENT = re.compile(
    r"\b(?:is|was|has been) (?:admitted|hospitali[sz]ed)\b|in the (?:intensive care|icu|nicu|ward)|"
    r"post-?operative day|hospital day|post[- ]delivery|hours? (?:after|post) (?:birth|delivery)|"
    r"newborn nursery|during (?:her|his) hospital stay",
    re.IGNORECASE,
)


def infer_setting(text: str) -> Setting:
    if _EMERGENCY_SETTING.search(text) or re.search(r"emergency department|emergency room", text, re.I):
        return Setting.emergency
    if _INPATIENT.search(text):
        return Setting.inpatient
    return Setting.outpatient


def infer_acuity(text: str, setting: Setting) -> Acuity:
    if _CRITICAL.search(text):
        return Acuity.critical
    if _HIGH.search(text) or setting is Setting.emergency:
        return Acuity.high
    if _LOW.search(text):
        return Acuity.low
    return Acuity.moderate


def disposition_for(acuity: Acuity, setting: Setting) -> Urgency:
    if acuity is Acuity.critical:
        return Urgency.emergency
    if acuity is Acuity.high:
        return Urgency.emergency if setting is Setting.emergency else Urgency.urgent
    return Urgency.routine


# ------------------------------------------------------------------------------------------ persona

_FEMALE_NAMES = (
    "Maria Lopez",
    "Aisha Khan",
    "Emma Brown",
    "Mei Chen",
    "Grace Okafor",
    "Sofia Rossi",
    "Hannah Cohen",
    "Priya Patel",
    "Olga Ivanova",
    "Fatima Haddad",
)
_MALE_NAMES = (
    "James Smith",
    "Omar Haddad",
    "Daniel Kim",
    "Kwame Mensah",
    "Luca Bianchi",
    "Arjun Singh",
    "Tom Walker",
    "Ivan Petrov",
    "Diego Garcia",
    "Samuel Adeyemi",
)


def default_persona(
    case_id: str,
    *,
    sex: str,
    age: float,
    speaker: str,
    occupation: str | None,
    acuity: Acuity,
    chief_complaint: str,
) -> dict[str, Any]:
    """A neutral persona: a name drawn from the case id, an ISFJ who is anxious (in pain, or frightened when the
    presentation is acute), average verbosity and patience, medium health literacy; a parent speaks for a child."""
    h = int(hashlib.sha256(case_id.encode("utf-8")).hexdigest(), 16)
    pool = _FEMALE_NAMES if sex == "female" else _MALE_NAMES
    name = pool[h % len(pool)]
    if acuity in (Acuity.critical, Acuity.high):
        emotion = "frightened"
    elif nlp._PAIN.search(chief_complaint):
        emotion = "in_pain"
    else:
        emotion = "anxious"
    persona: dict[str, Any] = {
        "name": name,
        "mbti": "ISFJ",
        "health_literacy": "medium",
        "emotional_state": emotion,
        "verbosity": "average",
        "patience": "medium",
        "concerns": ["I want to know what is causing this and whether it is serious."],
    }
    if speaker != "patient":
        parent = _FEMALE_NAMES[(h // 7) % len(_FEMALE_NAMES)]
        persona["speaker"] = "parent"
        persona["speaker_name"] = parent
        persona["concerns"] = ["I want to know what is wrong with my child and whether it is serious."]
    if occupation:
        persona["occupation"] = occupation
    return persona


# ------------------------------------------------------------------------------------------ facts

_GENERIC_DX_WORDS = frozenset(
    normalize(
        "disease syndrome disorder acute chronic primary secondary type condition other infection benign "
        "malignant related induced deficiency"
    ).split()
)


def _expand(item: HistoryItem) -> list[dict[str, Any]]:
    """One history item as atomic statements: ``{"text", "patient_text", "negative", "category"}``."""
    if item.atomic or item.patient_text:
        return [
            {
                "text": item.text,
                "patient_text": item.patient_text,
                "negative": item.negative,
                "category": item.category,
            }
        ]
    out = []
    for sent in nlp.sentences(item.text) if not item.symptom else [nlp.clean_text(item.text)]:
        if nlp.is_placeholder(sent):
            out.append({"text": sent, "patient_text": None, "negative": False, "category": item.category})
            continue
        parts = nlp.clauses(sent)
        denials = [nlp.negated_items(p) for p in parts]
        if not any(denials):
            parts, denials = [sent], [None]
        for part, items in zip(parts, denials, strict=True):
            if items:
                out += [
                    {"text": it, "patient_text": None, "negative": True, "category": item.category}
                    for it in items
                ]
            else:
                if part[:1].islower():
                    part = "The patient " + part
                out.append(
                    {"text": part, "patient_text": None, "negative": item.negative, "category": item.category}
                )
    return out


def _fact_dicts(draft: Draft, names: list[str]) -> list[dict[str, Any]]:
    facts: list[dict[str, Any]] = []
    seen_text: set[str] = set()
    counters: dict[str, int] = {}
    for item in draft.history:
        for st in _expand(item):
            text = nlp.clean_text(st["text"]).strip()
            if not text or nlp.is_placeholder(text):
                if text:
                    draft.note("skipped", {"section": item.section, "text": text, "why": "placeholder text"})
                continue
            key = normalize(text)
            if key in seen_text:
                continue
            seen_text.add(key)
            negative = st["negative"]
            base_cat: FactCategory = st["category"]
            concepts = nlp.concepts_for(text)
            category = base_cat if item.fixed_category else nlp.infer_category(text, concepts, base_cat)
            if item.primary or item.symptom:
                category = base_cat
            if category in (FactCategory.hpi, FactCategory.symptom) and not negative:
                concepts = nlp.concepts_for(text, detail=True)
            if negative:
                concepts = [k for k in concepts if not k.startswith("pain.")] or concepts
            if category is FactCategory.family and "family_history" not in concepts:
                concepts.append("family_history")
            if not concepts:
                concepts = [nlp.fallback_concept(category, text)]
            if negative:
                clinician = nlp.finish(
                    f"Denies {text}" if not text.lower().startswith(("no ", "denies")) else text
                )
                patient = st["patient_text"] or nlp.denial_text(
                    nlp.strip_parentheticals(text), category, speaker=draft.speaker, sex=draft.sex
                )
            else:
                clinician = nlp.finish(text)
                patient = st["patient_text"] or nlp.to_first_person(
                    nlp.strip_parentheticals(text), speaker=draft.speaker, sex=draft.sex
                )
                if item.symptom and not st["patient_text"]:
                    patient = _symptom_sentence(nlp.strip_parentheticals(text), draft.speaker, draft.sex)
            patient = nlp.finish(patient) or clinician
            if nlp.mentions(patient, names):
                redacted = nlp.finish(nlp.redact(patient, names, PATIENT_REDACTION))
                draft.note("redacted", {"field": "patient_text", "original": patient, "now": redacted})
                patient = redacted
            lay = [p for p in nlp.key_phrases(text) if not nlp.mentions(p, names)]
            if item.symptom:
                lay.insert(0, nlp.strip_parentheticals(text).lower().rstrip("."))
            syn = [
                s
                for s in dict.fromkeys([*nlp.parentheticals(text), *nlp.medical_terms(text)])
                if not nlp.mentions(s, names)
            ]
            prefix = "neg" if negative else category.value
            counters[prefix] = counters.get(prefix, 0) + 1
            facts.append(
                {
                    "id": f"{prefix}_{counters[prefix]:02d}",
                    "category": category.value,
                    "concepts": list(dict.fromkeys(concepts)),
                    "synonyms": syn[:6],
                    "lay_terms": list(dict.fromkeys(lay))[:8],
                    "patient_text": patient,
                    "clinician_text": clinician,
                    "essential": False,
                    "sensitive": bool(
                        nlp.is_sensitive(category, concepts) and not item.primary and not item.symptom
                    ),
                    "pertinent_negative": negative,
                    "_primary": item.primary,
                    "_symptom": item.symptom and not negative,
                }
            )
    return facts


def _symptom_sentence(symptom: str, speaker: str, sex: str) -> str:
    """A listed symptom ("Weakness in upper limbs") as a sentence the patient or parent says."""
    s = symptom.strip().rstrip(".")
    s = s[0].lower() + s[1:] if s[:2] != s[:2].upper() else s
    if speaker != "patient":
        child = nlp._child_words(sex)[0]
        return f"{child[0].upper() + child[1:]} has had {s}."
    return nlp.to_first_person(f"The patient reports {s}.")


# ------------------------------------------------------------------------------------------ assembly


def _unique(base: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_\-]+", "_", base.lower()).strip("_-") or "item"
    if not base[0].isalnum():
        base = "x" + base
    out, n = base, 2
    while out in used:
        out = f"{base}_{n}"
        n += 1
    used.add(out)
    return out


_CC_HISTORY = re.compile(
    r"^(?:an?\s+)?(\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|several|few)[\s-]*"
    r"(hour|day|week|month|year)s?[\s-]+history\s+of\s+(.+)$",
    re.IGNORECASE,
)


def _opening(draft: Draft, names: list[str]) -> str:
    if draft.opening:
        text = draft.opening
    else:
        cc = nlp.strip_parentheticals(draft.chief_complaint).strip().rstrip(".")
        m = _CC_HISTORY.match(cc)
        if m:  # "a 3-week history of neck swelling" -> "neck swelling for 3 weeks"
            n, unit, what = m.groups()
            plural = "" if n.lower() in ("1", "one") else "s"
            cc = f"{what} for {'the last ' if n.lower() in ('several', 'few') else ''}{n} {unit}{plural}"
        cc = cc[0].lower() + cc[1:] if cc and cc[:2] != cc[:2].upper() else cc
        if draft.speaker != "patient":
            child = nlp._child_words(draft.sex)[0]
            text = f"Hello doctor. I've brought {child} in because of {cc}."
            text = re.sub(r"\b(?:her|his)\b", "her" if draft.sex == "female" else "his", text)
        else:
            text = "Hello doctor. I've come in because of " + nlp._third_to_first(cc) + "."
    text = nlp.finish(text)
    if nlp.mentions(text, names):
        redacted = nlp.finish(nlp.redact(text, names, PATIENT_REDACTION))
        draft.note("redacted", {"field": "opening_statement", "original": text, "now": redacted})
        text = redacted
    return text


def assemble(draft: Draft) -> Case:
    """Apply the shared rules and validate; raises :class:`RecordError` naming what is missing or invalid."""
    from pydantic import ValidationError

    if not draft.diagnosis.strip():
        raise RecordError("the record has no diagnosis to use as the answer key", "diagnosis")
    primary, syns = nlp.diagnosis_names(draft.diagnosis)
    synonyms = list(dict.fromkeys([*syns, *draft.diagnosis_synonyms]))
    names = [primary, *synonyms]

    facts = _fact_dicts(draft, names)
    if not facts:
        raise RecordError(
            "no history statement could be taken from the record (every section empty or placeholder)"
        )

    used: set[str] = {f["id"] for f in facts}
    exam = []
    for item in draft.exam:
        finding = nlp.clean_text(item.finding)
        if not finding:
            continue
        system = item.system or nlp.exam_system(item.name, finding)
        abnormal = item.abnormal
        if abnormal is None and system is ExamSystem.vitals:
            abnormal = nlp.vitals_abnormal(finding, draft.age_years)
            if abnormal is None:
                cue = nlp.abnormal_cue(finding)
                abnormal = bool(cue) if cue is not None else False
        if abnormal is None:
            cue = nlp.abnormal_cue(finding)
            abnormal = cue if cue is not None else not re.search(r"\d", finding)
        if nlp.mentions(finding, names):
            redacted = nlp.redact(finding, names, FINDING_REDACTION)
            draft.note("redacted", {"field": f"exam[{item.name}]", "original": finding, "now": redacted})
            finding = redacted
        name = nlp.clean_text(item.name) or f"{system.value.replace('_', ' ').capitalize()} examination"
        short = re.sub(r"\b(?:examination|exam|assessment|findings?)\b", "", name, flags=re.IGNORECASE).strip(
            " -:"
        )
        syn = list(
            dict.fromkeys(s for s in (*item.synonyms, name.lower(), short.lower()) if s and len(s) > 2)
        )
        exam.append(
            {
                "id": _unique(f"exam_{nlp.slug(name, max_words=4) or system.value}", used),
                "system": system.value,
                "name": name,
                "synonyms": syn[:8],
                "finding": finding,
                "abnormal": bool(abnormal),
            }
        )
    tests = []
    for item in draft.tests:
        value = nlp.clean_text(item.value)
        name = nlp.clean_text(item.name)
        if not value or not name:
            continue
        kind = item.kind or nlp.test_kind(name, value)
        abnormal = item.abnormal
        if abnormal is None:
            cue = nlp.abnormal_cue(value)
            abnormal = cue if cue is not None else not re.search(r"\d", value)
        interpretation = None
        if nlp.mentions(value, names):
            interpretation = value
            value = nlp.redact(value, names, FINDING_REDACTION)
            draft.note("redacted", {"field": f"tests[{name}]", "original": interpretation, "now": value})
        syn = list(dict.fromkeys([*nlp.test_synonyms(name), *item.synonyms]))
        tests.append(
            {
                "id": _unique(f"test_{nlp.slug(name, max_words=4) or 'result'}", used),
                "name": name,
                "kind": kind.value,
                "synonyms": syn[:10],
                "value": value,
                "abnormal": bool(abnormal),
                **({"interpretation": interpretation} if interpretation else {}),
            }
        )

    # Essential facts: the presenting complaint and listed symptoms; words shared with the diagnosis or evidence.
    dx_tokens = nlp.content_tokens(" ".join(names)) - _GENERIC_DX_WORDS
    evidence_text = " ".join(
        [f["clinician_text"] for f in facts if f["_primary"]]
        + [e["finding"] for e in exam if e["abnormal"]]
        + [f"{t['name']} {t['value']}" for t in tests if t["abnormal"]]
    )
    ev_tokens = nlp.content_tokens(evidence_text)
    for f in facts:
        if f["pertinent_negative"]:
            continue
        toks = nlp.content_tokens(f["clinician_text"])
        f["essential"] = bool(
            f["_primary"] or f["_symptom"] or (toks & dx_tokens) or len(toks & ev_tokens) >= 2
        )
    if not any(f["essential"] for f in facts):
        first = next((f for f in facts if not f["pertinent_negative"]), facts[0])
        first["essential"] = True
        draft.note(
            "inferred", "essential: no fact matched the rules; the first history statement is essential"
        )

    # Persona, setting, acuity.
    setting = infer_setting(draft.narrative)
    acuity = infer_acuity(draft.narrative, setting)
    speaker = draft.speaker
    persona = default_persona(
        draft.case_id,
        sex=draft.sex,
        age=draft.age_years,
        speaker=speaker,
        occupation=draft.occupation,
        acuity=acuity,
        chief_complaint=draft.chief_complaint,
    )
    jargon = max((sum(w in lx.JARGON for w in words(f["patient_text"])) for f in facts), default=0)
    if jargon >= 2:
        persona["health_literacy"] = "high"
        draft.note("inferred", "persona.health_literacy: high (the source's wording is clinical)")
    specialty = draft.specialty or infer_specialty(primary, draft.narrative, draft.age_years, draft.pregnant)
    draft.note(
        "inferred",
        "specialty (keyword rules)" if draft.specialty is None else "specialty (from the source)",
    )
    draft.note("inferred", "setting, acuity and management.disposition (keyword rules)")
    draft.note("inferred", "persona (default)")
    draft.note("placeholder", f"diagnosis.icd10 = {PLACEHOLDER_ICD10} (the source gives no code)")

    opening = _opening(draft, names)
    open_tokens = nlp.content_tokens(opening)
    opening_facts = [f["id"] for f in facts if f["_primary"]]
    if not opening_facts:
        for f in facts:
            toks = nlp.content_tokens(f["clinician_text"])
            if toks and len(toks & open_tokens) >= 0.6 * len(toks) and not f["pertinent_negative"]:
                opening_facts.append(f["id"])

    key_evidence = (
        [f["id"] for f in facts if f["essential"]]
        + [e["id"] for e in exam if e["abnormal"]]
        + [t["id"] for t in tests if t["abnormal"]]
    )
    differential = []
    for alt in draft.differential:
        alt = nlp.clean_text(alt).strip().rstrip(".")
        if alt and alt.lower() not in {n.lower() for n in names}:
            differential.append({"name": alt, "reasoning": draft.differential_reason})

    if draft.treatments:
        first_line = [{"name": nlp.clean_text(t)} for t in draft.treatments if nlp.clean_text(t)]
    else:
        first_line = [
            {
                "name": PLACEHOLDER_TREATMENT,
                "detail": "The source gives no management; placeholder added by the importer.",
                "synonyms": ["referral", "refer", "specialist"],
            }
        ]
        draft.note(
            "placeholder", f"management.first_line = {PLACEHOLDER_TREATMENT!r} (the source gives none)"
        )

    for f in facts:
        f.pop("_primary")
        f.pop("_symptom")
    demographics: dict[str, Any] = {"age_years": draft.age_years, "sex": draft.sex}
    if draft.pregnant is not None:
        demographics["pregnant"] = draft.pregnant
    if draft.gestation_weeks is not None and draft.pregnant:
        demographics["gestation_weeks"] = draft.gestation_weeks
    if draft.ethnicity:
        demographics["ethnicity"] = draft.ethnicity
    chief = nlp.clean_text(draft.chief_complaint) or facts[0]["clinician_text"]
    title = draft.title or f"{chief[0].upper() + chief[1:]}"
    extra = dict(draft.extra)
    extra["importer"] = {k: v for k, v in draft.notes.items()}
    data = {
        "id": draft.case_id,
        "title": title[:200],
        "specialty": specialty.value,
        "setting": setting.value,
        "acuity": acuity.value,
        "source": draft.source,
        "demographics": demographics,
        "persona": persona,
        "chief_complaint": chief,
        "opening_statement": opening,
        "opening_facts": opening_facts,
        "facts": facts,
        "exam": exam,
        "tests": tests,
        "diagnosis": {
            "primary": primary,
            "synonyms": synonyms,
            "icd10": PLACEHOLDER_ICD10,
            "key_evidence": key_evidence,
            "differential": differential,
        },
        "management": {"disposition": disposition_for(acuity, setting).value, "first_line": first_line},
        "extra": extra,
    }
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'case'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise RecordError(f"the imported case does not validate: {problems}") from None
