"""The reward function: rubric generation, verifiers and HealthBench scoring."""

from .generate import LLMRubricGenerator, RuleRubricGenerator, parse_llm_criteria
from .schema import Axis, Check, Criterion, Dimension, Rubric
from .scoring import aggregate, calculate_score, example_metrics
from .verify import Grade, LLMVerifier, ReplayGrader, RuleVerifier, Transcript, parse_judgement, score_grades

__all__ = [
    "Axis",
    "Check",
    "Criterion",
    "Dimension",
    "Grade",
    "LLMRubricGenerator",
    "LLMVerifier",
    "ReplayGrader",
    "Rubric",
    "RuleRubricGenerator",
    "RuleVerifier",
    "Transcript",
    "aggregate",
    "calculate_score",
    "example_metrics",
    "parse_judgement",
    "parse_llm_criteria",
    "score_grades",
]
