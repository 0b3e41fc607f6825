"""The stratified case generator: synthetic consultation cases drawn from the condition knowledge base.

Cases are stratified as Baichuan-M2 stratifies its simulator cases: the requested number is shared out evenly
across specialties (largest remainder), and within a specialty a condition is drawn in proportion to its
prevalence; then the age band in proportion to the condition's prevalence by age, the sex by its multipliers,
comorbidities by their prevalence in that age band, and each feature, exam sign and test result with its
probability. Persona, social background and distractor facts vary with the seed. Same seed, same arguments,
same cases: every draw comes from one ``random.Random`` per case seeded from ``(seed, index)``.

>>> from clinic_env.cases.generator import generate_cases
>>> a = generate_cases(3, seed=7)
>>> [c.id for c in a] == [c.id for c in generate_cases(3, seed=7)]
True
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .knowledge import AGE_BANDS, Comorbidity, Condition, Feature, KnowledgeBase, load_knowledge
from .schema import (
    MBTI_TYPES,
    Case,
    CaseTag,
    Contraindication,
    Demographics,
    Diagnosis,
    DifferentialItem,
    EmotionalState,
    ExamFinding,
    Fact,
    FactCategory,
    Level,
    Management,
    Persona,
    RedFlag,
    Source,
    Speaker,
    TestResult,
    Urgency,
    Verbosity,
)

# Population share of each age band among consultations (rough UK primary/urgent care mix); multiplies the
# condition's per-band frequency so that, e.g., a condition equally common per consultation at every age is
# still drawn mostly in the bands that consult most.
BAND_SHARE = {
    "infant": 0.04,
    "child": 0.12,
    "adolescent": 0.06,
    "young_adult": 0.24,
    "middle_aged": 0.28,
    "older": 0.17,
    "very_old": 0.09,
}

FEMALE_NAMES = (
    "Amelia Hughes",
    "Priya Patel",
    "Grace O'Connor",
    "Fatima Begum",
    "Sophie Turner",
    "Chloe Evans",
    "Aisha Mohammed",
    "Olivia Brown",
    "Hannah Williams",
    "Zainab Ali",
    "Emily Clarke",
    "Mei Lin Chen",
    "Joanne Davies",
    "Margaret Wilson",
    "Beatrice Okafor",
    "Niamh Kelly",
    "Sarah Cohen",
    "Agnieszka Nowak",
    "Yasmin Rahman",
    "Dorothy Green",
    "Lucy Scott",
    "Ama Mensah",
    "Rebecca Lewis",
    "Kavita Sharma",
)
MALE_NAMES = (
    "James Smith",
    "Mohammed Hussain",
    "Oliver Jones",
    "Daniel Murphy",
    "Arjun Singh",
    "Thomas Walker",
    "Kwame Asante",
    "George Taylor",
    "Ryan Thompson",
    "Tomasz Kowalski",
    "David Roberts",
    "Wei Zhang",
    "Michael Edwards",
    "Harold Baker",
    "Samuel Adeyemi",
    "Liam Byrne",
    "Ahmed Khan",
    "Peter Morris",
    "Connor Walsh",
    "Ibrahim Yusuf",
    "Arthur Hall",
    "Joseph Okoro",
    "Ben Harris",
    "Rajesh Kumar",
)
PARENT_NAMES = ("Laura (mother)", "Nadia (mother)", "Chris (father)", "Sam (father)", "Jess (mother)")
OCCUPATIONS = {
    "infant": (None,),
    "child": ("primary school pupil",),
    "adolescent": ("secondary school student", "sixth-form student", "apprentice electrician"),
    "young_adult": (
        "nurse",
        "delivery driver",
        "software developer",
        "barista",
        "teacher",
        "postgraduate student",
        "plumber",
        "warehouse operative",
        "accountant",
        "hairdresser",
        "unemployed",
    ),
    "middle_aged": (
        "bus driver",
        "office manager",
        "builder",
        "solicitor",
        "care assistant",
        "taxi driver",
        "shop owner",
        "civil servant",
        "farmer",
        "cleaner",
        "engineer",
    ),
    "older": (
        "retired postman",
        "retired teacher",
        "retired nurse",
        "retired engineer",
        "part-time shop assistant",
    ),
    "very_old": ("retired", "retired seamstress", "retired miner", "retired civil servant"),
}
EDUCATION = {
    Level.low: ("left school at 16",),
    Level.medium: ("A levels", "vocational diploma", "GCSEs"),
    Level.high: ("university degree", "postgraduate degree"),
}
SOCIAL_CONCERNS = (
    "I can't really afford to take time off work.",
    "I look after my mum, so I need to know how long this will take.",
    "I've read a lot online and I'm worried it's something serious.",
)

# Distractor facts: true background details that do not bear on the diagnosis.
DISTRACTORS: tuple[Feature, ...] = tuple(
    Feature.model_validate(d)
    for d in (
        {
            "id": "dx_appendicectomy",
            "concept": "surgery",
            "extra_concepts": ["past_medical_history"],
            "category": "pmh",
            "p": 1.0,
            "say": ["I had my appendix out when I was a child, no problems since."],
            "clinician": "Appendicectomy in childhood.",
        },
        {
            "id": "dx_fh_bp",
            "concept": "family_history",
            "category": "family",
            "p": 1.0,
            "say": ["My dad had high blood pressure, that's about all I know of."],
            "clinician": "Father had hypertension.",
        },
        {
            "id": "dx_exercise",
            "concept": "exercise",
            "category": "social",
            "p": 1.0,
            "say": ["I walk the dog most days, about half an hour.", "I try to get to the gym once a week."],
            "clinician": "Moderately active.",
        },
        {
            "id": "dx_diet",
            "concept": "diet",
            "category": "social",
            "p": 1.0,
            "say": ["I eat fairly normally, maybe too many takeaways."],
            "clinician": "Unremarkable diet.",
        },
        {
            "id": "dx_sleep",
            "concept": "sleep",
            "category": "ros",
            "p": 1.0,
            "say": ["I sleep all right, about seven hours."],
            "clinician": "Sleeps normally.",
        },
        {
            "id": "dx_hay_fever",
            "concept": "allergies",
            "category": "allergy",
            "p": 1.0,
            "say": ["Just hay fever in the summer, no drug allergies."],
            "clinician": "Seasonal allergic rhinitis; no known drug allergies.",
        },
        {
            "id": "dx_travel_none",
            "concept": "travel",
            "category": "social",
            "p": 1.0,
            "say": ["I haven't been abroad this year."],
            "clinician": "No recent travel.",
        },
    )
)
LIVES = {
    "infant": ("We live at home, both parents and the baby.",),
    "child": (
        "We live at home, both parents, and there's an older sister.",
        "It's just me and the kids at home.",
    ),
    "adolescent": ("I live at home with my parents.", "I live with my mum and my brother."),
    "young_adult": ("I share a flat with two friends.", "I live with my partner.", "I live on my own."),
    "middle_aged": (
        "I live with my partner and our two teenagers.",
        "I live with my partner.",
        "I live alone.",
    ),
    "older": ("I live with my partner in a bungalow.", "I live on my own since I was widowed."),
    "very_old": ("I live alone with carers coming in once a day.", "I live with my daughter's family."),
}


# Topics every history touches; sharing them is not a contradiction.
_GENERIC_TOPICS = frozenset({"medications", "past_medical_history", "allergies", "family_history"})


# Comorbidity -> conditions it would duplicate or contradict as background (beyond a shared id or topic).
_CONFLICTS = {
    "hypertension": ("essential_hypertension", "pre_eclampsia"),
    "anticoagulated_af": ("atrial_fibrillation", "acute_limb_ischaemia", "ischaemic_stroke"),
    "type2_diabetes": ("type1_diabetes", "diabetic_ketoacidosis"),
    "depression_ssri": ("major_depression", "bipolar_depression"),
    "heavy_alcohol": ("alcohol_dependence", "acute_pancreatitis"),
    "heart_failure": ("acute_heart_failure",),
    "peptic_ulcer_history": ("bleeding_peptic_ulcer",),
    "ckd": ("acute_kidney_injury", "nephrotic_syndrome"),
    "asthma": ("acute_asthma",),
    "smoker": ("copd_exacerbation", "lung_cancer"),
    "epilepsy_valproate": ("first_seizure",),
}


class GeneratorError(ValueError):
    """Arguments the generator cannot satisfy (an unknown specialty, an age no condition occurs at, ...)."""


@dataclass(frozen=True)
class _Filters:
    specialties: frozenset[str] | None
    age: tuple[float, float] | None
    sex: str | None


def _parse_age(age: str | tuple[float, float] | None) -> tuple[float, float] | None:
    if age is None:
        return None
    if isinstance(age, tuple):
        lo, hi = age
    elif age in AGE_BANDS:
        lo, hi = AGE_BANDS[age]
    else:
        try:
            lo_s, hi_s = str(age).split("-")
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            raise GeneratorError(
                f"age must be 'LO-HI' in years (e.g. '18-40') or a band {sorted(AGE_BANDS)}, got {age!r}"
            ) from None
    if not 0 <= lo < hi <= 120:
        raise GeneratorError(f"age range must satisfy 0 <= LO < HI <= 120, got {lo}-{hi}")
    return float(lo), float(hi)


def _overlap(band: str, rng_: tuple[float, float] | None) -> tuple[float, float] | None:
    lo, hi = AGE_BANDS[band]
    if rng_ is None:
        return lo, hi
    a, b = max(lo, rng_[0]), min(hi, rng_[1])
    return (a, b) if a < b else None


class CaseGenerator:
    """Draws cases from a :class:`KnowledgeBase`; see the module docstring for the stratification."""

    def __init__(self, kb: KnowledgeBase | None = None):
        self.kb = kb or load_knowledge()

    # ------------------------------------------------------------------------------------------ sampling plan

    def _eligible(self, f: _Filters) -> dict[str, list[tuple[Condition, float]]]:
        """Conditions per specialty with their weight under the filters (0-weight ones dropped)."""
        out: dict[str, list[tuple[Condition, float]]] = {}
        for c in self.kb:
            if f.specialties is not None and c.specialty.value not in f.specialties:
                continue
            if f.sex is not None and getattr(c.prevalence, f.sex) == 0:
                continue
            w = sum(
                v * BAND_SHARE[b] * (_span(b, f.age) if f.age else 1.0)
                for b, v in c.prevalence.by_age.items()
            )
            w *= getattr(c.prevalence, f.sex) if f.sex else (c.prevalence.female + c.prevalence.male) / 2
            if c.prevalence.pregnancy == "required" and f.age and (f.age[1] <= 16 or f.age[0] >= 45):
                w = 0.0
            if w > 0:
                out.setdefault(c.specialty.value, []).append((c, w))
        return out

    def plan(self, n: int, seed: int, filters: _Filters) -> list[Condition]:
        """The condition of each of ``n`` cases: specialties shared out evenly, conditions by prevalence."""
        pools = self._eligible(filters)
        if not pools:
            raise GeneratorError(
                "no condition in the knowledge base matches these filters "
                f"(specialty={sorted(filters.specialties) if filters.specialties else 'any'}, "
                f"age={filters.age or 'any'}, sex={filters.sex or 'any'})"
            )
        specs = sorted(pools)
        base, extra = divmod(n, len(specs))
        rng = random.Random(f"plan:{seed}:{n}")
        lucky = set(rng.sample(specs, extra))
        out: list[Condition] = []
        for s in specs:
            conds, weights = zip(*pools[s], strict=True)
            out += rng.choices(conds, weights=weights, k=base + (s in lucky))
        rng.shuffle(out)
        return out

    # ------------------------------------------------------------------------------------------ one case

    def build(self, condition: Condition, rng: random.Random, *, case_id: str, filters: _Filters) -> Case:
        """One case of ``condition``; every draw from ``rng``."""
        prev = condition.prevalence
        bands = [(b, v * BAND_SHARE[b]) for b, v in prev.by_age.items() if v > 0 and _overlap(b, filters.age)]
        if prev.pregnancy == "required":
            bands = [(b, w) for b, w in bands if b in ("adolescent", "young_adult", "middle_aged")]
        if not bands:
            raise GeneratorError(f"condition {condition.id!r} cannot occur in the requested age range")
        band = rng.choices([b for b, _ in bands], weights=[w for _, w in bands])[0]
        lo, hi = _overlap(band, filters.age)  # type: ignore[misc]
        if prev.pregnancy == "required":
            lo, hi = max(lo, 16.0), min(hi, 45.0)
        age = rng.uniform(lo, hi)
        age = round(age, 2) if age < 1 else float(int(age))
        sex = filters.sex or rng.choices(("female", "male"), weights=(prev.female, prev.male))[0]
        pregnant: bool | None = None
        gestation = None
        if prev.pregnancy == "required":
            pregnant = True
            g_lo, g_hi = prev.gestation_weeks or (6, 36)
            gestation = rng.randint(g_lo, g_hi)
        elif sex == "female" and 16 <= age < 50:
            pregnant = False

        # Facts: the opening features always, the others each with its probability.
        facts: list[Fact] = []
        used: set[str] = set()
        present: set[str] = set()

        def add(f: Feature, text: str | None = None) -> str:
            fid = f.id
            k = 2
            while fid in used:
                fid, k = f"{f.id}_{k}", k + 1
            used.add(fid)
            facts.append(
                Fact(
                    id=fid,
                    category=f.category,
                    concepts=(f.concept, *f.extra_concepts),
                    synonyms=f.synonyms,
                    lay_terms=f.lay_terms,
                    patient_text=text or rng.choice(f.say),
                    clinician_text=f.clinician,
                    essential=f.essential,
                    sensitive=f.sensitive,
                )
            )
            return fid

        opening_ids = set(condition.opening_features)
        for f in condition.features:
            if f.id in opening_ids or rng.random() < f.p:
                present.add(add(f))
        comorbid: dict[str, list[str]] = {}
        # Background conditions and distractors must not contradict the presenting condition: skip a comorbidity
        # the condition already covers (hypertension in essential hypertension, alcohol in alcohol dependence) and
        # a distractor on a topic the history already has. Children (a parent speaks) get neither: the texts are
        # first person and adult.
        covered = {k for f in condition.features for k in (f.concept, *f.extra_concepts)} - _GENERIC_TOPICS
        child = age < 12
        for m in self.kb.comorbidities.values():
            if child or m.id == condition.id or condition.id in _CONFLICTS.get(m.id, ()):
                continue
            if any(f.concept in covered for f in m.features):
                continue
            if _has(m, band, sex, rng):
                comorbid[m.id] = [add(f) for f in m.features]
        if not child:
            topics = {k for f in facts for k in f.concepts}
            for f in rng.sample(DISTRACTORS, rng.randint(1, 3)):
                if f.concept in topics or (f.id == "dx_exercise" and band in ("older", "very_old")):
                    continue
                topics.add(f.concept)
                add(f)
        add(
            Feature(
                id="social_home",
                concept="living_situation",
                category=FactCategory.social,
                p=1.0,
                say=LIVES[band],
                clinician="Social history: home.",
            ),
        )

        exam = tuple(
            ExamFinding(
                id=e.id, system=e.system, name=e.name, synonyms=e.synonyms, finding=e.finding, abnormal=True
            )
            for e in condition.exam
            if rng.random() < e.p
        )
        tests = tuple(
            TestResult(
                id=t.id,
                name=t.name,
                kind=t.kind,
                synonyms=tuple(
                    dict.fromkeys((*t.synonyms, *((t.test,) if t.test and t.test != t.name else ())))
                ),
                value=t.value,
                unit=t.unit,
                normal_range=t.normal_range,
                abnormal=True,
                interpretation=t.interpretation,
            )
            for t in condition.tests
            if rng.random() < t.p
        )
        found = {e.id for e in exam} | {t.id for t in tests}

        contraindications = []
        trap = False  # a contraindication this patient's own history triggers (not one inherent to the condition)
        for ci in condition.management.contraindications:
            if ci.when == "always":
                # unsafe for this condition itself: the facts that establish the condition are the evidence
                evidence: tuple[str, ...] = tuple(f.id for f in facts if f.essential)[:3] or tuple(
                    condition.opening_features
                )
            elif ci.when in comorbid:
                evidence, trap = tuple(comorbid[ci.when]), True
            elif ci.when in present:
                evidence, trap = (ci.when,), True
            else:
                continue
            contraindications.append(
                Contraindication(
                    treatment=ci.treatment,
                    synonyms=ci.synonyms,
                    reason=ci.reason,
                    evidence=evidence,
                    severity=ci.severity,
                )
            )
        red_flags = tuple(
            RedFlag(
                description=r.description,
                urgency=r.urgency,
                evidence=(r.when,) if r.when and (r.when in present or r.when in found) else (),
            )
            for r in condition.management.red_flags
        )
        essential_present = [f.id for f in facts if f.essential]
        tags: list[CaseTag] = []
        if trap:
            tags.append(CaseTag.contraindication_trap)
        if any(f.sensitive and f.essential for f in facts):
            tags.append(CaseTag.sensitive_key_fact)
        if any(r.evidence and r.urgency is Urgency.emergency for r in red_flags):
            tags.append(CaseTag.red_flag)
        if len(comorbid) >= 2:
            tags.append(CaseTag.multimorbidity)

        persona = self._persona(condition, rng, band=band, sex=sex, age=age)
        return Case(
            id=case_id,
            title=f"Generated: {condition.chief_complaint} ({int(age) if age >= 1 else 'infant'}, {sex})",
            specialty=condition.specialty,
            setting=condition.setting,
            acuity=condition.acuity,
            source=Source(
                kind="generated",
                name="clinic-env stratified generator",
                licence="Apache-2.0",
                original_id=condition.id,
            ),
            guidelines=condition.guidelines,
            tags=tuple(tags),
            demographics=Demographics(age_years=age, sex=sex, pregnant=pregnant, gestation_weeks=gestation),
            persona=persona,
            chief_complaint=condition.chief_complaint,
            opening_statement=rng.choice(condition.openings),
            opening_facts=tuple(condition.opening_features),
            facts=tuple(facts),
            exam=exam,
            tests=tests,
            diagnosis=Diagnosis(
                primary=condition.name,
                synonyms=condition.synonyms,
                icd10=condition.icd10,
                key_evidence=tuple(essential_present) + tuple(sorted(found)),
                differential=tuple(self._differential(condition)),
            ),
            management=Management(
                disposition=condition.management.disposition,
                referral=condition.management.referral,
                first_line=condition.management.first_line,
                contraindications=tuple(contraindications),
                red_flags=red_flags,
                education=condition.management.education,
                follow_up=condition.management.follow_up,
            ),
        )

    def _differential(self, condition: Condition) -> Iterator[DifferentialItem]:
        mine = {f.concept for f in condition.features}
        for d in condition.differential:
            other = self.kb.conditions.get(d)
            if other is None:
                continue
            theirs = {f.concept for f in other.features}
            shared = sorted(mine & theirs)[:3]
            apart = sorted(mine - theirs)[:3]
            reasoning = (
                f"Shares {', '.join(k.replace('_', ' ') for k in shared) or 'the presenting complaint'}"
                f"; told apart by {', '.join(k.replace('_', ' ') for k in apart) or 'examination and tests'}."
            )
            yield DifferentialItem(name=other.name, reasoning=reasoning)

    def _persona(
        self, condition: Condition, rng: random.Random, *, band: str, sex: str, age: float
    ) -> Persona:
        acuity = condition.acuity.value
        if acuity in ("high", "critical"):
            emotions = (
                EmotionalState.frightened,
                EmotionalState.in_pain,
                EmotionalState.distressed,
                EmotionalState.anxious,
            )
        elif acuity == "moderate":
            emotions = (
                EmotionalState.anxious,
                EmotionalState.in_pain,
                EmotionalState.calm,
                EmotionalState.irritable,
            )
        else:
            emotions = (
                EmotionalState.calm,
                EmotionalState.anxious,
                EmotionalState.embarrassed,
                EmotionalState.low_mood,
            )
        literacy = rng.choices((Level.low, Level.medium, Level.high), weights=(0.3, 0.5, 0.2))[0]
        socioeconomic = rng.choices((Level.low, Level.medium, Level.high), weights=(0.3, 0.5, 0.2))[0]
        child = age < 12
        name = rng.choice(FEMALE_NAMES if sex == "female" else MALE_NAMES)
        if child:
            name = name.split()[0] + " (child)"
        concerns = list(condition.concerns[:1])
        cost = socioeconomic is Level.low and rng.random() < 0.5
        if not child and rng.random() < 0.3:
            concerns.append(rng.choice(SOCIAL_CONCERNS))
        return Persona(
            name=name,
            speaker=Speaker.parent if child else Speaker.patient,
            speaker_name=rng.choice(PARENT_NAMES) if child else None,
            mbti=rng.choice(MBTI_TYPES),
            health_literacy=literacy,
            emotional_state=rng.choice(emotions),
            verbosity=rng.choice(tuple(Verbosity)),
            patience=rng.choices((Level.low, Level.medium, Level.high), weights=(0.2, 0.6, 0.2))[0],
            occupation=rng.choice(OCCUPATIONS[band]),
            education=None if child else rng.choice(EDUCATION[literacy]),
            socioeconomic=socioeconomic,
            cost_concerns=cost,
            prefers_evidence=literacy is Level.high and rng.random() < 0.5,
            concerns=tuple(concerns),
        )

    # ------------------------------------------------------------------------------------------ public

    def iter_cases(
        self,
        n: int,
        *,
        seed: int = 0,
        specialty: str | Sequence[str] | None = None,
        age: str | tuple[float, float] | None = None,
        sex: str | None = None,
    ) -> Iterator[Case]:
        """Yield ``n`` cases (see :func:`generate_cases`)."""
        if not isinstance(n, int) or n < 0:
            raise GeneratorError(f"n must be a non-negative int, got {n!r}")
        specs = None
        if specialty is not None:
            specs = frozenset([specialty] if isinstance(specialty, str) else specialty)
            known = {c.specialty.value for c in self.kb}
            unknown = sorted(specs - known)
            if unknown:
                raise GeneratorError(f"unknown specialty {unknown}; the knowledge base has {sorted(known)}")
        if sex is not None and sex not in ("female", "male"):
            raise GeneratorError(f"sex must be 'female' or 'male', got {sex!r}")
        filters = _Filters(specs, _parse_age(age), sex)
        for i, condition in enumerate(self.plan(n, seed, filters) if n else []):
            rng = random.Random(f"case:{seed}:{i}")
            yield self.build(condition, rng, case_id=f"gen-s{seed}-{i:05d}", filters=filters)


def _span(band: str, age: tuple[float, float]) -> float:
    """Fraction of an age band inside a requested range."""
    lo, hi = AGE_BANDS[band]
    ov = _overlap(band, age)
    return 0.0 if ov is None else (ov[1] - ov[0]) / (hi - lo)


def _has(m: Comorbidity, band: str, sex: str, rng: random.Random) -> bool:
    p = m.prevalence.get(band, 0.0) * (m.female if sex == "female" else m.male)
    return p > 0 and rng.random() < p


def generate_cases(
    n: int,
    *,
    seed: int = 0,
    specialty: str | Sequence[str] | None = None,
    age: str | tuple[float, float] | None = None,
    sex: str | None = None,
    kb: KnowledgeBase | None = None,
) -> list[Case]:
    """``n`` valid cases stratified by specialty and drawn by prevalence; same arguments, same cases.

    ``specialty`` restricts to one or more specialties, ``age`` to a range in years (``"18-40"``) or a band name,
    ``sex`` to ``"female"`` or ``"male"``. Raises :class:`GeneratorError` for filters nothing matches.
    """
    return list(CaseGenerator(kb).iter_cases(n, seed=seed, specialty=specialty, age=age, sex=sex))
