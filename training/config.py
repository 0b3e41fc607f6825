"""Training configs: one strict pydantic schema for the three stages, loaded from YAML.

A config file names its ``stage`` (``sft``, ``single_turn`` or ``multi_turn``) and sets any of the sections below;
everything else keeps the documented defaults. Unknown keys and wrong types fail at load time, before any model is
built, with the dotted key in the message (``grpo.num_generations: Input should be a valid integer``).
:func:`preflight` then checks what needs the file system (model path, a non-empty case set).

The GRPO defaults are Baichuan-M2's changes (arXiv 2509.02208, section 4.3), each a switch:

========================================  =====================================  ==============================
Baichuan-M2                               here                                   TRL ``GRPOConfig``
========================================  =====================================  ==============================
no KL term, no reference model            ``grpo.beta: 0.0``                     ``beta``
clip-higher                               ``grpo.epsilon: 0.2``,                 ``epsilon``, ``epsilon_high``
                                          ``grpo.epsilon_high: 0.28``
token-level loss over a constant length   ``grpo.loss_type: dr_grpo``            ``loss_type``,
                                          ``grpo.max_completion_length``         ``max_completion_length``
advantage = reward - group mean (no std)  ``grpo.scale_rewards: none``           ``scale_rewards``
length reward k / sqrt(|o|), gated        ``length_reward.*``                    (added here, see rewards.py)
========================================  =====================================  ==============================
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_SYSTEM_PROMPT = (
    "You are a doctor in a consultation. Take a history one question at a time, examine with 'EXAM: ...', "
    "order tests with 'TEST: ...', then give 'DIAGNOSIS: ...' and 'PLAN: ...'."
)


class ConfigError(ValueError):
    """A training config is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataConfig(_Strict):
    """Which cases to train on. The held-out split is a fixed rule on case-id hashes (``training.data``)."""

    cases: str = "builtin"  # "builtin", a case file or a folder
    split: Literal["train", "held_out", "all"] = "train"
    held_out_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    case_ids: list[str] | None = None  # keep only these (after the split)
    max_cases: int | None = Field(None, ge=1)


class EnvConfig(_Strict):
    """The consultation environment the policy plays in (multi-turn) or is graded by (single-turn)."""

    patient: str = "rule"  # "rule" or a model spec: hf:PATH, openai:MODEL@URL, vllm:PATH
    verifier: str = "rule"  # "rule" or "llm:" + a model spec (an LLM judge)
    max_turns: int = Field(12, ge=1)
    rubric_seed: int = 0
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT  # null: no system message
    max_turn_tokens: int = Field(64, ge=1)  # tokens the doctor may write per turn
    # Clip what the policy reads of each patient message to this many characters (None: all of it). A context
    # budget for small models; grading always sees the full consultation.
    max_observation_chars: int | None = Field(None, ge=16)

    @field_validator("patient")
    @classmethod
    def _patient_spec(cls, v: str) -> str:
        if v != "rule":
            from clinic_env.llm.spec import parse_model_spec

            parse_model_spec(v)  # raises ValueError naming what is wrong
        return v

    @field_validator("verifier")
    @classmethod
    def _verifier_spec(cls, v: str) -> str:
        if v != "rule":
            if not v.startswith("llm:"):
                raise ValueError(f"verifier must be 'rule' or 'llm:SPEC', got {v!r}")
            from clinic_env.llm.spec import parse_model_spec

            parse_model_spec(v[len("llm:") :])
        return v


class TeacherConfig(_Strict):
    """The doctor whose transcripts warm-start the policy (SFT) and open single-turn prompts."""

    name: Literal["scripted", "checklist"] = "scripted"
    # Probability knob of training.teachers.VariedTeacher: skip a history question, insert a generic one, drop
    # or add exam/test items. 0 = the teacher as written.
    variation: float = Field(0.0, ge=0.0, le=1.0)
    episodes_per_case: int = Field(4, ge=1)
    eval_episodes_per_case: int = Field(1, ge=0)  # SFT validation transcripts (other seeds, same cases)
    seed: int = 0


class SFTSettings(_Strict):
    """``trl.SFTConfig`` fields for the warm start; ``extra`` passes any other SFTConfig field."""

    learning_rate: float = Field(1e-3, gt=0)
    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int = -1
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=8)
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = Field(0.05, ge=0)  # an int = steps; a float in [0, 1) = ratio of all steps
    weight_decay: float = Field(0.0, ge=0)
    eval_steps: int = Field(50, ge=1)
    early_stopping_patience: int | None = Field(3, ge=1)
    early_stopping_threshold: float = Field(0.0, ge=0)
    bf16: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)


