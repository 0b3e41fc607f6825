"""Doctor agents: ``RandomDoctor`` (floor), ``ScriptedDoctor`` (systematic history + naive-Bayes differential; the
strong non-LLM baseline and SFT teacher) and ``LLMDoctor`` (any ``ChatModel``). See :mod:`agents.base`."""

from .base import BatchDoctor, Doctor, DoctorBatch, run_episode
from .llm_doctor import LLMDoctor
from .random_doctor import RandomDoctor
from .scripted import ScriptedDoctor

__all__ = [
    "BatchDoctor",
    "Doctor",
    "DoctorBatch",
    "LLMDoctor",
    "RandomDoctor",
    "ScriptedDoctor",
    "run_episode",
]
