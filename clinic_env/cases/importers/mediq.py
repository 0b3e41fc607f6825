"""MediQ (github.com/stellalisy/mediQ, CC BY 4.0): one MedQA question per line with ``id``, ``question``,
``context`` (sentences), ``options``, ``answer``, ``answer_idx``, ``facts`` (atomic facts) and ``patient``
{``gender``, ``age``, ``specialties``, ...}.

MediQ's ``facts`` are already atomic, so they are the statements sorted into history, examination and results
(``context`` is used when ``facts`` is absent). Not every MediQ question asks for a diagnosis (the 20-record sample
asks for treatments, mechanisms and next steps too): the case's ``diagnosis`` holds the correct option whatever the
question asks, ``extra["mediq"]["answer_kind"]`` says which (``diagnosis``, ``treatment`` or ``other``), and a
treatment answer is also the case's first-line management. The question and all options stay in ``extra``.
"""

from __future__ import annotations

import re
from typing import Any

from ..schema import FactCategory
from . import _nlp as nlp
from . import prose
from .assemble import (
    parse_age,
    parse_age_field,
    parse_ethnicity,
    parse_occupation,
    parse_pregnancy,
    parse_sex,
    specialty_from_name,
)
from .base import Draft, RecordContext, RecordError

MEDIQ_URL = "https://github.com/stellalisy/mediQ"

_DIAGNOSTIC = re.compile(
    r"\b(?:most likely|most probable|probable|likely|correct)\s+diagnosis\b|\bwhat is the diagnosis\b|"
    r"\bdiagnosis (?:in|for|of) this patient|\bmost likely (?:cause|etiology|explanation) (?:of|for) (?:this|his|her|"
    r"the) (?:patient['’]s |woman['’]s |man['’]s |child['’]s )?(?:condition|symptoms|illness|presentation|findings|"
    r"anemia|anaemia|disease)|\bwhich (?:of the following )?(?:conditions?|diseases?|disorders?) (?:is|does)",
    re.IGNORECASE,
)
_TREATMENT = re.compile(
    r"\b(?:best|most appropriate|appropriate|first-line|initial)\s+(?:course of\s+)?(?:treatment|therapy|"
    r"pharmacotherapy|medication|management)\b|\bnext (?:best )?step in (?:the )?management\b|\bbest next step\b|"
    r"\bwhich of the following (?:drugs|medications|treatments)\b|\bshould be (?:given|administered|prescribed)\b|"
    r"\btreatment (?:for|of) (?:this|the)",
    re.IGNORECASE,
)
_MECHANISM = re.compile(
    r"\bmechanism|\benzym|\bpathogen|\bcharacteristic|\bhormone|\breceptor", re.IGNORECASE
)


def answer_kind(question: str) -> str:
    """What a MediQ question asks for: ``diagnosis``, ``treatment`` or ``other``."""
    if re.search(r"\bmost likely diagnosis\b", question, re.IGNORECASE):
        return "diagnosis"
    if _MECHANISM.search(question):
        return "other"
    if _TREATMENT.search(question):
        return "treatment"
    if _DIAGNOSTIC.search(question):
        return "diagnosis"
    return "other"


def _clean_fact(text: str) -> str:
    return re.sub(r"^\s*\d{1,3}[.)]\s+", "", nlp.clean_text(text)).strip()


