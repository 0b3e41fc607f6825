"""Lay and paraphrase forms of rubric terms, so the rule verifier credits what doctors actually say.

Case files name diagnoses, differentials and treatments the way a textbook does ("Renal colic (ureteric
calculus)", "Acute calculous cholecystitis", "ACE inhibitors"); doctors speaking to patients say "a kidney stone",
"your gallbladder is inflamed", "ramipril". This module turns a term into extra terms from three kinds of general
knowledge, none of it keyed on any transcript:

* the condition knowledge base (``clinic_env/cases/knowledge/*.yaml``): a term naming a condition gains that
  condition's synonyms;
* a table of medical words and their everyday equivalents (organ adjectives, common pathologies, drug classes and
  their members), applied inside the term ("renal colic" -> "kidney colic", "kidney stone");
* co-occurrence terms written ``"a & b"``: met when every part is in the same clause in any order ("gallbladder &
  inflamed" matches "your gallbladder is inflamed and infected").

We write our own small table rather than use a medical NLP library (scispaCy, UMLS, MedCAT) because those need
model or licence downloads this offline project cannot make, and the rubric vocabulary is small and known.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from clinic_env.patient.text import normalize

# Medical phrase -> everyday phrases. Keys and values are matched after ``normalize`` (lower case, stemmed).
LAY: dict[str, tuple[str, ...]] = {
    # diagnoses and pathologies
    "myocardial infarction": ("heart attack",),
    "st-elevation myocardial infarction": ("heart attack",),
    "acute coronary syndrome": ("heart attack",),
    "pulmonary embolism": ("clot in the lung", "clot on the lung", "clot in your lung", "clot & lung"),
    "deep vein thrombosis": ("clot in the leg", "clot & leg", "clot & calf"),
    "renal colic": ("kidney stone", "stone & kidney"),
    "ureteric calculus": ("kidney stone", "stone & kidney"),
    "arrhythmia": ("heart rhythm", "irregular heartbeat", "rhythm problem"),
    "atrial fibrillation": ("irregular heartbeat", "irregular heart rhythm"),
    "hyponatraemia": ("low sodium", "sodium & low", "salt level & low"),
    "hyperkalaemia": ("high potassium", "potassium & high", "potassium & too high"),
    "hypercalcaemia": ("high calcium", "calcium & high"),
    "hypoglycaemia": ("low sugar", "sugar & low"),
    "toxicity": ("toxic", "poisoning", "built up"),
    "ruptured": ("burst", "leaking"),
    "rupture": ("burst", "leak"),
    "aneurysm": ("aneurysm",),
    "obstructive uropathy": ("blockage", "blocked"),
    "obstruction": ("blockage", "blocked"),
    "dependence": ("dependent", "addicted"),
    "alcohol dependence": ("alcohol & dependent", "alcohol & addicted"),
    "depressive disorder": ("depression",),
    "unipolar": ("ordinary depression", "depression alone"),
    "otitis externa": ("outer ear", "ear canal"),
    "otitis media": ("middle ear infection", "ear infection"),
    "mastoiditis": ("mastoid", "bone behind the ear"),
    "cholecystitis": ("gallbladder & inflam", "gallbladder & infect"),
    "biliary colic": ("gallstone attack", "colicky attack", "gallbladder attack"),
    "cholangitis": ("bile duct & infect",),
    "appendicitis": ("appendix & inflam", "appendix & infect"),
    "pericarditis": ("sac around the heart & inflam", "lining of the heart & inflam"),
    "meningitis": ("lining of the brain & infect", "meningitis"),
    "pancreatitis": ("pancreas & inflam",),
    "pneumonia": ("chest infection", "lung & infect"),
    "pyelonephritis": ("kidney infection", "kidney & infect"),
    "cystitis": ("bladder infection", "water infection"),
    "cellulitis": ("skin infection",),
    "seizure": ("fit",),
    "syncope": ("faint", "blackout"),
    "convulsive syncope": ("faint & jerk", "faint with a few jerks"),
    "stroke": ("stroke",),
    "subarachnoid haemorrhage": ("bleed on the brain", "bleed & brain"),
    "intracranial": ("brain", "inside the head"),
    "retinal detachment": ("retina & peel", "retina & come away", "retina & detach"),
    "acute kidney injury": ("kidney & injur", "kidney & damag", "kidney & fail"),
    "thyrotoxicosis": ("overactive thyroid",),
    "hyperthyroidism": ("overactive thyroid",),
    "hypothyroidism": ("underactive thyroid",),
    "anaphylaxis": ("severe allergic reaction",),
    "gastroenteritis": ("stomach bug", "tummy bug", "gastro"),
    "viral illness": ("virus", "viral infection"),
    "hepatitis": ("liver & inflam", "hepatitis"),
    "myocarditis": ("heart muscle & inflam",),
    "essential tremor": ("essential tremor",),
    "giant cell arteritis": ("arteritis",),
    # examinations and tests
    "c-reactive protein": ("inflammation marker", "inflammation & blood test", "blood test & inflammation"),
    "creatine kinase": ("muscle enzyme",),
    "urea and electrolytes": ("kidney test", "kidney function", "kidney & blood", "salts"),
    "u&e": ("kidney test", "kidney function", "salts"),
    "osmolality": ("concentration test", "concentration of the blood", "concentration & urine"),
    "mast cell tryptase": ("mast cell",),
    "questionnaire": ("questionnaire",),
    "ultrasound": ("scan",),
    "12-lead ecg": ("heart tracing",),
    "ecg": ("heart tracing",),
    "abdominal": ("tummy", "belly"),
    "abdominal examination": ("tummy", "belly", "abdomen"),
    "vital signs": ("blood pressure", "pulse", "temperature", "oxygen level"),
    "neurological examination": ("reflexes", "nerves", "neurological"),
    "gait": ("watch you walk", "see you walk", "walk for me"),
    # organ adjectives
    "renal": ("kidney",),
    "hepatic": ("liver",),
    "cardiac": ("heart",),
    "pulmonary": ("lung",),
    "cerebral": ("brain",),
    "gastric": ("stomach",),
    # treatments and procedures
    "intravenous": ("through a drip", "into a vein", "drip"),
    "iv fluid": ("fluid & drip", "drip"),
    "intramuscular": ("injection", "into your thigh", "into the muscle"),
    "surgical repair": ("operation", "theatre", "surgery"),
    "emergency aneurysm repair": ("operation", "theatre", "repair"),
    "analgesia": ("painkiller", "pain relief"),
    "antiemetic": ("anti-sickness", "anti sickness"),
    "referral": ("refer", "referring", "phoning the"),
    "hypertonic saline": ("strong salt solution", "concentrated salt"),
    "permissive hypotension": ("keep & blood pressure & low", "blood pressure & up to normal"),
    "no antibiotic": (
        "without antibiotics",
        "clear up by themselves",
        "clear up on their own",
        "get better on its own",
    ),
    "medically assisted withdrawal": ("detox",),
    "withdrawal regimen": ("reducing course", "detox"),
}

# Drug classes and their members (and lay names): a term naming a class gains its members.
DRUG_CLASSES: dict[str, tuple[str, ...]] = {
    "ace inhibitor": ("ramipril", "lisinopril", "enalapril", "perindopril", "captopril"),
    "angiotensin receptor blocker": ("losartan", "candesartan", "irbesartan", "valsartan"),
    "diuretic": ("furosemide", "bumetanide", "bendroflumethiazide", "indapamide", "water tablet"),
    "thiazide": ("bendroflumethiazide", "indapamide", "water tablet"),
    "loop diuretic": ("furosemide", "bumetanide", "water tablet"),
    "nsaid": ("ibuprofen", "naproxen", "diclofenac", "anti-inflammatory"),
    "anti-inflammator": ("ibuprofen", "naproxen", "diclofenac"),
    "beta-blocker": ("bisoprolol", "atenolol", "propranolol", "metoprolol"),
    "calcium-channel blocker": ("diltiazem", "verapamil"),
    "penicillin": (
        "amoxicillin",
        "co-amoxiclav",
        "flucloxacillin",
        "benzylpenicillin",
        "phenoxymethylpenicillin",
    ),
    "cephalosporin": ("cefalexin", "ceftriaxone", "cefuroxime", "cefotaxime"),
    "ssri": ("sertraline", "citalopram", "fluoxetine", "escitalopram", "paroxetine"),
    "antidepressant": ("sertraline", "citalopram", "fluoxetine", "mirtazapine", "amitriptyline"),
    "benzodiazepine": ("diazepam", "chlordiazepoxide", "lorazepam"),
    "corticosteroid": ("prednisolone", "hydrocortisone", "dexamethasone", "steroid"),
    "glucocorticoid": ("prednisolone", "hydrocortisone", "dexamethasone", "steroid"),
    "opioid": ("morphine", "oxycodone", "codeine"),
    "anticoagulant": ("apixaban", "rivaroxaban", "edoxaban", "warfarin", "blood thinner"),
    "proton pump inhibitor": ("omeprazole", "lansoprazole"),
    "ppi": ("omeprazole", "lansoprazole"),
    "antihistamine": ("chlorphenamine", "cetirizine", "loratadine"),
}

_SPLIT = re.compile(r"\s+&\s+")  # spaces required: "a&e" is one word


def _norm(text: str) -> str:
    return normalize(text).strip()


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[tuple[tuple[str, tuple[str, ...]], ...], dict[str, tuple[str, ...]]]:
    """The lay table with normalized keys (longest first), and KB condition names/synonyms -> all names."""
    lay: dict[str, list[str]] = {}
    for src in (LAY, DRUG_CLASSES):
        for k, vs in src.items():
            lay.setdefault(_norm(k), []).extend(vs)
    ordered = tuple(
        sorted(((k, tuple(dict.fromkeys(v))) for k, v in lay.items()), key=lambda kv: -len(kv[0]))
    )
    conditions: dict[str, tuple[str, ...]] = {}
    try:
        from clinic_env.cases.knowledge import load_knowledge

        kb = load_knowledge()
    except Exception:  # a broken knowledge base must not break grading; the lay table still applies
        kb = []
    for c in kb:
        names = (c.name, *c.synonyms)
        for n in names:
            conditions[_norm(n)] = names
    return ordered, conditions


# Generic words replaced inside a term only ("renal colic" -> "kidney colic"), never added on their own: "kidney" or
# "toxic" alone would match far too much.
SUBSTITUTE_ONLY = frozenset(
    _k
    for _k in (
        "renal",
        "hepatic",
        "cardiac",
        "pulmonary",
        "cerebral",
        "gastric",
        "intravenous",
        "intramuscular",
        "toxicity",
        "ruptured",
        "rupture",
        "dependence",
        "unipolar",
        "obstruction",
        "seizure",
        "intracranial",
        "abdominal",
        "vital signs",
    )
)
# What follows these in a term is a reason or a contrast, not the thing itself ("a calcium-channel blocker
# (because a beta-blocker is unsuitable)", "antihistamine instead of adrenaline").
_REASON = re.compile(r"\(.*?\)|\b(?:because|instead of|rather than|unless|despite|while)\b.*$", re.IGNORECASE)


def expand(terms: Iterable[str], *, drugs_only: bool = False) -> tuple[str, ...]:
    """``terms`` plus their knowledge-base synonyms and lay forms (original terms first, no duplicates).

    ``drugs_only``: add only drug-class members (for contraindications, where a lay form of a procedure such as
    "through a drip" would also describe the safe alternative)."""
    out: list[str] = []
    for term in terms:
        out.append(term)
        out.extend(_expand_one(term, drugs_only))
    return tuple(dict.fromkeys(t for t in out if t.strip()))


# Rubrics are generated per episode from the same few hundred case terms: each term is expanded once.
@functools.lru_cache(maxsize=16384)
def _expand_one(term: str, drugs_only: bool) -> tuple[str, ...]:
    lay, conditions = _tables()
    if drugs_only:
        classes = _class_keys()
        lay = tuple((k, v) for k, v in lay if k in classes)
        conditions = {}
    key = _norm(term)
    if not key:
        return ()
    out: list[str] = list(conditions.get(key, ()))
    padded = f" {_norm(_REASON.sub(' ', term))} "
    for med, plain in lay:
        if f" {med} " not in padded:
            continue
        for alt in plain:
            if " & " in alt:
                out.append(alt)
                continue
            out.append(padded.replace(f" {med} ", f" {_norm(alt)} ").strip())
            if med not in _substitute_only():
                out.append(alt)
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _class_keys() -> frozenset[str]:
    return frozenset(_norm(k) for k in DRUG_CLASSES)


@functools.lru_cache(maxsize=1)
def _substitute_only() -> frozenset[str]:
    return frozenset(_norm(k) for k in SUBSTITUTE_ONLY)


def parts(term: str) -> tuple[str, ...]:
    """The parts of a co-occurrence term ``"a & b"`` (one part for an ordinary term)."""
    return tuple(p for p in _SPLIT.split(term) if p.strip()) if " & " in term else (term,)
