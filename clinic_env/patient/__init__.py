"""The patient simulator: the environment dynamics (Fact Unit, Affective Unit, Termination Gate, examiner)."""

from .fact_unit import FactUnit, Violation
from .simulator import PatientSimulator, PatientTurn, respond_batch
from .termination import REASONS, TerminationGate
from .understanding import CompiledCase, Intents, compile_case

__all__ = [
    "REASONS",
    "CompiledCase",
    "FactUnit",
    "Intents",
    "PatientSimulator",
    "PatientTurn",
    "TerminationGate",
    "Violation",
    "compile_case",
    "respond_batch",
]
