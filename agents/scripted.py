"""``ScriptedDoctor``: systematic history, a transparent naive-Bayes differential, then exam, tests and a plan.

It sees only what a doctor would: the patient's words, the ``[examiner]`` lines and, when the environment gives
it, ``info["patient"]`` (age and sex, as on a clinic list). Its medical knowledge is the condition knowledge base
(:mod:`clinic_env.cases.knowledge`): a prior from prevalence by age band and sex, and for every condition the
probability of each history concept, exam sign and test result.

The consultation, turn by turn:

1. greet, acknowledge, and ask about onset, character and course (SOCRATES);
2. past history, medicines and allergies; 3. family and social history;
4. up to ``questions`` yes/no questions, each on the history concept with the largest expected information gain
   over the current posterior (sensitive ones asked with a confidentiality preface);
5. the leading condition's remaining essential concepts in one turn;
6. ``EXAM:`` the systems where the leading conditions have signs; 7. ``TEST:`` their discriminating tests;
8. ``DIAGNOSIS:`` the posterior's top condition with its differentials, and ``PLAN:`` its first-line treatment
   minus anything contraindicated by what the patient said, the disposition, red flags and safety-netting.

Evidence: concepts the patient mentions (through the shared lexicon) count as present; a yes/no answer counts as
present or absent by its polarity ("No, nothing like that" is absent; "not sure" is no evidence). Exam and test
reports raise the conditions whose signs they resemble (word overlap) and lower those whose expected signs were
looked for and not found. Every number is in :class:`ScriptedDoctor`'s arguments or the knowledge base.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clinic_env.cases.generator import BAND_SHARE
from clinic_env.cases.knowledge import Condition, KnowledgeBase, age_band, load_knowledge

_DENIAL = re.compile(
    r"^(no\b|nope|not that i|not really|nothing|never|none|i haven'?t|i have not|i don'?t|i do not|i'm not|"
    r"i am not|she hasn'?t|he hasn'?t|she doesn'?t|he doesn'?t|not at all|we haven'?t)"
)
_UNSURE = re.compile(
    r"^(i'?m not sure|not sure|hard to say|i don'?t (really )?know|no idea|not that i know|could you say|"
    r"sorry, what|what do you mean|i don'?t follow|i'?m not sure what you|pardon|i don'?t understand)"
)
_FILLER = re.compile(
    r"^(\*[^*]*\*\s*|(okay|ok|sure|right|well|yes|yeah|hmm|mm|um|er|oh|ugh|please|sorry)[,.!]*\s+|"
    r"(like i said|as i mentioned|i told you|again),?\s*|\.\.\.\s*)+",
    re.IGNORECASE,
)
_REPEAT = re.compile(r"^(\*[^*]*\*\s*)?(like i said|as i mentioned|i told you|again,)", re.IGNORECASE)
# Body part + pain word in one sentence -> the pain concept ("pain in the middle of my stomach").
_PAIN_WORDS = re.compile(
    r"\b(pain|painful|hurts?|hurting|ache|aches|aching|sore|pressure|tight|tightness|cramps?)\b"
)
_BODY_PAIN = (
    (re.compile(r"\b(stomach|tummy|belly|abdomen|abdominal)\b"), "abdominal_pain"),
    (re.compile(r"\b(chest)\b"), "chest_pain"),
    (re.compile(r"\b(head)\b"), "headache"),
    (re.compile(r"\b(back)\b"), "back_pain"),
    (re.compile(r"\b(ears?)\b"), "ear_pain"),
    (re.compile(r"\b(eyes?)\b"), "eye_pain"),
    (re.compile(r"\b(joints?|knees?|hips?|ankles?|wrists?|shoulders?|elbows?|toes?)\b"), "joint_pain"),
    (re.compile(r"\b(throat)\b"), "sore_throat"),
)
_EXAMINER = re.compile(r"^\[examiner\]\s*([^:]+):\s*(.*)$", re.MULTILINE)
_STOP = frozenset(
    [
        "the",
        "and",
        "with",
        "without",
        "for",
        "from",
        "this",
        "that",
        "over",
        "under",
        "into",
        "onto",
        "than",
        "then",
        "there",
        "their",
        "they",
        "them",
        "have",
        "has",
        "had",
        "was",
        "were",
        "are",
        "been",
        "being",
        "not",
        "but",
        "any",
        "all",
        "per",
        "left",
        "right",
        "both",
        "each",
        "also",
        "only",
        "more",
        "less",
        "very",
        "some",
        "normal",
        "examination",
        "exam",
        "result",
        "results",
        "test",
        "tests",
        "seen",
        "shows",
        "showing",
        "within",
        "limits",
        "noted",
    ]
)
_POSITIVE_RESULT = re.compile(
    r"\b(raised|elevated|high|low|reduced|abnormal|positive|mass|consolidation|fracture|effusion|tender|"
    r"enlarged|swollen|dilated|deviation|opacity|thickening|stone|cyst|lesion|rash|murmur|crackles|wheeze|"
    r"absent|weak|irregular|bleed|haemorrhage|infarct|occlusion|ischaemi|detachment|free fluid)\b"
)


def _content(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z\-]{2,}", text.lower()) if w not in _STOP}


def _polarity(reply: str) -> bool | None:
    """True if the reply affirms, False if it denies, None if unsure, not understood or empty.

    Sentences are read in order past fillers and asides ("Sorry, I'm a bit nervous."): the first that denies or
    is unsure decides; otherwise any content means yes.
    """
    sentences = [_FILLER.sub("", x).strip().lower() for x in re.split(r"(?<=[.!?])\s+", reply.strip())]
    sentences = [x for x in sentences if x]
    if not sentences:
        return None
    for text in sentences:
        if _UNSURE.match(text):
            return None
        if _DENIAL.match(text):
            return False
    return True


_QUESTION_START = re.compile(
    r"^(did|do|does|have|has|had|is|are|was|were|any|how|when|what|where|why|can|could)\b"
)


def _ask_about(lay_terms: Sequence[str], synonyms: Sequence[str], concept: str) -> str:
    """A plain yes/no question for a concept the shared lexicon has no question for."""
    for term in lay_terms:
        if len(term.split()) <= 4 and not _QUESTION_START.match(term.lower()):
            return f"Have you noticed any {term}?"
    for term in lay_terms:
        if _QUESTION_START.match(term.lower()):
            return term[0].upper() + term[1:].rstrip("?") + "?"
    term = synonyms[0] if synonyms else concept.replace("_", " ").replace(".", " ")
    return f"Have you noticed any {term}?"


@dataclass
class _Episode:
    turn: int = 0
    heard: list[str] = field(default_factory=list)
    present: dict[str, bool] = field(default_factory=dict)  # concept -> True/False
    asked: set[str] = field(default_factory=set)
    pending: str | None = None
    exams: list[str] = field(default_factory=list)  # systems requested
    tests: list[str] = field(default_factory=list)  # test names requested
    results: list[tuple[str, str]] = field(default_factory=list)  # (name, text) from the examiner
    patient: dict[str, Any] = field(default_factory=dict)
    questions_left: int = 0
    repeats: int = 0
    log_prior: list[float] | None = None
    stage: str = "open"


class ScriptedDoctor:
    """The strong non-LLM baseline and the SFT teacher. ``act(observation, info) -> str``; ``reset()`` per episode.

    Args:
        kb: the knowledge base (default: the shipped one).
        questions: discriminating yes/no questions before the exam.
        top_k: conditions whose concepts are candidates for the next question.
        leak: P(a concept is present | a condition without that feature), for symptoms; history concepts (past
            history, medicines, social history) use ``history_leak``.
        use_specialty: use ``info["specialty"]`` as a prior (off by default: a doctor in general practice does
            not know it).
    """

    def __init__(
        self,
        kb: KnowledgeBase | None = None,
        *,
        questions: int = 6,
        top_k: int = 8,
        leak: float = 0.03,
        history_leak: float = 0.5,
        max_exam: int = 4,
        max_tests: int = 4,
        use_specialty: bool = False,
        name: str = "Dr Reid",
    ):
        from clinic_env.patient import lexicon as lx
        from clinic_env.patient.text import normalize
        from clinic_env.patient.understanding import PhraseIndex
        from clinic_env.wrappers import EXAM_NAMES, QUESTIONS

        if questions < 0 or top_k < 1 or not 0 < leak < 1 or not 0 < history_leak < 1:
            raise ValueError("questions >= 0, top_k >= 1 and 0 < leak, history_leak < 1 are required")
        self.kb = kb or load_knowledge()
        self.questions = questions
        self.top_k = top_k
        self.max_exam = max_exam
        self.max_tests = max_tests
        self.use_specialty = use_specialty
        self.leak = leak
        self.history_leak = history_leak
        self.name = name
        self._normalize = normalize
        self._questions = QUESTIONS
        self._exam_names = EXAM_NAMES
        self.conditions: list[Condition] = list(self.kb)
        # Likelihood tables: P(concept present | condition), with a leak for concepts a condition lacks.
        self.kind = {k: kind for k, (kind, _) in lx.CONCEPTS.items()}
        self.lik: list[dict[str, float]] = []
        self.ask_text: dict[str, str] = {}
        self.sensitive: set[str] = set()
        self.together: dict[str, set[str]] = {}  # concepts that share a feature: one answer covers them all
        sens_votes: dict[str, list[bool]] = {}
        phrases: dict[str, list[tuple[str, str]]] = {}
        for key, (_kind, words) in lx.CONCEPTS.items():
            for w in words:
                n = normalize(w)
                # question-shaped phrases ("when did it start") never occur in a patient's answer; nouns do
                if n.strip() and not n.strip().startswith(
                    ("when ", "how ", "what ", "do ", "does ", "any ", "have ")
                ):
                    phrases.setdefault(n, []).append(("concept", key))
        self._aliases = {k: v[0] for k, v in lx.ALIASES.items()}
        for c in self.conditions:
            table: dict[str, float] = {}
            for f in c.features:
                for k in (f.concept, *f.extra_concepts):
                    k = self.canon(k)
                    table[k] = max(table.get(k, 0.0), f.p)
                    sens_votes.setdefault(k, []).append(f.sensitive)
                    self.together.setdefault(k, set()).update(
                        self.canon(x) for x in (f.concept, *f.extra_concepts)
                    )
                    alias = lx.ALIASES.get(k, ())
                    if k not in self._questions and alias and alias[0] in self._questions:
                        self.ask_text[k] = self._questions[alias[0]]
                    if k not in self._questions and k not in self.ask_text:
                        self.ask_text[k] = _ask_about(f.lay_terms, f.synonyms, k)
                    for term in (*f.synonyms, *f.lay_terms):
                        n = normalize(term)
                        if n.strip() and k not in lx.CONCEPTS:
                            phrases.setdefault(n, []).append(("concept", k))
            self.lik.append(table)
        # a topic is asked with a confidentiality preface when most knowledge-base features on it are sensitive
        self.sensitive = {k for k, votes in sens_votes.items() if sum(votes) * 2 > len(votes)}
        self._index = PhraseIndex(phrases)
        self._keywords = {m.id: tuple(w.lower() for w in m.keywords) for m in self.kb.comorbidities.values()}
        self.reset()

    # ------------------------------------------------------------------------------------------ evidence

    def _default_leak(self, concept: str) -> float:
        return self.leak if self.kind.get(concept, "symptom") == "symptom" else self.history_leak

    def informative(self, concept: str) -> bool:
        """Whether mentioning a concept is evidence: symptoms and condition-specific concepts are; routine
        history topics (medicines, alcohol, past history) are not, since most patients have something to say."""
        return self.kind.get(concept, "symptom") == "symptom"

    def mentioned(self, text: str) -> set[str]:
        """Lexicon concepts a patient's text mentions (phrases, and body part + pain word in one sentence)."""
        found = {
            self.canon(k) for _, _, payload in self._index.iter(self._normalize(text)) for _, k in payload
        }
        for sentence in re.split(r"(?<=[.!?])\s+", text.lower()):
            if _PAIN_WORDS.search(sentence):
                found.update(k for pattern, k in _BODY_PAIN if pattern.search(sentence))
        return found

    def canon(self, concept: str) -> str:
        """A knowledge-base concept under its lexicon name (``ALIASES``: "dysuria" is "urine.symptoms")."""
        return concept if concept in self.kind else self._aliases.get(concept, concept)

    def prior(self, patient: dict[str, Any], specialty: str | None = None) -> list[float]:
        age, sex = patient.get("age_years"), patient.get("sex")
        out = []
        for c in self.conditions:
            prev = c.prevalence
            if age is not None:
                w = prev.by_age.get(age_band(float(age)), 0.0)
            else:
                w = sum(v * BAND_SHARE[b] for b, v in prev.by_age.items())
            if sex in ("female", "male"):
                w *= getattr(prev, sex)
                if sex == "male" and prev.pregnancy == "required":
                    w = 0.0
            if self.use_specialty and specialty and c.specialty.value != specialty:
                w *= 0.05
            out.append(w)
        if not any(out):  # nothing fits the demographics: fall back to a flat prior
            out = [1.0] * len(out)
        return out

    def posterior(self) -> list[float]:
        """Normalised posterior over the knowledge base's conditions given the evidence so far."""
        ep = self._ep
        if ep.log_prior is None:  # the prior depends only on the patient: once per episode
            prior = self.prior(ep.patient, ep.patient.get("_specialty"))
            ep.log_prior = [math.log(w) if w > 0 else -1e9 for w in prior]
        logp = list(ep.log_prior)
        for i, table in enumerate(self.lik):
            s = logp[i]
            for k, yes in ep.present.items():
                p = table.get(k, self._default_leak(k))
                s += math.log(p if yes else max(1e-3, 1 - p))
            s += self._result_loglik(i)
            logp[i] = s
        m = max(logp)
        ws = [math.exp(v - m) for v in logp]
        z = sum(ws)
        return [w / z for w in ws]

    def _result_loglik(self, i: int) -> float:
        ep = self._ep
        if not (ep.exams or ep.tests):
            return 0.0
        c = self.conditions[i]
        s = 0.0
        reports = [(_content(name), _content(text), text) for name, text in ep.results]
        signs = [(e.finding, e.p, e.system.value, None) for e in c.exam] + [
            (t.value + " " + (t.interpretation or ""), t.p, None, t.test or t.name) for t in c.tests
        ]
        for finding, p, system, test in signs:
            if system is not None and system not in ep.exams:
                continue
            if test is not None and test not in ep.tests:
                continue
            want = _content(finding)
            best = max((len(want & words) / max(1, len(want)) for _, words, _ in reports), default=0.0)
            if best >= 0.3:
                s += math.log(1 + 6 * best)
            else:
                s += math.log(max(0.05, 1 - 0.7 * p))
        return s

    def _observe(self, observation: str) -> None:
        ep = self._ep
        patient_text = "\n".join(ln for ln in observation.splitlines() if not ln.startswith("[examiner]"))
        ep.results += [(m.group(1).strip(), m.group(2).strip()) for m in _EXAMINER.finditer(observation)]
        ep.heard.append(patient_text)
        pol = _polarity(patient_text)  # read once: used for the pending question and for what else was said
        if ep.pending is not None:
            if pol is not None:
                ep.present[ep.pending] = pol
            if pol:  # the answer told the whole item, e.g. a cough "with green phlegm"
                ep.asked.update(self.together.get(ep.pending, ()))
            ep.pending = None
        if _REPEAT.match(patient_text.strip()):
            ep.repeats += 1
        if pol is not False:
            for k in self.mentioned(patient_text):
                ep.asked.add(k)
                if k.endswith("_pain") or k == "headache":
                    ep.asked.add("pain.location")
                if self.informative(k):
                    ep.present.setdefault(k, True)

    # ------------------------------------------------------------------------------------------ choices

    def _ranked(self) -> list[tuple[float, Condition, int]]:
        post = self.posterior()
        return sorted(((p, self.conditions[i], i) for i, p in enumerate(post)), key=lambda t: -t[0])

    def _next_question(self, ranked) -> str | None:
        ep = self._ep
        top = ranked[: self.top_k]
        z = sum(p for p, _, _ in top) or 1.0
        cands = {k for _, _, i in top for k in self.lik[i]} - set(ep.present) - ep.asked
        cands = {k for k in cands if k in self._questions or k in self.ask_text}
        if not cands:
            return None

        def entropy(ws: Sequence[float]) -> float:
            t = sum(ws)
            return -sum(w / t * math.log(w / t) for w in ws if w > 0) if t > 0 else 0.0

        best, best_gain = None, -1.0
        base = entropy([p for p, _, _ in top])
        for k in sorted(cands):
            yes = [p / z * self.lik[i].get(k, self._default_leak(k)) for p, _, i in top]
            no = [p / z - y for (p, _, _), y in zip(top, yes, strict=True)]
            py = sum(yes)
            gain = base - (py * entropy(yes) + (1 - py) * entropy(no))
            if gain > best_gain:
                best, best_gain = k, gain
        return best

    def _question(self, concept: str) -> str:
        q = self._questions.get(concept) or self.ask_text[concept]
        if concept in self.sensitive:
            return "I ask everyone this, and it stays confidential between us. " + q
        return q

    def _contraindicated(self, condition: Condition) -> set[str]:
        heard = " ".join(self._ep.heard).lower()
        feature_concepts = {f.id: f.concept for f in condition.features}
        bad = set()
        for ci in condition.management.contraindications:
            if ci.when == "always":
                hit = True
            elif ci.when in self._keywords:
                hit = any(w in heard for w in self._keywords[ci.when])
            else:
                hit = self._ep.present.get(feature_concepts.get(ci.when, ""), False)
            if hit:
                bad.add(ci.treatment.lower())
                bad.update(s.lower() for s in ci.synonyms)
        return bad

    # ------------------------------------------------------------------------------------------ the turn

    def reset(self) -> None:
        self._ep = _Episode(questions_left=self.questions)

    def act(self, observation: str, info: dict[str, Any] | None = None) -> str:
        info = info or {}
        if info.get("turn") == 0 and self._ep.turn:
            self.reset()
        ep = self._ep
        if ep.turn == 0:
            ep.patient = dict(info.get("patient") or {})
            if self.use_specialty:
                ep.patient["_specialty"] = info.get("specialty")
        self._observe(observation)
        ep.turn += 1
        ranked = self._ranked()

        if ep.stage == "open":
            ep.stage = "pmh"
            ep.asked |= {
                "pain.onset",
                "pain.character",
                "pain.timing",
                "previous_episodes",
                "pain.aggravating",
            }
            return (
                f"Hello, I'm {self.name}. I'm sorry you've been feeling unwell; that sounds worrying. "
                "Can you tell me more: what is it like, what makes it better or worse, and have you ever had "
                "anything like this before?"
            )
        if ep.stage == "pmh":
            ep.stage = "social"
            ep.asked |= {"past_medical_history", "medications", "allergies"}
            return (
                "Do you have any medical conditions, and do you take any regular medicines, including ones from "
                "the pharmacy? Are you allergic to any medicines?"
            )
        if ep.stage == "social":
            ep.stage = "ask"
            ep.asked |= {"family_history", "smoking", "alcohol"}
            return "Does anything run in your family? Do you smoke, and how much alcohol do you drink?"
        if ep.stage == "ask":
            # a patient who says "like I said" is losing patience: stop the yes/no round early
            if ep.questions_left > 0 and ep.repeats < 1:
                k = self._next_question(ranked)
                if k is not None:
                    ep.questions_left -= 1
                    ep.asked.add(k)
                    ep.pending = k
                    return self._question(k)
            ep.stage = "essentials"
        if ep.stage == "essentials":
            ep.stage = "exam"
            lead = ranked[0][1]
            missing = [
                f.concept
                for f in lead.features
                if f.essential
                and f.concept not in ep.present
                and f.concept not in ep.asked
                and (f.concept in self._questions or f.concept in self.ask_text)
            ]
            missing = list(dict.fromkeys(missing))[:3]
            if missing:
                ep.asked.update(missing)
                return " ".join(self._question(k) for k in missing)
        if ep.stage == "exam":
            ep.stage = "tests"
            systems = ["vitals"]
            for _, c, _ in ranked[:3]:
                systems += [e.system.value for e in sorted(c.exam, key=lambda e: -e.p)]
            systems = list(dict.fromkeys(systems))[: self.max_exam]
            ep.exams = systems
            return "I'd like to examine you now. EXAM: " + ", ".join(self._exam_names[s] for s in systems)
        if ep.stage == "tests":
            ep.stage = "close"
            names: list[str] = []
            for _, c, _ in ranked[:3]:
                names += [t.test or t.name for t in sorted(c.tests, key=lambda t: -t.p)][:2]
            names = list(dict.fromkeys(names))[: self.max_tests]
            ep.tests = names
            if names:
                return "I'd like to arrange some tests. TEST: " + ", ".join(names)
        return self._close(ranked)

    def _close(self, ranked) -> str:
        ep = self._ep
        ep.stage = "done"
        _, lead, _ = ranked[0]
        others = [self.kb.conditions[d].name for d in lead.differential if d in self.kb.conditions][:2]
        dx = f"DIAGNOSIS: The most likely cause is {lead.name}"
        if lead.synonyms:
            dx += f" ({lead.synonyms[0]})"
        dx += "."
        if others:
            dx += f" I have also considered {' and '.join(others)}, but your symptoms and results fit less well."
        bad = self._contraindicated(lead)
        m = lead.management
        treatments = [
            t
            for t in m.first_line
            if t.name.lower() not in bad and not any(s.lower() in bad for s in t.synonyms)
        ][:2]
        urgency = {
            "emergency": "This needs emergency treatment: I'm calling an ambulance to take you to the emergency "
            "department now.",
            "urgent": "You need to be seen urgently, today.",
            "routine": "This can be managed with a routine plan and follow-up.",
            "self_care": "This should settle with self-care at home.",
        }[m.disposition.value]
        plan = [f"PLAN: {urgency}"]
        if m.referral and not m.referral.lower().startswith(("none", "no ")):
            plan.append(f"Referral: {m.referral.rstrip('.')}.")
        for t in treatments:
            plan.append(f"Treatment: {t.name}" + (f" ({t.detail.rstrip('.')})" if t.detail else "") + ".")
        plan += list(m.education[:2])
        flags = [r.description for r in m.red_flags][:2]
        if flags:
            plan.append(
                "If you notice " + "; or ".join(f.rstrip(".").lower() for f in flags) + ", call 999 or go to "
                "A&E straight away."
            )
        plan.append(
            "If things get worse or you are worried, come back or call 111 sooner. "
            "I know this is a lot to take in; I'm sorry you're going through it, and we'll take it step by step."
        )
        if m.follow_up:
            plan.append(f"Follow-up: {m.follow_up}")
        return dx + " " + " ".join(plan)

    # ------------------------------------------------------------------------------------------ batch

    def explain(self, n: int = 5) -> list[tuple[str, float]]:
        """The current top ``n`` conditions and their posterior probabilities (for transparency)."""
        return [(c.name, round(p, 4)) for p, c, _ in self._ranked()[:n]]
