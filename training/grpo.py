"""GRPO for doctor policies on TRL's ``GRPOTrainer``, and the stage runner.

    python -m training.grpo --config training/configs/multi_turn.yaml [--set grpo.max_steps=10 ...]

Stages (``stage:`` in the config): ``sft`` (warm start, ``training.sft``), ``single_turn`` (rubric-based RL on one
answer after the teacher's history; TRL generates) and ``multi_turn`` (whole consultations in the simulator through
a ``rollout_func``, ``training.rollout``).

What TRL does and what is added here:

* GRPO itself, the clipped token-level loss, group advantages, checkpoints, resumption, logging: TRL, configured
  from the ``grpo`` section (Baichuan-M2's defaults: ``beta=0``, ``epsilon=0.2``/``epsilon_high=0.28``,
  ``loss_type="dr_grpo"``, ``scale_rewards="none"``).
* Environment-token masking: TRL's own ``env_mask`` key of a ``rollout_func`` output (it becomes ``tool_mask``).
* The length reward's group gate: :class:`ClinicGRPOTrainer` overrides ``_calculate_rewards`` to post-process the
  gathered reward matrix (see ``training.rewards`` for why not inside a reward function).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, TrainConfig, load_config, preflight
from .rollout import group_seed

__all__ = ["ClinicGRPOTrainer", "EpochSeededRepeatSampler", "MultiTurnRollout", "group_seed", "run_stage"]

try:  # TRL is an optional extra; the trainer subclass exists only where it is installed
    from trl import GRPOTrainer as _GRPOTrainer
except ImportError:  # pragma: no cover - depends on the install
    _GRPOTrainer = object  # type: ignore[assignment,misc]


class ClinicGRPOTrainer(_GRPOTrainer):  # type: ignore[misc,valid-type]
    """``GRPOTrainer`` plus the length reward's group gate (reward post-processing).

    ``length_gate`` = ``(percentile, threshold)``; the reward functions named ``"rubric"`` and ``"length"`` are the
    rubric score and the per-sample bonus k / sqrt(|o|). After TRL gathers every process's rewards, the bonus is
    kept only where the group's percentile of rubric scores is above the threshold and the sample is at or above
    that percentile; then TRL computes the advantages (reward - group mean with ``scale_rewards="none"``).
    """

    def __init__(self, *args: Any, length_gate: tuple[float, float] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        names = list(self.reward_func_names)
        needs_gate = [
            n for f, n in zip(self.reward_funcs, names, strict=True) if getattr(f, "needs_group_gate", 0)
        ]
        self._gate: tuple[int, int, float, float] | None = None
        if needs_gate:
            if length_gate is None:
                raise ValueError(
                    f"reward function {needs_gate[0]!r} needs length_gate=(percentile, threshold)"
                )
            if "rubric" not in names:
                raise ValueError("the length reward's gate needs a reward function named 'rubric'")
            self._gate = (names.index("rubric"), names.index(needs_gate[0]), *length_gate)

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        """TRL's ``RepeatSampler`` with the shuffle re-seeded from (seed, epoch): a run resumed in a later epoch
        draws the same order as the run it continues (TRL's sampler draws each epoch's order from a generator that
        a resumed run starts afresh, so every epoch after a resume would repeat the first epoch's order)."""
        base = super()._get_train_sampler(dataset)
        return EpochSeededRepeatSampler.from_sampler(base)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[override]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self._gate is not None:
            from .rewards import gate_length_bonus

            ri, li, percentile, threshold = self._gate
            g = self.num_generations if self.model.training else self.num_generations_eval
            rewards[:, li] = gate_length_bonus(rewards[:, ri], rewards[:, li], g, percentile, threshold)
        return rewards


class EpochSeededRepeatSampler:
    """Wraps a TRL ``RepeatSampler``; ``set_epoch`` (called by the Trainer each epoch) re-seeds its shuffle."""

    def __init__(self, sampler: Any):
        self.sampler = sampler
        self.epoch = 0

    @classmethod
    def from_sampler(cls, sampler: Any) -> Any:
        return (
            cls(sampler) if getattr(sampler, "shuffle", False) and hasattr(sampler, "generator") else sampler
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        seed = self.sampler.seed if self.sampler.seed is not None else 0
        self.sampler.generator.manual_seed(seed * 1_000_003 + self.epoch)
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def build_grpo_args(cfg: TrainConfig) -> Any:
    """The ``trl.GRPOConfig`` for a ``single_turn`` / ``multi_turn`` config."""
    from trl import GRPOConfig

    g = cfg.grpo
    use_length = cfg.length_reward.enabled
    return GRPOConfig(
        output_dir=cfg.output_dir,
        seed=cfg.seed,
        learning_rate=g.learning_rate,
        max_steps=g.max_steps,
        num_generations=g.num_generations,
        per_device_train_batch_size=g.per_device_train_batch_size,
        gradient_accumulation_steps=g.gradient_accumulation_steps,
        steps_per_generation=g.steps_per_generation,
        num_iterations=g.num_iterations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k,
        beta=g.beta,
        epsilon=g.epsilon,
        epsilon_high=g.epsilon_high,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        mask_truncated_completions=g.mask_truncated_completions,
        lr_scheduler_type=g.lr_scheduler_type,
        warmup_steps=g.warmup_steps,
        max_grad_norm=g.max_grad_norm,
        bf16=g.bf16,
        use_vllm=g.use_vllm,
        vllm_mode=g.vllm_mode,
        vllm_server_base_url=g.vllm_server_base_url,
        vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=g.vllm_tensor_parallel_size,
        reward_weights=[1.0, 1.0] if use_length else [1.0],
        save_strategy="steps",
        save_steps=cfg.checkpoint.save_steps,
        save_total_limit=cfg.checkpoint.save_total_limit,
        logging_steps=cfg.logging.logging_steps,
        report_to=[r for r in cfg.logging.report_to if r != "none"],
        dataloader_num_workers=0,
        **({"gradient_checkpointing": True} if g.gradient_checkpointing else {}),
        **g.extra,
    )


class MultiTurnRollout:
    """The ``rollout_func(prompts, trainer)`` of the multi-turn stage.

    ``prompts`` arrive as TRL's sampler laid them out: each case's prompt ``num_generations`` times in a row. Each
    prompt is mapped back to its case (prompts are unique per case, checked when the dataset is built), the whole
    batch is played together by an :class:`~training.rollout.EpisodeRunner`, and one line per episode goes to
    ``rollouts.jsonl``.
    """

    def __init__(self, cfg: TrainConfig, cases: Any, rows: Sequence[dict[str, Any]]):
        from .data import prompt_key

        self.cfg = cfg
        self.cases = cases
        self.prompt_to_case = {prompt_key(r["prompt"]): r["case_id"] for r in rows}
        self.log_path = Path(cfg.output_dir) / "rollouts.jsonl"
        self._runner: Any = None
        self.calls = 0

    def _make_runner(self, trainer: Any) -> Any:
        from .data import load_patient, load_verifier, make_env
        from .rollout import EpisodeRunner

        patient, verifier = load_patient(self.cfg.env.patient), load_verifier(self.cfg.env.verifier)
        return EpisodeRunner(
            trainer.processing_class,
            lambda: make_env(self.cases, self.cfg.env, patient=patient, verifier=verifier),
            max_turn_tokens=self.cfg.env.max_turn_tokens,
            max_completion_length=self.cfg.grpo.max_completion_length,
            eos_token_ids=trainer.eos_token_ids,
            max_observation_chars=self.cfg.env.max_observation_chars,
        )

    def _generator(self, trainer: Any, model: Any) -> Any:
        from .rollout import HFGenerator, VLLMGenerator

        if trainer.use_vllm:
            return VLLMGenerator(trainer)
        a = trainer.args
        return HFGenerator(
            model,
            trainer.processing_class,
            temperature=a.temperature,
            top_p=a.top_p,
            top_k=a.top_k or 0,
            eos_token_ids=trainer.eos_token_ids,
        )

    def case_ids(self, prompts: Sequence[Any]) -> list[str]:
        from .data import prompt_key

        try:
            return [self.prompt_to_case[prompt_key(p)] for p in prompts]
        except KeyError as exc:
            raise KeyError(f"a prompt reached the rollout that is not in the training set: {exc}") from None

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        from contextlib import nullcontext

        from trl.models import unwrap_model_for_generation

        from .rollout import rollout_output

        if self._runner is None:
            self._runner = self._make_runner(trainer)
        case_ids = self.case_ids(prompts)
        g = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        if len(case_ids) % g or any(case_ids[i] != case_ids[i - i % g] for i in range(len(case_ids))):
            raise ValueError(
                f"the rollout expects each case's prompt {g} times in a row (TRL's RepeatSampler layout); got "
                f"{case_ids}"
            )
        step = trainer.state.global_step
        seeds = [group_seed(self.cfg.seed, step, i // g, c) for i, c in enumerate(case_ids)]
        self.calls += 1
        ctx = (
            nullcontext(None)
            if trainer.use_vllm
            else unwrap_model_for_generation(
                trainer.model_wrapped,
                trainer.accelerator,
                gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            )
        )
        with ctx as model:
            episodes = self._runner.run(case_ids, seeds, self._generator(trainer, model))
        # Every process logs its own episodes (one line each, flushed per batch).
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        rank = trainer.accelerator.process_index
        with self.log_path.open("a", encoding="utf-8") as f:
            for ep in episodes:
                rec = ep.record(step, transcript=self.cfg.logging.log_transcripts)
                rec["rank"] = rank
                f.write(json.dumps(rec) + "\n")
            f.flush()
        return rollout_output(episodes)


def _reward_funcs(cfg: TrainConfig, cases: Any) -> list[Any]:
    from .data import load_verifier
    from .rewards import LengthReward, SingleTurnRubricReward, rubric_reward

    if cfg.stage == "multi_turn":
        funcs: list[Any] = [rubric_reward]
    else:
        funcs = [
            SingleTurnRubricReward(
                cases, verifier=load_verifier(cfg.env.verifier), rubric_seed=cfg.env.rubric_seed
            )
        ]
    if cfg.length_reward.enabled:
        funcs.append(LengthReward(cfg.length_reward.k))
    return funcs


def build_trainer(cfg: TrainConfig, *, callbacks: list[Any] | None = None) -> tuple[Any, Any]:
    """(trainer, rollout or None) for a ``single_turn`` / ``multi_turn`` config. Call :func:`preflight` first."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental" in TRL 1.16
    from datasets import Dataset
    from transformers import AutoTokenizer

    from .callbacks import JsonlMetrics, WallClockBudget
    from .data import multi_turn_rows, select_cases, single_turn_rows

    if cfg.stage not in ("single_turn", "multi_turn"):
        raise ValueError(f"build_trainer needs stage single_turn or multi_turn, got {cfg.stage!r}")
    if _GRPOTrainer is object:
        raise ImportError("GRPO training needs trl: pip install 'clinic-env[train]'")
    cases = select_cases(cfg.data)
    if cfg.stage == "multi_turn":
        rows = multi_turn_rows(cases, cfg.env)
        rollout: Any = MultiTurnRollout(cfg, cases, rows)
    else:
        rows = single_turn_rows(cases, cfg.teacher, cfg.env, episodes_per_case=cfg.teacher.episodes_per_case)
        rows = [{k: r[k] for k in ("prompt", "history", "case_id")} for r in rows]
        rollout = None
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cbs = [JsonlMetrics(Path(cfg.output_dir) / "metrics.jsonl"), *(callbacks or [])]
    if cfg.wall_clock_minutes:
        cbs.append(WallClockBudget(cfg.wall_clock_minutes * 60))
    lr = cfg.length_reward
    trainer = ClinicGRPOTrainer(
        model=cfg.model_path,
        reward_funcs=_reward_funcs(cfg, cases),
        args=build_grpo_args(cfg),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=cbs,
        rollout_func=rollout,
        length_gate=(lr.percentile, lr.threshold) if lr.enabled else None,
    )
    return trainer, rollout


def run_grpo(cfg: TrainConfig, *, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train a ``single_turn`` / ``multi_turn`` stage (resuming from the last checkpoint when there is one)."""
    from .callbacks import last_checkpoint

    t0 = time.monotonic()
    trainer, _rollout = build_trainer(cfg, callbacks=callbacks)
    resume = last_checkpoint(cfg.output_dir, cfg.checkpoint.resume)
    trainer.train(resume_from_checkpoint=resume)
    final = Path(cfg.output_dir) / "final"
    trainer.save_model(str(final))
    trainer.processing_class.save_pretrained(str(final))
    history = trainer.state.log_history
    summary = {
        "stage": cfg.stage,
        "model": str(final),
        "resumed_from": resume,
        "steps": trainer.state.global_step,
        "reward_curve": [(h["step"], h["reward"]) for h in history if "reward" in h],
        "rubric_curve": [
            (h["step"], h["rewards/rubric/mean"]) for h in history if "rewards/rubric/mean" in h
        ],
        "minutes": (time.monotonic() - t0) / 60,
    }
    (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def run_stage(cfg: TrainConfig, *, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Preflight, then run the config's stage."""
    preflight(cfg)
    if cfg.stage == "sft":
        from .sft import run_sft

        return run_sft(cfg, callbacks=callbacks)
    return run_grpo(cfg, callbacks=callbacks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.grpo", description="Run one training stage (sft, single_turn, multi_turn)."
    )
    ap.add_argument("--config", required=True, help="a YAML config, e.g. training/configs/multi_turn.yaml")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted, YAML value), e.g. --set grpo.max_steps=10; repeatable",
    )
    ap.add_argument("--check", action="store_true", help="validate the config and its paths, then exit")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        preflight(cfg)
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: OK (stage {cfg.stage}, model {cfg.model_path}, output {cfg.output_dir})")
        return 0
    summary = run_stage(cfg)
    print(json.dumps({k: v for k, v in summary.items() if not k.endswith("_curve")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
