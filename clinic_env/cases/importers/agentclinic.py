"""AgentClinic's two case formats (github.com/SamuelSchmidgall/AgentClinic, MIT).

``agentclinic`` (OSCE, the MedQA and MIMIC-IV files): one ``{"OSCE_Examination": {...}}`` per line with
``Objective_for_Doctor``, ``Patient_Actor`` (``Demographics``, ``History``, ``Symptoms`` {``Primary_Symptom``,
``Secondary_Symptoms``}, ``Past_Medical_History``, ``Social_History``, ``Review_of_Systems``, sometimes medication
keys), ``Physical_Examination_Findings`` and ``Test_Results`` as free-form nested objects, ``Correct_Diagnosis``.

``agentclinic-nejm``: one NEJM Image Challenge per line: ``image_url``, ``question`` (the vignette and the
question), ``patient_info`` (a brief for the patient actor), ``physical_exams`` (readings and results) and
``answers`` [{``text``, ``correct``}].
"""

from __future__ import annotations

import re
from typing import Any

from ..schema import ExamSystem, FactCategory
from . import _nlp as nlp
from . import prose
from .assemble import parse_age, parse_ethnicity, parse_occupation, parse_pregnancy, parse_sex
from .base import Draft, ExamItem, HistoryItem, RecordContext, RecordError, TestItem

AGENTCLINIC_URL = "https://github.com/SamuelSchmidgall/AgentClinic"

# --------------------------------------------------------------------------------------------- helpers

_KEEP_UPPER = re.compile(r"^[A-Z0-9\-]{2,}$")


def label(key: str) -> str:
    """``"Acetylcholine_Receptor_Antibodies"`` -> ``"Acetylcholine receptor antibodies"`` (abbreviations kept)."""
    parts = [p for p in re.split(r"[_\s]+", key.strip()) if p]
    out = []
    for i, p in enumerate(parts):
        if _KEEP_UPPER.match(p) or re.match(r"^[A-Z][a-z]*[A-Z]", p):
            out.append(p)
        else:
            out.append(p.capitalize() if i == 0 else p.lower())
    return " ".join(out)


