"""clinic-env: clinical consultations as Gymnasium / PettingZoo environments.

Research software, not for clinical use. ``import clinic_env`` stays light: heavy libraries (torch,
transformers, trl, vllm, fastapi) are imported inside the modules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from gymnasium.envs.registration import register as _register

from .cases import Case, CaseLoadError, CaseSet, load_cases

_register(id="clinic_env/Consultation-v0", entry_point="clinic_env.env:ConsultationEnv")

__all__ = ["Case", "CaseLoadError", "CaseSet", "__version__", "load_cases"]
