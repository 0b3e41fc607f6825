"""Gymnasium wrappers that adapt :class:`~clinic_env.env.ConsultationEnv` to different kinds of agent.

* ``ChatMessages`` - the observation is the chat so far, in OpenAI message format, for LLM agents
* ``DiscreteActions`` - a fixed catalog of doctor utterances and a numeric summary of the consultation, for
  standard RL libraries (Stable-Baselines3, CleanRL, ...)
* ``TokenIds`` - token ids in and out, for token-level agents

Each wrapper does one job and leaves the reward, ``terminated``, ``truncated`` and ``info`` of the wrapped env as
they are (it only adds keys to ``info``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .patient import lexicon as lx
from .patient.understanding import SOCRATES_LEAVES, UNSURE_CONCEPTS

__all__ = ["ChatMessages", "DiscreteActions", "TokenIds"]


def _text_space(env: gym.Env, name: str) -> spaces.Text:
    space = getattr(env, name)
    if not isinstance(space, spaces.Text):
        raise TypeError(f"the wrapped env's {name} must be a Text space, got {space!r}")
    return space


class _ClassConstant:
    """A read-only class attribute computed on first access (so importing this module reads no case files)."""

    def __init__(self, build: Callable[[], tuple[Any, ...]]):
        self._build = functools.cache(build)
        self.__doc__ = build.__doc__

    def __get__(self, obj: object, owner: type | None = None) -> list[Any]:
        return list(self._build())


# ------------------------------------------------------------------------------------------------ ChatMessages


class ChatMessages(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Makes the observation the whole chat so far, as OpenAI-style messages from the doctor's point of view.

    The patient speaks as ``"user"`` and the doctor (the agent) as ``"assistant"``; examiner reports are part of
    the patient's message, as in the env's text observation. With ``system_prompt``, the chat starts with a
    ``"system"`` message. Actions are unchanged (the doctor's next utterance, a ``str``).

    The observation is a ``tuple`` of ``{"role": ..., "content": ...}`` dicts inside
    ``Sequence(Dict(role=Text, content=Text))``. To keep it in that space, each content is cut to the space's
    ``max_length`` and characters outside the env's charset become ``"?"`` (the env does the same to its own text
    observations); ``info["messages"]`` keeps the exact text.

    Example:
        >>> from clinic_env.env import ConsultationEnv
        >>> from clinic_env.wrappers import ChatMessages
        >>> env = ChatMessages(ConsultationEnv(), system_prompt="You are a GP. Take a history.")
        >>> obs, info = env.reset(seed=0, options={"case_id": "card-inferior-stemi-pde5"})
        >>> [m["role"] for m in obs]
        ['system', 'user']
        >>> obs, reward, terminated, truncated, info = env.step("Do you smoke?")
        >>> [m["role"] for m in obs]
        ['system', 'user', 'assistant', 'user']
        >>> obs[2]
        {'role': 'assistant', 'content': 'Do you smoke?'}
        >>> obs in env.observation_space
        True

    Change logs:
     * v0.1.0 - Initially added
    """

    ROLES = ("system", "user", "assistant")

    def __init__(self, env: gym.Env, system_prompt: str | None = None):
        """Constructor for the chat-messages wrapper.

        Args:
            env: an env whose observations and actions are ``Text`` and whose ``info["messages"]`` holds the chat
                (``ConsultationEnv`` or a wrapper of it)
            system_prompt: a system message to put first, or ``None`` for none
        """
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise TypeError(f"system_prompt must be a str or None, got {type(system_prompt).__name__}")
        gym.utils.RecordConstructorArgs.__init__(self, system_prompt=system_prompt)
        gym.ObservationWrapper.__init__(self, env)
        obs_space, act_space = _text_space(env, "observation_space"), _text_space(env, "action_space")
        self.system_prompt = system_prompt
        charset = obs_space.character_set | act_space.character_set | set(system_prompt or "")
        self._charset = frozenset(charset)
        self._max_length = max(obs_space.max_length, act_space.max_length, len(system_prompt or ""))
        role = spaces.Text(
            max_length=max(map(len, self.ROLES)),
            min_length=1,
            charset="".join(sorted(set("".join(self.ROLES)))),
        )
        content = spaces.Text(max_length=self._max_length, min_length=0, charset="".join(sorted(charset)))
        self.observation_space = spaces.Sequence(spaces.Dict({"role": role, "content": content}), stack=False)
        self._info: dict[str, Any] = {}

    def _fit(self, text: str) -> str:
        return "".join(ch if ch in self._charset else "?" for ch in text[: self._max_length])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        self._info = info
        return self.observation(None), info

    def step(self, action: str):
        _, reward, terminated, truncated, info = self.env.step(action)
        self._info = info
        return self.observation(None), reward, terminated, truncated, info

    def observation(self, observation: Any) -> tuple[dict[str, str], ...]:
        """The chat so far, read from the latest ``info["messages"]`` (the text observation is not needed)."""
        if "messages" not in self._info:
            raise KeyError("ChatMessages needs the wrapped env to put the chat in info['messages']")
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        return tuple(
            {"role": m["role"], "content": self._fit(m["content"])} for m in (*head, *self._info["messages"])
        )