def flatten(value: Any) -> str:
    """Nested source values as one readable line: ``{"WBC": "9", "Hb": "12"}`` -> ``"WBC: 9; Hb: 12"``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return nlp.clean_text(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            text = flatten(v)
            if text:
                parts.append(f"{label(str(k))}: {text}")
        return "; ".join(parts)
    if isinstance(value, (list, tuple)):
        return "; ".join(t for t in (flatten(v) for v in value) if t)
    return str(value)


def _text_field(obj: dict[str, Any], key: str, where: str) -> str:
    v = obj.get(key)
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return flatten(v)
    if not isinstance(v, (str, int, float)):
        raise RecordError(f"{where}.{key} must be text, got {type(v).__name__}", f"{where}.{key}")
    return str(v)


def _variant(file: str) -> str:
    low = file.lower()
    if "mimic" in low:
        return "AgentClinic MIMIC-IV"
    if "medqa" in low:
        return "AgentClinic MedQA"
    return "AgentClinic OSCE"


def _speaker(age: float) -> str:
    return "parent" if age < 12 else "patient"


# ---------------------------------------------------------------------------------- exam and tests

_VITAL_KEY = re.compile(r"vital", re.IGNORECASE)
_GENERAL_SECTION = re.compile(
    r"^(?:general[_ ]?(?:examination|exam)?|examination|physical[_ ]examination|remainder[_ ]of[_ ]the[_ ]"
    r"examination|other|additional[_ ]findings|findings)$",
    re.IGNORECASE,
)
_GENERIC_LEAF = re.compile(
    r"^(?:findings?|inspection|palpation|percussion|auscultation|general|other|observations?|description|"
    r"comments?|results?|appearance|notes?|examination|exam|details|summary|status)$",
    re.IGNORECASE,
)
# Leaf systems specific enough to override the section's ("Head and neck" -> eyes, ears).
_ORGAN = frozenset(
    {
        ExamSystem.eye,
        ExamSystem.ent,
        ExamSystem.cardiovascular,
        ExamSystem.respiratory,
        ExamSystem.abdominal,
        ExamSystem.neurological,
        ExamSystem.head_neck,
        ExamSystem.lymphatic,
        ExamSystem.breast,
        ExamSystem.pelvic,
        ExamSystem.genitourinary,
        ExamSystem.vitals,
        ExamSystem.skin,
    }
)


def exam_items(findings: Any) -> list[ExamItem]:
    """Physical examination findings: vital signs as one finding; each section's leaves as findings of their own."""
    if isinstance(findings, (str, list)):
        text = flatten(findings)
        return [prose.exam_from_sentence(text)] if text else []
    if not isinstance(findings, dict):
        raise RecordError(
            "Physical_Examination_Findings must be an object or text",
            "OSCE_Examination.Physical_Examination_Findings",
        )
    out: list[ExamItem] = []
    for key, val in findings.items():
        sec = label(str(key))
        text = flatten(val)
        if not text:
            continue
        if _VITAL_KEY.search(str(key)):
            names = [label(str(k)).lower() for k in val] if isinstance(val, dict) else []
            out.append(ExamItem("Vital signs", text, ExamSystem.vitals, synonyms=tuple(names)))
            continue
        general = bool(_GENERAL_SECTION.match(str(key)))
        sec_system = None if general else nlp.exam_system(sec, "")
        if not isinstance(val, dict):
            system = sec_system or nlp.exam_system("", text)
            name = sec if not general else f"{system.value.replace('_', ' ').capitalize()} examination"
            out.append(ExamItem(name, text, system))
            continue
        for leaf_key, leaf_val in val.items():
            leaf = label(str(leaf_key))
            leaf_text = flatten(leaf_val)
            if not leaf_text:
                continue
            if _VITAL_KEY.search(str(leaf_key)):
                out.append(ExamItem("Vital signs", leaf_text, ExamSystem.vitals))
                continue
            leaf_system = nlp.exam_system(leaf, "", default=None) if not _GENERIC_LEAF.match(leaf) else None
            probe = nlp.exam_system(leaf, leaf_text)
            if sec_system is None:
                system = probe
            elif leaf_system in _ORGAN and leaf_system is not sec_system and not _GENERIC_LEAF.match(leaf):
                system = leaf_system
            else:
                system = sec_system
            name = f"{sec}: {leaf.lower()}" if _GENERIC_LEAF.match(leaf) else leaf
            syn = (leaf.lower(),) if not _GENERIC_LEAF.match(leaf) else ()
            out.append(ExamItem(name, leaf_text, system, synonyms=syn))
    return out


_CONTAINER = re.compile(
    r"^(?:blood[_ ]tests?|blood[_ ]work|lab(?:oratory)?[_ ]?(?:tests|studies|results|findings|values|data|work)?|"
    r"labs|imaging(?:[_ ](?:results|studies|findings|and[_ ]other[_ ]tests))?|other[_ ]tests|additional[_ ]"
    r"(?:tests|studies|investigations)|investigations|tests|test[_ ]results|special[_ ]tests?|basic[_ ]laboratory"
    r"[_ ]tests|results|diagnostic[_ ](?:tests|studies|results)|x[_ -]?rays|radiographs|serum[_ ](?:studies|"
    r"laboratory[_ ]analysis)|lab[_ ]results|imaging[_ ]results)$",
    re.IGNORECASE,
)
_REPORT_KEYS = frozenset(
    [
        "findings",
        "finding",
        "result",
        "results",
        "comments",
        "comment",
        "impression",
        "interpretation",
        "value",
        "description",
        "report",
        "conclusion",
        "details",
        "notes",
        "note",
        "summary",
        "status",
    ]
)


def _report_value(val: dict[str, Any]) -> str:
    """A structured report ({"Findings": ..., "Comments": ...}) as text; a lone "Findings" without its label."""
    keys = [k for k in val if flatten(val[k])]
    if len(keys) == 1 and str(keys[0]).lower() in _REPORT_KEYS:
        return flatten(val[keys[0]])
    return flatten(val)


