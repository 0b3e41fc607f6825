"""Trainer callbacks: metrics to JSONL (TensorBoard comes from ``report_to``), a wall-clock budget, crash hooks."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class JsonlMetrics(TrainerCallback):
    """Appends every ``on_log`` record (with ``step`` and wall time) to a JSONL file, flushed per line, so a crash
    loses nothing that was logged."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._t0 = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rec = {"step": state.global_step, "elapsed_s": round(time.monotonic() - self._t0, 3)}
        rec.update({k: _jsonable(v) for k, v in logs.items() if isinstance(v, (int, float, str, bool))})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()


class WallClockBudget(TrainerCallback):
    """Stops training (and saves a checkpoint) once ``seconds`` have passed since training began."""

    def __init__(self, seconds: float):
        if seconds <= 0:
            raise ValueError(f"the wall-clock budget must be positive, got {seconds} s")
        self.seconds = seconds
        self.start: float | None = None
        self.stopped_at_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.start is not None and time.monotonic() - self.start >= self.seconds:
            control.should_training_stop = True
            control.should_save = True
            self.stopped_at_step = state.global_step
        return control


def last_checkpoint(output_dir: str | Path, resume: str) -> str | None:
    """The checkpoint to resume from: ``resume`` = "auto" (the newest in ``output_dir``), "never", or a folder."""
    if resume == "never":
        return None
    if resume != "auto":
        return resume
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    return get_last_checkpoint(str(out)) if out.is_dir() else None