class GRPOSettings(_Strict):
    """``trl.GRPOConfig`` fields, with Baichuan-M2's GRPO as the default; ``extra`` passes any other field."""

    learning_rate: float = Field(1e-6, gt=0)
    max_steps: int = Field(500, ge=1)
    num_generations: int = Field(8, ge=2)
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    steps_per_generation: int | None = Field(None, ge=1)
    num_iterations: int = Field(1, ge=1)
    max_completion_length: int = Field(2048, ge=8)  # the whole episode (doctor and environment tokens)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    beta: float = Field(0.0, ge=0)
    epsilon: float = Field(0.2, gt=0)
    epsilon_high: float = Field(0.28, gt=0)
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"] = "dr_grpo"
    scale_rewards: Literal["group", "batch", "none"] = "none"
    mask_truncated_completions: bool = False
    lr_scheduler_type: str = "constant"
    warmup_steps: float = Field(0.0, ge=0)  # an int = steps; a float in [0, 1) = ratio of all steps
    max_grad_norm: float = Field(1.0, gt=0)
    bf16: bool = False
    gradient_checkpointing: bool = False
    # The scale path (not run in CI): generation by vLLM, in a server (`trl vllm-serve`) or colocated.
    use_vllm: bool = False
    vllm_mode: Literal["server", "colocate"] = "server"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    extra: dict[str, Any] = Field(default_factory=dict)


class LengthRewardConfig(_Strict):
    """R_length = k / sqrt(|o|), paid when the group's ``percentile``-th rubric score > ``threshold`` and the sample's
    rubric score >= that percentile. |o| = the doctor's tokens in the episode (env tokens excluded).

    k: the paper uses 4 for responses of a few thousand tokens (4 / sqrt(3000) ~ 0.07). Our doctors write about
    100-400 tokens per consultation, so k = 1 pays 0.05-0.1 at those lengths: the same size against the rubric
    score (range about [-1, 1]) as the paper's. See docs/training.md.
    """

    enabled: bool = True
    k: float = Field(1.0, ge=0)
    percentile: float = Field(20.0, ge=0, le=100)
    threshold: float = 0.5


class CheckpointConfig(_Strict):
    save_steps: int = Field(50, ge=1)
    save_total_limit: int | None = Field(3, ge=1)
    resume: str = "auto"  # "auto" (last checkpoint in output_dir, if any), "never", or a checkpoint folder


class LoggingConfig(_Strict):
    logging_steps: int = Field(1, ge=1)
    report_to: list[Literal["tensorboard", "wandb", "none"]] = Field(default_factory=lambda: ["tensorboard"])
    log_transcripts: bool = False  # full message lists in rollouts.jsonl


class TrainConfig(_Strict):
    """One training stage. ``python -m training.grpo --config training/configs/STAGE.yaml``."""

    stage: Literal["sft", "single_turn", "multi_turn"]
    model_path: str
    output_dir: str
    seed: int = 0
    wall_clock_minutes: float | None = Field(None, gt=0)  # stop training (and save) after this long
    data: DataConfig = Field(default_factory=DataConfig)
    env: EnvConfig = Field(default_factory=EnvConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    length_reward: LengthRewardConfig = Field(default_factory=LengthRewardConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        g = self.grpo
        if self.stage != "sft":
            spg = g.steps_per_generation or g.gradient_accumulation_steps
            gen_batch = g.per_device_train_batch_size * spg
            if gen_batch % g.num_generations:
                raise ValueError(
                    f"grpo.num_generations ({g.num_generations}) must divide the generation batch "
                    f"grpo.per_device_train_batch_size x steps_per_generation = {g.per_device_train_batch_size} x "
                    f"{spg} = {gen_batch}: every case's group of episodes must fit in one batch"
                )
            # A checkpoint must fall on a generation boundary, or a resumed run regenerates from a batch that the
            # killed run had only half used, and the data order differs.
            span = spg * g.num_iterations
            if span % g.gradient_accumulation_steps == 0:
                steps_per_gen = span // g.gradient_accumulation_steps
                if self.checkpoint.save_steps % steps_per_gen:
                    raise ValueError(
                        f"checkpoint.save_steps ({self.checkpoint.save_steps}) must be a multiple of the optimizer "
                        f"steps one generation batch lasts ({steps_per_gen} = steps_per_generation x num_iterations "
                        "/ gradient_accumulation_steps) so a resumed run sees the same data order"
                    )
            if g.epsilon_high < g.epsilon and g.loss_type != "cispo":
                raise ValueError(
                    f"grpo.epsilon_high ({g.epsilon_high}) must be >= grpo.epsilon ({g.epsilon}) (clip-higher)"
                )
        if self.checkpoint.resume not in ("auto", "never") and not Path(self.checkpoint.resume).is_dir():
            raise ValueError(
                f"checkpoint.resume must be 'auto', 'never' or an existing checkpoint folder, got "
                f"{self.checkpoint.resume!r}"
            )
        return self


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; docs/training.md lists every key)"
        elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict):
            msg += f" (got {err['input']!r:.60})"
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def _set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    node = doc
    parts = dotted.split(".")
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted}: {p!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["grpo.max_steps=2", "model_path=x"]`` -> a nested dict; values are parsed as YAML scalars."""
    doc: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        _set_dotted(doc, key.strip(), yaml.safe_load(raw))
    return doc


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_dict(doc: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """Validate a config mapping; raises :class:`ConfigError` naming every bad key."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a config must be a mapping of keys to values, got {type(doc).__name__}")
    try:
        cfg = TrainConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    _check_extra(cfg, source)
    return cfg