def test_items(results: Any, *, _depth: int = 0) -> list[TestItem]:
    """Test results: a container ("Blood_Tests", "Imaging") yields its children as tests; a panel is one test."""
    if isinstance(results, (str, list)):
        text = flatten(results)
        return [TestItem("Test results", text)] if text else []
    if not isinstance(results, dict):
        raise RecordError("Test_Results must be an object or text", "OSCE_Examination.Test_Results")
    out: list[TestItem] = []
    for key, val in results.items():
        name = label(str(key))
        if isinstance(val, dict):
            lower = {str(k).lower() for k in val}
            nested = [v for v in val.values() if isinstance(v, dict)]
            if _depth < 3 and (
                _CONTAINER.match(str(key))
                or (nested and len(nested) == len(val) and not lower & _REPORT_KEYS)
            ):
                out += test_items(val, _depth=_depth + 1)
                continue
            value = _report_value(val)
        else:
            value = flatten(val)
        if value:
            out.append(TestItem(name, value))
    return out


# ------------------------------------------------------------------------------------------ OSCE

_PA_SECTIONS: dict[str, tuple[FactCategory, str]] = {
    "history": (FactCategory.hpi, "History"),
    "past_medical_history": (FactCategory.pmh, "Past_Medical_History"),
    "social_history": (FactCategory.social, "Social_History"),
    "review_of_systems": (FactCategory.ros, "Review_of_Systems"),
}


def _section_category(key: str) -> FactCategory | None:
    k = key.lower()
    for pattern, cat in (
        (r"medic|drug|prescri", FactCategory.medication),
        (r"allerg", FactCategory.allergy),
        (r"family", FactCategory.family),
        (r"sexual", FactCategory.sexual),
        (r"obstetric|gyn|menstrua|pregnan", FactCategory.obstetric),
        (r"birth|develop|immuni[sz]|vaccin|feeding", FactCategory.developmental),
        (r"psych|mood|mental", FactCategory.psychosocial),
        (r"social|occupation|lifestyle|habit", FactCategory.social),
        (r"surg|past|medical", FactCategory.pmh),
        (r"substance|alcohol|smok|tobacco", FactCategory.substance),
        (r"review", FactCategory.ros),
        (r"history|complaint|present", FactCategory.hpi),
    ):
        if re.search(pattern, k):
            return cat
    return None


