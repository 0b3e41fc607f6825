"""Episode logs: append-only JSONL, one finished episode per line, flushed and synced as each episode ends.

A crash loses at most the episode in flight. ``load_episodes`` reads a log back (a line torn by a crash is
skipped with a warning); ``to_dataset`` exports it to a Hugging Face ``datasets.Dataset`` (the ``train`` extra).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any


def append_episode(path: str | Path, record: dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False)
    with p.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def load_episodes(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"episode log {str(p)!r} does not exist")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(
                f"{p}:{n}: skipped a line that is not valid JSON (an episode cut short?)", stacklevel=2
            )
    return out


def to_dataset(path: str | Path):
    """The episodes as a ``datasets.Dataset`` (messages, rubric and scores as columns)."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("to_dataset needs the `datasets` package: pip install 'clinic-env[train]'") from exc
    rows = load_episodes(path)
    if not rows:
        raise ValueError(f"episode log {str(path)!r} holds no episodes")
    # Nested dicts with varying keys (score_breakdown) are stored as JSON text for a stable schema.
    for r in rows:
        r["score_breakdown"] = json.dumps(r.get("score_breakdown", {}))
    return datasets.Dataset.from_list(rows)