# ------------------------------------------------------------------------------------------------ DiscreteActions

# One natural question per shared concept key. Each is worded to hit only its own concept's phrases in
# ``lexicon.CONCEPTS`` (tests/test_wrappers.py checks this), so asking it asks about exactly that topic.
QUESTIONS: dict[str, str] = {
    "pain.onset": "When did the pain start?",
    "pain.duration": "How long does it last?",
    "pain.character": "What does the pain feel like?",
    "pain.location": "Where is the pain?",
    "pain.radiation": "Does the pain spread anywhere?",
    "pain.severity": "How severe is the pain, out of ten?",
    "pain.timing": "Does it come and go, or is it there all the time?",
    "pain.aggravating": "Does anything make it worse?",
    "pain.relieving": "Does anything make it better?",
    "fever": "Have you had a fever?",
    "weight_loss": "Have you lost weight?",
    "night_sweats": "Have you had any night sweats?",
    "sweating": "Have you been sweaty or clammy?",
    "fatigue": "Have you been feeling tired?",
    "appetite": "How is your appetite?",
    "nausea": "Have you had any nausea?",
    "vomiting": "Have you been vomiting?",
    "diarrhoea": "Have you had diarrhoea?",
    "constipation": "Have you been constipated?",
    "bowel_habit": "Have your bowel habits changed?",
    "stool.blood": "Have you noticed any blood in your stool?",
    "abdominal_pain": "Do you have any tummy pain?",
    "heartburn": "Do you get heartburn or indigestion?",
    "swallowing": "Do you have any trouble swallowing?",
    "jaundice": "Have you had any jaundice or yellowing?",
    "urine.symptoms": "Do you get burning when you pass urine?",
    "urine.blood": "Have you noticed any blood in your urine?",
    "cough": "Do you have a cough?",
    "sputum": "Are you bringing up any phlegm?",
    "haemoptysis": "Have you been coughing up blood?",
    "shortness_of_breath": "Do you get short of breath?",
    "wheeze": "Have you been wheezing?",
    "chest_pain": "Do you have any chest pain?",
    "palpitations": "Have you had any palpitations?",
    "syncope": "Have you passed out at all?",
    "swelling": "Have you noticed any swelling in your ankles or legs?",
    "orthopnoea": "Are you able to lie flat?",
    "claudication": "Do you get pain in your legs when you walk?",
    "headache": "Have you had any headaches?",
    "vision": "Has your vision changed?",
    "hearing": "Have you noticed any problems with your hearing?",
    "dizziness": "Have you felt dizzy?",
    "weakness": "Have you noticed any weakness?",
    "numbness": "Have you had any numbness or tingling?",
    "seizure": "Have you had any seizures?",
    "confusion": "Have you been feeling confused?",
    "neck_stiffness": "Do you have a stiff neck?",
    "photophobia": "Do bright lights hurt your eyes?",
    "rash": "Have you noticed a rash?",
    "itch": "Are you itchy anywhere?",
    "joint_pain": "Do you have any joint pain?",
    "back_pain": "Do you have any back pain?",
    "bleeding": "Have you noticed any unusual bleeding or bruising?",
    "lumps": "Have you noticed any lumps?",
    "mood": "How has your mood been?",
    "sleep": "How are you sleeping?",
    "self_harm": "Have you had any thoughts of harming yourself?",
    "hallucinations": "Have you been hearing voices or seeing things?",
    "past_medical_history": "Do you have any medical conditions?",
    "surgery": "Have you had any operations?",
    "medications": "Do you take any regular medication?",
    "medications.otc": "Are you using any remedies from the pharmacy?",
    "allergies": "Do you have any allergies?",
    "family_history": "Does anything run in the family?",
    "immunisations": "Are your vaccinations up to date?",
    "smoking": "Do you smoke?",
    "alcohol": "Do you drink alcohol?",
    "recreational_drugs": "Do you use any recreational drugs?",
    "occupation": "What do you do for work?",
    "living_situation": "Who do you live with?",
    "travel": "Have you been abroad recently?",
    "diet": "What is your diet like?",
    "exercise": "Do you do any exercise?",
    "safety_at_home": "Do you feel safe at home?",
    "finances": "Would cost or insurance be a problem for you?",
    "sexual_history": "Are you sexually active?",
    "contraception": "Do you use any birth control?",
    "menstrual_history": "When was your last menstrual period?",
    "pregnancy": "Is there any chance you could be pregnant?",
    "obstetric_history": "Have you had any pregnancies before?",
    "development": "How has development been, and were milestones on time?",
    "feeding": "Is the baby drinking milk normally?",
    "birth_history": "Was the baby born at term or premature?",
    "ice.concerns": "What are you most worried about?",
    "hypertension": "Do you have high blood pressure?",
    "diabetes": "Do you have diabetes?",
    "asthma": "Do you have asthma?",
    "heart_disease": "Have you had any heart problems?",
    "kidney_disease": "Have you had any kidney problems?",
    "liver_disease": "Have you had any liver problems?",
    "stroke": "Have you ever had a stroke?",
    "speech": "Has your speech been affected?",
    "falls": "Have you had any falls?",
    "head_injury": "Did you hit your head?",
    "trauma": "Have you had any injury or accident?",
    "drowsiness": "Have you been drowsy?",
    "sick_contacts": "Is anyone else around you unwell?",
    "driving": "Do you drive?",
    "function": "How are you managing day to day?",
    "mobility": "Do you use a walking aid?",
    "thirst": "Have you been very thirsty?",
    "polyuria": "Have you been passing a lot of urine?",
    "nocturia": "Do you get up in the night?",
    "urine.output": "How much urine are you passing?",
    "oral_intake": "Are you able to keep fluids down?",
    "antibiotics": "Have you had any antibiotics recently?",
    "nsaid": "Have you been using ibuprofen or other anti-inflammatories?",
    "anticoagulant": "Are you on any blood thinners?",
    "rigors": "Have you had bouts of teeth chattering?",
    "sore_throat": "Do you have a sore throat?",
    "exercise_tolerance": "How far can you walk before you have to stop?",
    "weight": "How much do you weigh?",
    "bleeding_risk": "Do you bleed easily or have any bleeding disorder?",
    "tremor": "Have you noticed a tremor?",
    "voice": "Has your voice changed or gone hoarse?",
    "vaginal_bleeding": "Have you had any vaginal bleeding?",
    "vaginal_discharge": "Have you noticed any vaginal discharge?",
    "infection": "Have you had any recent illness or infection?",
    "stridor": "Has there been any noisy breathing?",
    "memory": "Have you been forgetting things?",
    "concentration": "Have you had trouble concentrating?",
    "myalgia": "Have you had aching muscles?",
    "diplopia": "Have you been seeing double?",
    "anxiety": "Do you feel nervous or panicky?",
    "sti_history": "Have you ever been to a sexual health clinic?",
    "previous_episodes": "Has this happened before?",
    "menopause": "Are you still having periods?",
    "skin": "Do you have dry skin?",
    "hair_loss": "Have you noticed any hair loss?",
    "neck_swelling": "Have you noticed a lump in your neck?",
    "temperature_intolerance": "Do you feel the cold more than others?",
    "ear_pain": "Do you have any ear pain?",
    "eye_pain": "Do you have any eye pain?",
    "urinary_retention": "Are you unable to pass urine?",
    "last_meal": "When did you last eat?",
    "bloating": "Do you feel bloated?",
    "stiffness": "Do you get stiffness?",
    "support": "Do you have anyone to help you?",
    "money": "Do you have any problems with bills or debt?",
}