def osce_draft(rec: Any, ctx: RecordContext) -> Draft:
    """One AgentClinic OSCE record as a draft case."""
    if not isinstance(rec, dict):
        raise RecordError(f"a record must be a JSON object, got {type(rec).__name__}")
    outer_extra = {k: v for k, v in rec.items() if k != "OSCE_Examination"}
    osce = rec.get("OSCE_Examination", rec if "Patient_Actor" in rec else None)
    if osce is rec:
        outer_extra = {}
    if not isinstance(osce, dict):
        raise RecordError(
            "missing 'OSCE_Examination' (an object with Patient_Actor and Correct_Diagnosis)",
            "OSCE_Examination",
        )
    pa = osce.get("Patient_Actor")
    if not isinstance(pa, dict):
        raise RecordError(
            "missing 'OSCE_Examination.Patient_Actor' (an object)", "OSCE_Examination.Patient_Actor"
        )
    dx = osce.get("Correct_Diagnosis")
    if not isinstance(dx, str) or not dx.strip():
        raise RecordError(
            "missing 'OSCE_Examination.Correct_Diagnosis' (the answer key must be non-empty text)",
            "OSCE_Examination.Correct_Diagnosis",
        )
    where = "OSCE_Examination.Patient_Actor"
    demo = _text_field(pa, "Demographics", where)
    history = _text_field(pa, "History", where)
    symptoms = pa.get("Symptoms") or {}
    if isinstance(symptoms, str):
        symptoms = {"Primary_Symptom": symptoms}
    if not isinstance(symptoms, dict):
        raise RecordError(f"{where}.Symptoms must be an object", f"{where}.Symptoms")
    primary_symptom = flatten(symptoms.get("Primary_Symptom"))
    secondary = symptoms.get("Secondary_Symptoms") or []
    if isinstance(secondary, str):
        secondary = [s for s in re.split(r";|,\s+", secondary) if s.strip()]
    if not isinstance(secondary, list):
        raise RecordError(
            f"{where}.Symptoms.Secondary_Symptoms must be a list", f"{where}.Symptoms.Secondary_Symptoms"
        )

    sections: dict[str, str] = {}
    for key in pa:
        if key in ("Demographics", "Symptoms"):
            continue
        sections[key] = _text_field(pa, key, where)
    narrative_parts = [demo, primary_symptom, *map(flatten, secondary), *sections.values()]
    narrative = " ".join(p for p in narrative_parts if p)

    age = parse_age(demo, history)
    if age is None:
        raise RecordError(
            f"cannot tell the patient's age from Demographics {demo!r}; write it as '35-year-old ...'",
            f"{where}.Demographics",
        )
    sex = parse_sex(demo, narrative) or ctx.default_sex
    if sex is None:
        raise RecordError(
            f"cannot tell the patient's sex from Demographics {demo!r} or the history's pronouns; add male or "
            "female to the record, or import with --default-sex",
            f"{where}.Demographics",
        )
    sex_placeholder = parse_sex(demo, narrative) is None
    pregnant, weeks = parse_pregnancy(f"{demo}. {history[:300]}", sex, age)
    speaker = _speaker(age)

    items: list[HistoryItem] = []
    extra_pa: dict[str, Any] = {}
    if primary_symptom:
        items.append(
            HistoryItem(primary_symptom, FactCategory.hpi, "Primary_Symptom", primary=True, symptom=True)
        )
    for s in secondary:
        text = flatten(s)
        if text:
            items.append(HistoryItem(text, FactCategory.symptom, "Secondary_Symptoms", symptom=True))
    for key, text in sections.items():
        if not text:
            continue
        known = _PA_SECTIONS.get(key.lower())
        cat = known[0] if known else _section_category(key)
        if cat is None:
            extra_pa[key] = pa[key]
            continue
        items.append(HistoryItem(text, cat, key))

    exam = exam_items(osce.get("Physical_Examination_Findings") or {})
    tests = test_items(osce.get("Test_Results") or {})
    chief = primary_symptom or (prose.chief_complaint(history) or "")
    if not chief:
        objective = _text_field(osce, "Objective_for_Doctor", "OSCE_Examination")
        chief = prose.chief_complaint(objective) or ""
    if not chief:
        raise RecordError(
            "no presenting complaint: give Symptoms.Primary_Symptom (or a History that says what the patient has)",
            f"{where}.Symptoms.Primary_Symptom",
        )
    extra: dict[str, Any] = {}
    ac = {
        k: v
        for k, v in osce.items()
        if k not in ("Patient_Actor", "Physical_Examination_Findings", "Test_Results", "Correct_Diagnosis")
    }
    if extra_pa:
        ac["Patient_Actor"] = extra_pa
    if outer_extra:
        ac["record"] = outer_extra
    if ac:
        extra["agentclinic"] = ac
    name = _variant(ctx.file)
    draft = Draft(
        case_id=f"{ctx.prefix}-{ctx.line:04d}",
        source={
            "kind": "imported",
            "name": name,
            "licence": "MIT",
            "original_id": ctx.where,
            "url": AGENTCLINIC_URL,
        },
        age_years=age,
        sex=sex,
        diagnosis=dx,
        chief_complaint=chief,
        history=items,
        exam=exam,
        tests=tests,
        title=f"{chief[0].upper() + chief[1:]} in a {demo or ('child' if age < 18 else 'adult')}",
        speaker=speaker,
        pregnant=pregnant,
        gestation_weeks=weeks,
        ethnicity=parse_ethnicity(demo),
        occupation=parse_occupation(sections.get("Social_History", "")),
        narrative=" ".join([_text_field(osce, "Objective_for_Doctor", "OSCE_Examination"), narrative]),
        extra=extra,
    )
    if sex_placeholder:
        draft.note("placeholder", f"demographics.sex = {sex} (not given by the source; --default-sex)")
    return draft


def osce_llm_text(rec: Any) -> str | None:
    """The free-text part of an OSCE record (the patient's sections), for ``--llm`` structuring."""
    if not isinstance(rec, dict):
        return None
    osce = rec.get("OSCE_Examination", rec)
    pa = osce.get("Patient_Actor") if isinstance(osce, dict) else None
    if not isinstance(pa, dict):
        return None
    lines = [f"{label(str(k))}: {flatten(v)}" for k, v in pa.items() if flatten(v)]
    return "\n".join(lines) or None