def mediq_draft(rec: Any, ctx: RecordContext) -> Draft:
    """One MediQ record as a draft case."""
    if not isinstance(rec, dict):
        raise RecordError(f"a record must be a JSON object, got {type(rec).__name__}")
    for key, kind in (("question", str), ("answer", str)):
        if not isinstance(rec.get(key), kind) or not rec[key].strip():
            raise RecordError(f"missing {key!r} (non-empty text)", key)
    options = rec.get("options")
    if not isinstance(options, dict) or not options:
        raise RecordError("missing 'options' (an object of letter -> option text)", "options")
    context = rec.get("context")
    facts = rec.get("facts")
    if context is not None and not (isinstance(context, list) and all(isinstance(c, str) for c in context)):
        raise RecordError("'context' must be a list of sentences", "context")
    if facts is not None and not (isinstance(facts, list) and all(isinstance(f, str) for f in facts)):
        raise RecordError("'facts' must be a list of strings", "facts")
    statements = [_clean_fact(f) for f in (facts or [])] or [
        s for c in (context or []) for s in nlp.sentences(c)
    ]
    statements = [s for s in statements if s]
    if not statements:
        raise RecordError("no 'facts' or 'context' to build the case from", "facts")
    answer = rec["answer"].strip()
    idx = rec.get("answer_idx")
    if idx is not None and not isinstance(idx, str):
        raise RecordError(f"'answer_idx' must be an option letter, got {type(idx).__name__}", "answer_idx")
    if idx is not None and idx in options and str(options[idx]).strip() != answer:
        raise RecordError(
            f"answer {answer!r} does not match options[{idx!r}] = {options[idx]!r}", "answer_idx"
        )
    rid = rec.get("id")
    if rid is None or (isinstance(rid, str) and not rid.strip()):
        raise RecordError("missing 'id' (the record id)", "id")

    patient = rec.get("patient") if isinstance(rec.get("patient"), dict) else {}
    opening_sentence = (context or [statements[0]])[0]
    narrative = " ".join([*(context or []), *statements])
    age = parse_age_field(patient.get("age")) if patient.get("age") is not None else None
    if age is None:
        age = parse_age(opening_sentence, narrative)
    if age is None:
        raise RecordError(
            "cannot tell the patient's age (patient.age or 'N-year-old' in the context)", "patient.age"
        )
    gender = str(patient.get("gender", "")).strip().lower()
    sex = gender if gender in ("female", "male") else parse_sex(opening_sentence, narrative)
    sex_placeholder = sex is None and ctx.default_sex is not None
    sex = sex or ctx.default_sex
    if sex is None:
        raise RecordError(
            "cannot tell the patient's sex (patient.gender or the context); import with --default-sex to fill it in",
            "patient.gender",
        )
    pregnant, weeks = parse_pregnancy(opening_sentence, sex, age)

    sorted_ = prose.sort_sentences(statements, category=FactCategory.hpi, section="facts")
    if not sorted_.history:
        raise RecordError(
            "every statement is an examination finding or a result: nothing for the patient to tell"
        )
    chief = prose.chief_complaint(opening_sentence)
    opening = None
    if chief is None:  # no "presents with ...": the first history statement is the complaint
        first = sorted_.history[0]
        first.primary = True
        chief = nlp.strip_parentheticals(first.text).rstrip(".")
        opening = "Hello doctor. " + nlp.to_first_person(
            nlp.strip_parentheticals(first.text), speaker="parent" if age < 12 else "patient", sex=sex
        )
    else:
        cc_tokens = nlp.content_tokens(chief)
        for h in sorted_.history:
            toks = nlp.content_tokens(h.text)
            if toks and cc_tokens and len(toks & cc_tokens) >= 0.6 * min(len(toks), len(cc_tokens)):
                h.primary = True
    speaker = "parent" if age < 12 else "patient"

    kind = answer_kind(rec["question"])
    specialty = None
    probs = patient.get("specialty_prob")
    names = patient.get("specialties")
    if isinstance(names, list) and names:
        order = list(range(len(names)))
        if isinstance(probs, list) and len(probs) == len(names):
            order.sort(key=lambda i: -float(probs[i]) if isinstance(probs[i], (int, float)) else 0.0)
        for i in order:
            specialty = specialty_from_name(str(names[i]))
            if specialty is not None:
                break
    mapped = {"id", "question", "options", "answer", "answer_idx", "context", "facts", "patient"}
    extra = {
        "mediq": {
            "question": rec["question"],
            "options": options,
            "answer": answer,
            "answer_idx": idx,
            "answer_kind": kind,
            "context": context,
            **({"course": sorted_.course} if sorted_.course else {}),
            **({"demographic_facts": sorted_.demographic} if sorted_.demographic else {}),
            "patient": {k: v for k, v in patient.items() if k not in ("gender", "age")},
            **{k: v for k, v in rec.items() if k not in mapped},
        }
    }
    alternatives = [str(v) for k, v in options.items() if str(v).strip() != answer]
    draft = Draft(
        case_id=f"{ctx.prefix}-{re.sub(r'[^a-z0-9]+', '-', str(rid).lower()).strip('-') or ctx.line}",
        source={
            "kind": "imported",
            "name": "MediQ",
            "licence": "CC BY 4.0",
            "original_id": str(rid),
            "url": MEDIQ_URL,
        },
        age_years=age,
        sex=sex,
        diagnosis=answer,
        differential=alternatives if kind == "diagnosis" else [],
        treatments=[answer] if kind == "treatment" else [],
        chief_complaint=chief,
        opening=opening,
        history=sorted_.history,
        exam=sorted_.exam,
        tests=sorted_.tests,
        title=nlp.strip_parentheticals(opening_sentence)[:200],
        speaker=speaker,
        pregnant=pregnant,
        gestation_weeks=weeks,
        ethnicity=parse_ethnicity(opening_sentence),
        occupation=parse_occupation(narrative),
        specialty=specialty,
        narrative=narrative,
        extra=extra,
    )
    if sex_placeholder:
        draft.note("placeholder", f"demographics.sex = {sex} (not given by the source; --default-sex)")
    return draft


def mediq_llm_text(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return None
    context = rec.get("context")
    if isinstance(context, list) and all(isinstance(c, str) for c in context) and context:
        return " ".join(context)
    facts = rec.get("facts")
    if isinstance(facts, list) and all(isinstance(f, str) for f in facts) and facts:
        return " ".join(_clean_fact(f) for f in facts)
    return None