# How each exam system is named after "EXAM:": a phrase of that system in ``lexicon.EXAM_SYSTEMS``.
EXAM_NAMES: dict[str, str] = {
    "general": "general examination",
    "vitals": "vital signs",
    "cardiovascular": "cardiovascular",
    "respiratory": "respiratory",
    "abdominal": "abdominal",
    "neurological": "neurological",
    "musculoskeletal": "musculoskeletal",
    "skin": "skin",
    "head_neck": "head and neck",
    "ent": "ears, nose and throat",
    "eye": "eyes",
    "genitourinary": "genitourinary",
    "pelvic": "pelvic exam",
    "breast": "breast",
    "lymphatic": "lymph nodes",
    "mental_state": "mental state",
    "obstetric": "fundal height and fetal heart",
}

# Generic plans, two per disposition urgency (emergency, urgent, routine, self-care), each with safety-netting.
PLANS: tuple[str, ...] = (
    "PLAN: this needs emergency care; I'm calling an ambulance to take you to the emergency department now. "
    "Come back or call 999 if you get worse.",
    "PLAN: I'm admitting you to hospital now so the team can start treatment straight away. "
    "Tell the nurses right away if you feel any worse.",
    "PLAN: I'm making an urgent referral so the specialist team can assess you today. "
    "If things get worse before then, call 999 or go to A&E.",
    "PLAN: you need a same-day assessment at the hospital, and I'll arrange it and send a letter now. "
    "Go to A&E if you get worse while you wait.",
    "PLAN: I'll arrange a routine referral and some tests, and review you at follow-up in a few weeks. "
    "Come back sooner if things get worse.",
    "PLAN: we'll start treatment and I'll review you at a follow-up appointment in two weeks. "
    "Come back if you notice anything new.",
    "PLAN: this should settle on its own with rest, fluids and simple remedies from the pharmacy at home. "
    "Come back if it gets worse or isn't better in a week.",
    "PLAN: you can look after this at home with self-care, and I'll give you written advice. "
    "Come back if you develop any warning signs.",
)
EMPATHY_LINES: tuple[str, ...] = (
    "I'm sorry, that must be really tough for you.",
    "That sounds really difficult. Thank you for telling me.",
    "I understand, and I'm here to help you with this.",
    "Take your time; there's no rush.",
)
GOODBYE = "Goodbye."


