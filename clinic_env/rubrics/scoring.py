"""HealthBench scoring, exactly as simple-evals computes it.

Per example: the sum of points of met criteria (met negative criteria subtract) divided by the sum of positive
points; not clipped; ``None`` when there are no positive points. Per rubric tag (``axis:*``, ``level:*``,
``cluster:*``, our ``dimension:*``): the same formula over the criteria carrying the tag, the example dropped for
that tag when it has no positive points there. Per example tag (``theme:*``, ``physician_agreed_category:*``): the
example's overall score. Aggregate per metric: the mean clipped to [0, 1], the standard deviation of that clipped
mean over 1000 bootstrap resamples, and the number of samples; keys ``name``, ``name:bootstrap_std``,
``name:n_samples`` as in simple-evals. The bootstrap draws from a seeded generator (simple-evals' is unseeded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

EXAMPLE_TAG_PREFIXES = ("theme:", "physician_agreed_category:")


def calculate_score(points: Sequence[float], met: Sequence[bool]) -> float | None:
    """Achieved over possible points; ``None`` when no criterion has positive points."""
    if len(points) != len(met):
        raise ValueError(f"{len(points)} criteria but {len(met)} grades")
    possible = sum(p for p in points if p > 0)
    if possible == 0:
        return None
    return sum(p for p, m in zip(points, met, strict=True) if m) / possible


def example_metrics(
    items: Sequence[Mapping[str, Any]], met: Sequence[bool], example_tags: Iterable[str] = ()
) -> dict[str, float]:
    """Metrics of one graded example. ``items`` are ``{"points", "tags"}`` mappings (HealthBench rubric items)."""
    overall = calculate_score([i["points"] for i in items], met)
    if overall is None:
        raise ValueError("the rubric has no positive points: the example cannot be scored")
    metrics = {"overall_score": overall}
    tags = list(example_tags)
    if len(set(tags)) != len(tags):
        raise ValueError(f"duplicate example tags: {tags}")
    metrics.update({t: overall for t in tags})
    by_tag: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for item, m in zip(items, met, strict=True):
        for t in dict.fromkeys(item.get("tags", ())):
            by_tag[t].append((item["points"], m))
    for tag, pm in by_tag.items():
        s = calculate_score([p for p, _ in pm], [m for _, m in pm])
        if s is not None:
            metrics[tag] = s
    return metrics


def clipped_mean(values: Sequence[float]) -> float:
    return float(np.clip(np.mean(values), 0.0, 1.0))


def bootstrap_std(values: Sequence[float], *, n: int = 1000, rng: np.random.Generator | None = None) -> float:
    rng = rng if rng is not None else np.random.default_rng(0)
    arr = np.asarray(values, dtype=float)
    idx = rng.integers(0, len(arr), size=(n, len(arr)))
    means = np.clip(arr[idx].mean(axis=1), 0.0, 1.0)
    return float(np.std(means))


def aggregate(
    per_example: Sequence[Mapping[str, float]], *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, float]:
    """simple-evals' aggregate: ``score`` (= overall scores), then every metric with its stats."""
    values: dict[str, list[float]] = defaultdict(list)
    for m in per_example:
        if "overall_score" in m:
            values["score"].append(m["overall_score"])
        for name, v in m.items():
            values[name].append(v)
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for name in sorted(values, key=lambda k: (k != "score", k != "overall_score", k)):
        vs = values[name]
        out[name] = clipped_mean(vs)
        out[f"{name}:n_samples"] = len(vs)
        out[f"{name}:bootstrap_std"] = bootstrap_std(vs, n=n_bootstrap, rng=rng)
    return out