# ------------------------------------------------------------------------------------------ NEJM

_META = re.compile(
    r"your role|patient actor|information you need|need to convey|here['’]s what|^remember\b|portrayal|"
    r"your character|you need to know|knowledge is limited|not aware of (?:your|the) (?:diagnosis|specific)|"
    r"which you['’]re not aware of",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(
    r"^for\s+your\s+role\s+as\s+(?:a|the)\s+patient(?:\s+actor)?,?\s*(?:here['’]s[^:]*:\s*|you\s+need\s+to\s+"
    r"convey[^:]*:\s*)?",
    re.IGNORECASE,
)
_HEADER = re.compile(r"^[A-Z][A-Za-z ,()/&\-]{2,80}:$")
_PANEL = re.compile(
    r"\s*\((?:[^()]*\b(?:left|right|middle|top|bottom|inset|box|arrows?|panel|view|image|shown)\b[^()]*)\)",
    re.IGNORECASE,
)
_IMAGE_ONLY = re.compile(
    r"\b(?:is|are) shown\b|\bshown in (?:the )?(?:image|figure)|\bsee (?:the )?image", re.I
)
_EXAM_SAID = re.compile(
    r"\bexamination\b|\bexamined\b|\bthe doctor (?:noted|found|observed)|\bit was noted\b|\bon exam",
    re.IGNORECASE,
)


def _items(text: str) -> list[str]:
    """Bullet and numbered items of a brief (" - item", "1. item") as separate strings; headers split off."""
    text = nlp.clean_text(text)
    parts = re.split(r"\s+-\s+(?=[A-Z(\"'])|(?:^|\s)\d{1,2}\.\s+(?=[A-Z])", text)
    out: list[str] = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        # "Tests for HIV: Negative Imaging results:" -> the item, then a header of its own.
        m = re.match(r"^(.+?:\s*\S.*?)\s+([A-Z][A-Za-z ,()/&\-]{2,60}:)$", p)
        if m and ":" in m.group(1):
            out += [m.group(1).strip(), m.group(2).strip()]
        else:
            out.append(p)
    return out


def _strip_label(item: str) -> str:
    """ "Age and Background: You are ..." -> "You are ..."."""
    m = re.match(r"^([A-Z][A-Za-z ,()/&\-]{2,60}):\s+(.+)$", item)
    return m.group(2) if m and len(m.group(1).split()) <= 6 else item


def _second_to_third(text: str, sex: str) -> str:
    """A patient-actor brief's sentence in clinician wording ("You have had fevers" -> "The patient has had ...")."""
    pos = "her" if sex == "female" else "his"
    text = re.sub(r"\byou['’]ve\b", "the patient has", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou['’]re\b|\byou are\b", "the patient is", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou were\b", "the patient was", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou have\b", "the patient has", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou haven['’]t\b", "the patient has not", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou don['’]t\b", "the patient does not", text, flags=re.IGNORECASE)
    text = re.sub(r"\byou didn['’]t\b", "the patient did not", text, flags=re.IGNORECASE)
    text = re.sub(r"\byourself\b", "herself" if sex == "female" else "himself", text, flags=re.IGNORECASE)
    text = re.sub(r"\byour\b", pos, text, flags=re.IGNORECASE)
    text = re.sub(
        r"(^|[.,;]\s*|\b(?:and|but|that|when|because|as|if|so)\s+)you\b", r"\1the patient", text, flags=re.I
    )
    text = re.sub(r"\byou\b", "her" if sex == "female" else "him", text, flags=re.IGNORECASE)
    return nlp.finish(text)


def _exam_or_test(name: str, value: str, default: str | None) -> str:
    probe = f"{name}: {value}"
    if re.search(
        r"examination|\bexam\b|inspection|palpation|auscultation|dermoscop|vital|appearance|fundoscop|funduscop|"
        r"otoscop|ophthalmoscop|slit[- ]lamp|visual acuity",
        name,
        re.I,
    ):
        return "exam"
    if re.search(
        r"laborator|\blab|test|imaging|biops|culture|\bct\b|mri|x-?ray|ultrasound|scan|smear|serolog|"
        r"histolog|patholog|analysis|stain|lavage|molecular|aspirat|ecg|ekg|echo|radiograph",
        name,
        re.I,
    ):
        return "test"
    if default:
        return default
    kind = prose.classify(probe)
    return "exam" if kind in ("exam", "vitals") else "test"


def nejm_draft(rec: Any, ctx: RecordContext) -> Draft:
    """One AgentClinic NEJM record as a draft case."""
    if not isinstance(rec, dict):
        raise RecordError(f"a record must be a JSON object, got {type(rec).__name__}")
    question = rec.get("question")
    if not isinstance(question, str) or not question.strip():
        raise RecordError("missing 'question' (the vignette text)", "question")
    answers = rec.get("answers")
    if not isinstance(answers, list) or not answers:
        raise RecordError("missing 'answers' (a list of {text, correct})", "answers")
    for i, a in enumerate(answers):
        if (
            not isinstance(a, dict)
            or not isinstance(a.get("text"), str)
            or not isinstance(a.get("correct"), bool)
        ):
            raise RecordError(
                f"answers[{i}] must be an object with text (string) and correct (true/false)", f"answers.{i}"
            )
    correct = [a["text"] for a in answers if a["correct"]]
    if len(correct) != 1:
        raise RecordError(f"answers must mark exactly one option correct, found {len(correct)}", "answers")
    patient_info = rec.get("patient_info") or ""
    physical = rec.get("physical_exams") or ""
    if not isinstance(patient_info, str) or not isinstance(physical, str):
        raise RecordError("patient_info and physical_exams must be text", "patient_info")

    q_sents = [_PANEL.sub("", s) for s in nlp.sentences(question)]
    asked = q_sents[-1] if q_sents and q_sents[-1].rstrip().endswith("?") else None
    vignette = q_sents[:-1] if asked else q_sents
    if not vignette:
        raise RecordError("the question holds no vignette before the question itself", "question")
    first = vignette[0]
    narrative = " ".join([question, patient_info, physical])
    age = parse_age(first, patient_info, question)
    if age is None:
        raise RecordError(f"cannot tell the patient's age from {first!r}", "question")
    sex = parse_sex(first, narrative) or ctx.default_sex
    if sex is None:
        raise RecordError(
            f"cannot tell the patient's sex from {first!r}; say it in the record or import with --default-sex",
            "question",
        )
    sex_placeholder = parse_sex(first, narrative) is None
    pregnant, weeks = parse_pregnancy(first, sex, age)
    skipped: list[str] = []

    # Readings and results: enumerated / bulleted items, "Name: value", under optional headers.
    exam: list[ExamItem] = []
    tests: list[TestItem] = []
    default: str | None = None
    header_name = ""
    for it in _items(physical):
        it = _PANEL.sub("", it)
        if _HEADER.match(it) or it.endswith(":"):
            low = it.lower()
            default = (
                "test"
                if re.search(r"lab|test|imaging|result|investigation", low)
                else ("exam" if re.search(r"exam|physical|vital", low) else default)
            )
            header_name = re.sub(r"\s*(?:results?|findings?)?\s*:$", "", it).strip()
            if re.search(r"includes?:$|following:$|extracted", low):
                default, header_name = None, ""
            continue
        m = re.match(r"^([^:]{2,90}):\s*(.+)$", it)
        if m and len(m.group(1).split()) <= 12:
            name, value = m.group(1).strip(), m.group(2).strip()
        else:
            name, value = "", it
        kind = _exam_or_test(name, value, default)
        name = re.sub(r"\s+(?:findings|results?)$", "", name, flags=re.IGNORECASE).strip()
        if kind == "exam":
            exam.append(
                ExamItem(name, nlp.finish(value), nlp.exam_system(name, value))
                if name
                else prose.exam_from_sentence(value)
            )
        elif name:
            tests.append(TestItem(name, nlp.finish(value)))
        elif header_name and not prose._NAME_VERB.match(value):
            tests.append(TestItem(header_name, nlp.finish(value)))
        else:
            tests.append(prose.test_from_sentence(value))
    # The vignette: examination findings and results the readings leave out, and its history.
    sorted_q = prose.sort_sentences(
        [s for s in vignette[1:] if not _IMAGE_ONLY.search(s)], section="question"
    )
    skipped += [s for s in vignette[1:] if _IMAGE_ONLY.search(s)]
    measured = [e.finding for e in exam] + [f"{t.name} {t.value}" for t in tests]
    exam += [e for e in sorted_q.exam if not prose.covered(e.finding, measured)]
    measured = [e.finding for e in exam] + [f"{t.name} {t.value}" for t in tests]
    tests += [t for t in sorted_q.tests if not prose.covered(f"{t.name} {t.value}", measured)]

    # History: what the patient-actor brief says the patient knows (second person), then the vignette's rest.
    items: list[HistoryItem] = []
    for it in _items(patient_info):
        it = _strip_label(_LEAD_IN.sub("", it))
        for s in nlp.sentences(it):
            s = _LEAD_IN.sub("", s).strip()
            if not s or _META.search(s) or s.endswith(":"):
                if s:
                    skipped.append(s)
                continue
            third = _second_to_third(s, sex)
            kind = prose.classify(third)
            if kind == "demographic":
                continue
            if kind in ("exam", "vitals") and _EXAM_SAID.search(s):
                measured = [e.finding for e in exam]
                if not prose.covered(third, measured, threshold=0.4):
                    exam.append(prose.exam_from_sentence(third))
                continue
            items.append(HistoryItem(third, FactCategory.hpi, "patient_info"))
    known = [h.text for h in items]
    items += [h for h in sorted_q.history if not prose.covered(h.text, known)]

    chief = prose.chief_complaint(first)
    opening = None
    if not items:
        items.append(HistoryItem(first, FactCategory.hpi, "question"))
    if chief is None:
        items[0].primary = True
        chief = nlp.strip_parentheticals(items[0].text).rstrip(".")
        opening = "Hello doctor. " + nlp.to_first_person(nlp.strip_parentheticals(items[0].text))
    else:
        cc_tokens = nlp.content_tokens(chief)
        for h in items:
            toks = nlp.content_tokens(h.text)
            if toks and cc_tokens and len(toks & cc_tokens) >= 0.6 * min(len(toks), len(cc_tokens)):
                h.primary = True
    extra: dict[str, Any] = {
        "nejm": {
            "question": question,
            "image_url": rec.get("image_url"),
            **({"skipped_sentences": skipped} if skipped else {}),
            **({"course": sorted_q.course} if sorted_q.course else {}),
            **{
                k: v
                for k, v in rec.items()
                if k not in ("question", "answers", "patient_info", "physical_exams", "image_url")
            },
        }
    }
    url = rec.get("image_url") if isinstance(rec.get("image_url"), str) else None
    m_id = re.search(r"id=([A-Za-z0-9]+)", url or "")
    draft = Draft(
        case_id=f"{ctx.prefix}-{ctx.line:04d}",
        source={
            "kind": "imported",
            "name": "AgentClinic NEJM",
            "licence": "MIT",
            "original_id": m_id.group(1) if m_id else ctx.where,
            "url": AGENTCLINIC_URL,
        },
        age_years=age,
        sex=sex,
        diagnosis=correct[0],
        differential=[a["text"] for a in answers if not a["correct"]],
        chief_complaint=chief,
        opening=opening,
        history=items,
        exam=exam,
        tests=tests,
        title=nlp.strip_parentheticals(first)[:200],
        speaker="parent" if age < 5 else "patient",
        pregnant=pregnant,
        gestation_weeks=weeks,
        ethnicity=parse_ethnicity(first),
        occupation=parse_occupation(narrative),
        narrative=narrative,
        extra=extra,
    )
    if sex_placeholder:
        draft.note("placeholder", f"demographics.sex = {sex} (not given by the source; --default-sex)")
    return draft


def nejm_llm_text(rec: Any) -> str | None:
    if not isinstance(rec, dict) or not isinstance(rec.get("question"), str):
        return None
    parts = [f"Vignette: {rec['question']}"]
    if isinstance(rec.get("patient_info"), str):
        parts.append(f"Patient brief: {rec['patient_info']}")
    if isinstance(rec.get("physical_exams"), str):
        parts.append(f"Readings and results: {rec['physical_exams']}")
    return "\n".join(parts)