def _build_catalog() -> tuple[tuple[str, str], ...]:
    """The action catalog: ``(kind, text)`` pairs, the same for every case (built from the shipped library)."""
    from .cases import load_cases

    diagnoses = sorted({c.diagnosis.primary for c in load_cases("builtin")})
    return (
        *(("ask", QUESTIONS[k]) for k in lx.CONCEPTS),
        *(("exam", f"EXAM: {EXAM_NAMES[s.value]}") for s in lx.EXAM_SYSTEMS),
        *(("test", f"TEST: {name}") for name in lx.TEST_CATALOG),
        *(("diagnosis", f"DIAGNOSIS: {name}") for name in diagnoses),
        *(("plan", text) for text in PLANS),
        *(("empathy", text) for text in EMPATHY_LINES),
        ("goodbye", GOODBYE),
    )


def _build_labels() -> tuple[str, ...]:
    """A name for each entry of the observation vector (see the ``DiscreteActions`` docstring)."""
    keys = list(lx.CONCEPTS)
    return (
        *(f"asked:{k}" for k in keys),
        *(f"positive:{k}" for k in keys),
        *(f"negative:{k}" for k in keys),
        *(f"examined:{s.value}" for s in lx.EXAM_SYSTEMS),
        *(f"tested:{name}" for name in lx.TEST_CATALOG),
        "diagnosis_given",
        "plan_given",
        "turn_fraction",
    )


