"""SFT warm start: the teacher's consultations -> a chat dataset -> TRL ``SFTTrainer`` (assistant-only loss).

Training data: ``teacher.episodes_per_case`` consultations per training case, the teacher (``teacher.name``,
optionally varied) against the rule patient. Validation data: ``teacher.eval_episodes_per_case`` more per case
with other seeds, the same cases (held-out cases are never used here). Training stops early when the validation
loss has not improved for ``sft.early_stopping_patience`` evaluations: that is what "converged" means in the
returned summary (``stopped_early``), alongside the whole loss curve.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .config import TrainConfig


def sft_datasets(cfg: TrainConfig) -> tuple[Any, Any, dict[str, Any]]:
    """(train dataset, validation dataset or None, stats) of ``{"messages": [...]}`` rows."""
    from datasets import Dataset

    from .data import select_cases, teacher_transcripts

    cases = select_cases(cfg.data)
    train = teacher_transcripts(cases, cfg.teacher, cfg.env, episodes_per_case=cfg.teacher.episodes_per_case)
    val = (
        teacher_transcripts(
            cases,
            cfg.teacher,
            cfg.env,
            episodes_per_case=cfg.teacher.eval_episodes_per_case,
            seed_offset=10_000_000,
        )
        if cfg.teacher.eval_episodes_per_case
        else []
    )
    stats = {
        "cases": len(cases),
        "train_transcripts": len(train),
        "val_transcripts": len(val),
        "teacher_mean_score": sum(t["score"] for t in train) / len(train),
    }
    to_ds = lambda ts: Dataset.from_list([{"messages": t["messages"]} for t in ts])  # noqa: E731
    return to_ds(train), (to_ds(val) if val else None), stats


def run_sft(cfg: TrainConfig, *, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train; save the final (best by validation loss) model and tokenizer to ``output_dir/final``."""
    from transformers import AutoTokenizer, EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    from .callbacks import JsonlMetrics, WallClockBudget, last_checkpoint

    if cfg.stage != "sft":
        raise ValueError(f"run_sft needs a config with stage: sft, got {cfg.stage!r}")
    t0 = time.monotonic()
    out = Path(cfg.output_dir)
    train_ds, val_ds, stats = sft_datasets(cfg)
    s = cfg.sft
    has_val = val_ds is not None
    args = SFTConfig(
        output_dir=str(out),
        seed=cfg.seed,
        learning_rate=s.learning_rate,
        num_train_epochs=s.num_train_epochs,
        max_steps=s.max_steps,
        per_device_train_batch_size=s.per_device_train_batch_size,
        per_device_eval_batch_size=s.per_device_train_batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        max_length=s.max_length,
        lr_scheduler_type=s.lr_scheduler_type,
        warmup_steps=s.warmup_steps,
        weight_decay=s.weight_decay,
        bf16=s.bf16,
        assistant_only_loss=True,
        eval_strategy="steps" if has_val else "no",
        eval_steps=s.eval_steps if has_val else None,
        save_strategy="steps",
        save_steps=s.eval_steps if has_val else cfg.checkpoint.save_steps,
        save_total_limit=cfg.checkpoint.save_total_limit,
        load_best_model_at_end=has_val,
        metric_for_best_model="eval_loss" if has_val else None,
        greater_is_better=False if has_val else None,
        logging_steps=cfg.logging.logging_steps,
        report_to=[r for r in cfg.logging.report_to if r != "none"],
        dataloader_num_workers=0,
        **s.extra,
    )
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path, local_files_only=True)
    cbs = [JsonlMetrics(out / "metrics.jsonl"), *(callbacks or [])]
    if has_val and s.early_stopping_patience:
        cbs.append(EarlyStoppingCallback(s.early_stopping_patience, s.early_stopping_threshold))
    if cfg.wall_clock_minutes:
        cbs.append(WallClockBudget(cfg.wall_clock_minutes * 60))
    trainer = SFTTrainer(
        model=cfg.model_path,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        callbacks=cbs,
    )
    resume = last_checkpoint(out, cfg.checkpoint.resume)
    result = trainer.train(resume_from_checkpoint=resume)
    final = out / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    history = trainer.state.log_history
    train_curve = [(h["step"], h["loss"]) for h in history if "loss" in h]
    eval_curve = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    max_steps = trainer.state.max_steps
    summary = {
        "stage": "sft",
        "model": str(final),
        "resumed_from": resume,
        "steps": trainer.state.global_step,
        "max_steps": max_steps,
        "stopped_early": trainer.state.global_step < max_steps,
        "best_eval_loss": trainer.state.best_metric,
        "train_loss_curve": train_curve,
        "eval_loss_curve": eval_curve,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "minutes": (time.monotonic() - t0) / 60,
        **stats,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