def load_config(
    path: str | Path, overrides: dict[str, Any] | list[str] | None = None, *, relative_to: Path | None = None
) -> TrainConfig:
    """Read a YAML config, apply ``overrides`` (nested dict or ``key=value`` strings) and validate it.

    Relative ``model_path`` / ``output_dir`` stay relative to the working directory (run from the repo root).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    if overrides:
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a config must be a mapping of keys to values")
        doc = _merge(doc, overrides)
    return config_from_dict(doc, str(path))


def _dataclass_fields(cls: Any) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


# Keys of the TRL configs that this schema sets itself: `extra` may not set them (one place for each value).
_OWNED_SFT = {"output_dir", "seed", "assistant_only_loss", "report_to", "save_steps", "logging_steps"}
_OWNED_GRPO = {"output_dir", "seed", "report_to", "save_steps", "logging_steps", "num_generations"}


def _check_extra(cfg: TrainConfig, source: str) -> None:
    """``sft.extra`` / ``grpo.extra`` keys must be real SFTConfig / GRPOConfig fields (checked without a model)."""
    for section, extra, owned in (
        ("sft", cfg.sft.extra, _OWNED_SFT),
        ("grpo", cfg.grpo.extra, _OWNED_GRPO),
    ):
        if not extra:
            continue
        try:
            from trl import GRPOConfig, SFTConfig
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                f"{source}: {section}.extra needs trl: pip install 'clinic-env[train]'"
            ) from exc
        known = _dataclass_fields(SFTConfig if section == "sft" else GRPOConfig)
        own = set(type(cfg.sft if section == "sft" else cfg.grpo).model_fields) - {"extra"}
        for key in extra:
            if key not in known:
                raise ConfigError(
                    f"{source}: {section}.extra.{key}: unknown key (not a trl "
                    f"{'SFTConfig' if section == 'sft' else 'GRPOConfig'} field)"
                )
            if key in own or key in owned:
                raise ConfigError(
                    f"{source}: {section}.extra.{key}: set it through the config's own key, not through extra"
                )


def preflight(cfg: TrainConfig) -> None:
    """Checks that need the file system, run before any model is built: model folder, case set, output dir."""
    p = Path(cfg.model_path)
    if not p.exists():
        raise ConfigError(
            f"model_path {cfg.model_path!r} does not exist: point it at a local transformers model folder, or build "
            "a tiny one with `python -m training.tiny --out PATH` (models load from local paths only)"
        )
    if not (p / "config.json").is_file():
        raise ConfigError(
            f"model_path {cfg.model_path!r} has no config.json: not a transformers model folder"
        )
    from .data import select_cases

    select_cases(cfg.data)  # raises ConfigError when empty
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir {cfg.output_dir!r} exists and is not a folder")
    if cfg.wall_clock_minutes is not None and not math.isfinite(cfg.wall_clock_minutes):
        raise ConfigError("wall_clock_minutes must be a finite number of minutes")