def _fact_keys(concepts: tuple[str, ...]) -> set[str]:
    """Shared concept keys a fact answers: its own keys, their dotted parents, ``lexicon.ALIASES`` of both, and
    ``pain.<leaf>`` for SOCRATES leaves ("chest_pain.onset" also answers "pain.onset")."""
    keys: set[str] = set()
    for key in concepts:
        parts = key.split(".")
        own = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        if parts[-1] in SOCRATES_LEAVES:
            own.add(f"pain.{parts[-1]}")
        keys |= own
        for k in own:
            keys.update(lx.ALIASES.get(k, ()))
    return keys


class DiscreteActions(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Turns the consultation into a ``Discrete`` action, ``Box`` observation problem for standard RL libraries.

    ## Action Space
    ``Discrete(len(DiscreteActions.catalog))``: an index into a fixed catalog of ``(kind, text)`` utterances, the
    same for every case (diagnoses come from the shipped library, so the catalog is fixed for a given library):

    - ``ask``: one natural question per concept key of ``lexicon.CONCEPTS`` (e.g. "Do you smoke?");
    - ``exam``: ``"EXAM: <system>"`` per ``lexicon.EXAM_SYSTEMS`` entry;
    - ``test``: ``"TEST: <name>"`` per ``lexicon.TEST_CATALOG`` entry;
    - ``diagnosis``: ``"DIAGNOSIS: <primary diagnosis>"`` per case of ``load_cases("builtin")``, sorted;
    - ``plan``: generic plans, two per urgency (emergency, urgent same-day, routine follow-up, self-care), all
      with safety-netting;
    - ``empathy``: a few empathic lines; ``goodbye``: ``"Goodbye."`` (ends the episode).

    Anything that is not an integer in ``[0, n)`` raises ``TypeError`` or ``ValueError``. ``info`` gains
    ``action_kind`` and ``action_text``.

    ## Observation Space
    ``Box(0, 1, (3 * C + E + T + 3,), float32)``, what the doctor has learned so far, case-independent
    (``C`` concept keys, ``E`` exam systems and ``T`` catalog tests, in lexicon order; ``observation_labels`` names
    every entry):

    - ``[0, C)`` ``asked:<key>``: the agent asked the question on that concept;
    - ``[C, 2C)`` ``positive:<key>``: a fact answering the key has been disclosed (the opening statement included)
      and it is not a pertinent negative;
    - ``[2C, 3C)`` ``negative:<key>``: the patient said no: a pertinent-negative fact answering it was disclosed,
      or the case holds nothing on it and the patient denied it (the "I'm not sure" answers set neither bit);
    - ``[3C, 3C + E)`` ``examined:<system>``: the system was examined;
    - ``[3C + E, 3C + E + T)`` ``tested:<name>``: the test was ordered;
    - then ``diagnosis_given``, ``plan_given``, and ``turn_fraction`` (``info["turn"] / max_turns``).

    A fact answers the keys of its ``concepts``, their dotted parents, their ``lexicon.ALIASES`` and, for SOCRATES
    leaves, ``pain.<leaf>``; disclosure is read from ``info["disclosed"]`` and ``env.unwrapped.patient.cc.facts``.

    ## Rewards
    Unchanged.

    Example:
        >>> import numpy as np
        >>> from clinic_env.env import ConsultationEnv
        >>> from clinic_env.wrappers import DiscreteActions
        >>> env = DiscreteActions(ConsultationEnv())
        >>> env.action_space
        Discrete(317)
        >>> env.catalog[0], env.catalog[-1]
        (('ask', 'When did the pain start?'), ('goodbye', 'Goodbye.'))
        >>> obs, info = env.reset(seed=0, options={"case_id": "card-inferior-stemi-pde5"})
        >>> obs.shape, obs.dtype
        ((480,), dtype('float32'))
        >>> obs, reward, terminated, truncated, info = env.step(env.catalog.index(("ask", "Do you smoke?")))
        >>> [env.observation_labels[i] for i in np.flatnonzero(obs) if "smoking" in env.observation_labels[i]]
        ['asked:smoking', 'positive:smoking']

    Change logs:
     * v0.1.0 - Initially added
    """

    catalog = _ClassConstant(_build_catalog)
    observation_labels = _ClassConstant(_build_labels)

    def __init__(self, env: gym.Env):
        """Constructor for the discrete-actions wrapper.

        Args:
            env: a ``ConsultationEnv`` (or a wrapper of it whose actions are still the doctor's text)
        """
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._catalog = DiscreteActions.catalog
        self.action_space = spaces.Discrete(len(self._catalog))
        self._concepts = {k: i for i, k in enumerate(lx.CONCEPTS)}
        self._ask = {QUESTIONS[k]: i for k, i in self._concepts.items()}
        self._systems = {s.value: i for i, s in enumerate(lx.EXAM_SYSTEMS)}
        self._exam = {f"EXAM: {EXAM_NAMES[s]}": i for s, i in self._systems.items()}
        self._test = {f"TEST: {name}": i for i, name in enumerate(lx.TEST_CATALOG)}
        n_c, n_e, n_t = len(self._concepts), len(self._systems), len(self._test)
        self._asked, self._pos, self._neg = slice(0, n_c), slice(n_c, 2 * n_c), slice(2 * n_c, 3 * n_c)
        self._exam_block, self._test_block = (
            slice(3 * n_c, 3 * n_c + n_e),
            slice(3 * n_c + n_e, 3 * n_c + n_e + n_t),
        )
        size = 3 * n_c + n_e + n_t + 3
        self._dx, self._plan, self._turn = size - 3, size - 2, size - 1
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self._state = np.zeros(size, dtype=np.float32)
        self._slots: dict[str, tuple[list[int], bool]] = {}
        self._slots_for: Any = None
        kinds = np.array([k for k, _ in self._catalog])
        self._dx_actions = np.flatnonzero(kinds == "diagnosis")
        self._plan_actions = np.flatnonzero(kinds == "plan")
        self._used = np.zeros(len(self._catalog), dtype=bool)

    # ---------------------------------------------------------------------------------------- helpers

    def _index(self, action: Any) -> int:
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action[()]
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
            raise TypeError(
                f"a DiscreteActions action is an int index into the catalog, got {type(action).__name__} "
                f"({action!r})"
            )
        if not 0 <= action < len(self._catalog):
            raise ValueError(
                f"action {int(action)} is outside the catalog: expected an int in [0, {len(self._catalog)})"
            )
        return int(action)

    def _fact_slots(self) -> dict[str, tuple[list[int], bool]]:
        """Fact id -> (indices of the concept keys it answers, is a pertinent negative), for the current case."""
        cc = self.env.unwrapped.patient.cc
        if cc is not self._slots_for:
            self._slots = {
                fid: (
                    sorted(self._concepts[k] for k in _fact_keys(tuple(f.concepts)) if k in self._concepts),
                    bool(f.pertinent_negative),
                )
                for fid, f in cc.facts.items()
            }
            self._slots_for = cc
        return self._slots

    def _update(self, info: dict[str, Any]) -> np.ndarray:
        slots = self._fact_slots()
        pos, neg = self._state[self._pos], self._state[self._neg]
        for fid in info.get("disclosed", ()):
            idx, negative = slots.get(fid, ((), False))
            (neg if negative else pos)[list(idx)] = 1.0
        patient = self.env.unwrapped.patient
        turns = getattr(patient, "turns", None)
        intents = getattr(turns[-1], "intents", None) if turns else None
        if intents is not None and info.get("turn", 0) > 0:
            for (
                key
            ) in intents.missing_concepts:  # asked, nothing on it in the case, and the patient denied it
                if key in self._concepts and key not in UNSURE_CONCEPTS:
                    neg[self._concepts[key]] = 1.0
        exams = patient.cc.exams
        for eid in info.get("examined", ()):
            system = getattr(getattr(exams.get(eid), "system", None), "value", None)
            if system in self._systems:
                self._state[self._exam_block][self._systems[system]] = 1.0
        max_turns = getattr(self.env.unwrapped, "max_turns", None) or 1
        self._state[self._turn] = min(1.0, info.get("turn", 0) / max_turns)
        return self._state.copy()

    # ---------------------------------------------------------------------------------------- API

    def action_masks(self) -> np.ndarray:
        """Actions still worth taking this episode (the sb3-contrib ``MaskablePPO`` convention): each catalog line
        once, one diagnosis and one plan. Repeating a question is legal in the env (and costs the patient's
        patience); the mask is for agents that want to skip such moves."""
        mask = ~self._used
        if not mask.any():
            mask[-1] = True
        return mask

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        self._state[:] = 0.0
        self._used[:] = False
        return self._update(info), info

    def step(self, action: Any):
        index = self._index(action)
        kind, text = self._catalog[index]
        self._used[index] = True
        if kind == "diagnosis":
            self._used[self._dx_actions] = True
        elif kind == "plan":
            self._used[self._plan_actions] = True
        _, reward, terminated, truncated, info = self.env.step(text)
        if kind == "ask":
            self._state[self._asked][self._ask[text]] = 1.0
        elif kind == "exam":
            self._state[self._exam_block][self._exam[text]] = 1.0
        elif kind == "test":
            self._state[self._test_block][self._test[text]] = 1.0
        elif kind == "diagnosis":
            self._state[self._dx] = 1.0
        elif kind == "plan":
            self._state[self._plan] = 1.0
        info = {**info, "action_kind": kind, "action_text": text}
        return self._update(info), reward, terminated, truncated, info


# ------------------------------------------------------------------------------------------------ TokenIds


class TokenIds(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Token ids in and out, for agents that read and write tokens of a ``transformers`` tokenizer.

    ## Observation Space
    ``Box(0, len(tokenizer) - 1, (max_obs_tokens,), int64)``: the text observation tokenized without special
    tokens, or, when the wrapped env already gives chat messages (:class:`ChatMessages`), the chat rendered with
    ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``. It is right-padded with the pad id (the
    EOS id when the tokenizer has no pad token); a longer text keeps its last ``max_obs_tokens`` tokens (the most
    recent context). ``info["obs_length"]`` is the number of real tokens and ``info["obs_truncated"]`` whether
    tokens were dropped.

    ## Action Space
    ``Box(0, len(tokenizer) - 1, (max_action_tokens,), int64)``: the doctor's utterance as token ids; pad ids are
    dropped and the rest decoded (special tokens skipped) before stepping the env. A shorter 1-D integer sequence is
    accepted too; out-of-range ids or too many tokens raise ``ValueError``. :meth:`encode_action` builds an action
    from text; ``info["action_text"]`` holds the decoded text.

    Example:
        >>> import numpy as np
        >>> from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        >>> from transformers import PreTrainedTokenizerFast
        >>> from clinic_env.env import ConsultationEnv
        >>> from clinic_env.wrappers import TokenIds
        >>> # a byte-level tokenizer built on the spot; any transformers tokenizer works the same way
        >>> vocab = {"<pad>": 0, **{b: i + 1 for i, b in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}}
        >>> backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        >>> backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        >>> backend.decoder = decoders.ByteLevel()
        >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>")
        >>> env = TokenIds(ConsultationEnv(), tokenizer, max_obs_tokens=1024, max_action_tokens=64)
        >>> obs, info = env.reset(seed=0, options={"case_id": "card-inferior-stemi-pde5"})
        >>> obs.shape, obs.dtype, obs in env.observation_space
        ((1024,), dtype('int64'), True)
        >>> tokenizer.decode(obs[: info["obs_length"]]) == info["messages"][-1]["content"]
        True
        >>> action = env.encode_action("Do you smoke?")
        >>> action.shape, int((action != tokenizer.pad_token_id).sum())
        ((64,), 13)
        >>> obs, reward, terminated, truncated, info = env.step(action)
        >>> info["action_text"]
        'Do you smoke?'

    Change logs:
     * v0.1.0 - Initially added
    """

    def __init__(self, env: gym.Env, tokenizer: Any, max_obs_tokens: int = 512, max_action_tokens: int = 256):
        """Constructor for the token-ids wrapper.

        Args:
            env: an env with ``str`` actions whose observations are text or chat messages
            tokenizer: a ``transformers`` tokenizer (``__call__``, ``decode``, ``pad_token_id``/``eos_token_id``)
            max_obs_tokens: the length of the observation array
            max_action_tokens: the length of the action array (the longest utterance, in tokens)
        """
        for name, value in (("max_obs_tokens", max_obs_tokens), ("max_action_tokens", max_action_tokens)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad token nor an EOS token to pad with")
        gym.utils.RecordConstructorArgs.__init__(
            self, tokenizer=tokenizer, max_obs_tokens=max_obs_tokens, max_action_tokens=max_action_tokens
        )
        gym.Wrapper.__init__(self, env)
        self.tokenizer = tokenizer
        self.pad_token_id = int(pad)
        self.vocab_size = len(tokenizer)
        self.max_obs_tokens = int(max_obs_tokens)
        self.max_action_tokens = int(max_action_tokens)
        high = self.vocab_size - 1
        self.observation_space = spaces.Box(0, high, shape=(self.max_obs_tokens,), dtype=np.int64)
        self.action_space = spaces.Box(0, high, shape=(self.max_action_tokens,), dtype=np.int64)

    def _tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode_obs(self, observation: Any, info: dict[str, Any]) -> np.ndarray:
        if isinstance(observation, str):
            ids = self._tokenize(observation)
        elif isinstance(observation, (tuple, list)):
            text = self.tokenizer.apply_chat_template(
                [dict(m) for m in observation], add_generation_prompt=True, tokenize=False
            )
            ids = self._tokenize(text)
        else:
            raise TypeError(
                f"TokenIds needs text or chat-message observations, got {type(observation).__name__}"
            )
        info["obs_truncated"] = len(ids) > self.max_obs_tokens
        ids = ids[-self.max_obs_tokens :]
        info["obs_length"] = len(ids)
        out = np.full(self.max_obs_tokens, self.pad_token_id, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def encode_action(self, text: str) -> np.ndarray:
        """The action array for ``text``: its token ids (no special tokens), right-padded with the pad id."""
        ids = self._tokenize(text)
        if len(ids) > self.max_action_tokens:
            raise ValueError(
                f"{text!r} is {len(ids)} tokens, more than max_action_tokens={self.max_action_tokens}"
            )
        out = np.full(self.max_action_tokens, self.pad_token_id, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def decode_action(self, action: Any) -> str:
        """The text of an action array: pad ids dropped, special tokens skipped."""
        ids = np.asarray(action)
        if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
            raise ValueError(
                f"a TokenIds action is a 1-D array of int token ids, got shape {ids.shape} {ids.dtype}"
            )
        if ids.size > self.max_action_tokens:
            raise ValueError(
                f"the action has {ids.size} tokens, more than max_action_tokens={self.max_action_tokens}"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")
        kept = [int(i) for i in ids if i != self.pad_token_id]
        return self.tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        return self._encode_obs(obs, info), info

    def step(self, action: Any):
        text = self.decode_action(action)
        obs, reward, terminated, truncated, info = self.env.step(text)
        info = {**info, "action_text": text}
        return self._encode_obs(obs, info), reward, terminated, truncated, info
