"""HealthBench evaluation harness: the published JSONL (full, hard, consensus) from a local path, graded exactly
like simple-evals, with bounded retries, batching, resumption and per-line errors.

    clinic-env healthbench --data FILE (--policy SPEC | --responses FILE) --grader (llm:SPEC | replay:LABELS) --out DIR

Writes ``DIR/results.jsonl`` (one graded example per line, appended and flushed as each finishes, so a re-run
resumes from what is graded), ``DIR/errors.jsonl`` (input lines that could not be used, with the reason) and
``DIR/summary.json`` (simple-evals' metric keys: ``score``, ``overall_score``, ``axis:*``, ``theme:*``, ...,
each with ``:bootstrap_std`` and ``:n_samples``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scoring import aggregate, example_metrics
from .verify import LLMVerifier, ReplayGrader

REQUIRED_KEYS = ("prompt", "prompt_id", "rubrics")


@dataclass(frozen=True)
class Example:
    prompt_id: str
    prompt: list[dict[str, str]]
    rubrics: list[dict[str, Any]]
    example_tags: list[str]
    line: int


def check_example(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "line is not a JSON object"
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        return f"missing key(s): {', '.join(missing)}"
    if not isinstance(rec["prompt"], list) or not rec["prompt"]:
        return "'prompt' must be a non-empty list of messages"
    for i, m in enumerate(rec["prompt"]):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            return f"prompt[{i}] must have string 'role' and 'content'"
    if not isinstance(rec["rubrics"], list) or not rec["rubrics"]:
        return "'rubrics' must be a non-empty list"
    for i, r in enumerate(rec["rubrics"]):
        if not isinstance(r, dict) or not isinstance(r.get("criterion"), str):
            return f"rubrics[{i}] must have a string 'criterion'"
        if not isinstance(r.get("points"), (int, float)) or isinstance(r.get("points"), bool):
            return f"rubrics[{i}].points must be a number"
        if not isinstance(r.get("tags", []), list):
            return f"rubrics[{i}].tags must be a list"
    if not any(r["points"] > 0 for r in rec["rubrics"]):
        return "rubric has no positive points: the example cannot be scored"
    tags = rec.get("example_tags", [])
    if not isinstance(tags, list) or len(set(tags)) != len(tags):
        return "'example_tags' must be a list without duplicates"
    return None


def load_healthbench(path: str | Path) -> tuple[list[Example], list[dict[str, Any]]]:
    """Examples that can be evaluated, and ``{"line", "prompt_id", "error"}`` for every line that cannot."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"HealthBench file {str(p)!r} does not exist (download it yourself; nothing is fetched)"
        )
    examples, errors = [], []
    seen: set[str] = set()
    with p.open(encoding="utf-8") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                errors.append(
                    {"line": n, "prompt_id": None, "error": f"not JSON: {exc.msg} (column {exc.colno})"}
                )
                continue
            problem = check_example(rec)
            pid = rec.get("prompt_id") if isinstance(rec, dict) else None
            if problem is None and str(pid) in seen:
                problem = f"duplicate prompt_id {pid!r}"
            if problem:
                errors.append({"line": n, "prompt_id": pid, "error": problem})
                continue
            seen.add(str(pid))
            examples.append(
                Example(str(pid), rec["prompt"], rec["rubrics"], list(rec.get("example_tags", [])), n)
            )
    return examples, errors


def load_responses(path: str | Path) -> dict[str, str]:
    """``prompt_id -> response`` from a JSONL with ``prompt_id`` and ``response``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"responses file {str(p)!r} does not exist")
    out, problems = {}, []
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            out[str(rec["prompt_id"])] = str(rec["response"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            problems.append(f"{p}:{n}: {exc!r}")
    if problems:
        raise ValueError("bad responses file:\n  " + "\n  ".join(problems[:20]))
    return out


def _grade_llm(
    verifier: LLMVerifier, examples: Sequence[Example], responses: Sequence[str]
) -> list[list[dict]]:
    """All criteria of all examples in one batched round (grouped by conversation inside the verifier)."""
    requests, owners = [], []
    for k, (ex, resp) in enumerate(zip(examples, responses, strict=True)):
        conv = [*ex.prompt, {"role": "assistant", "content": resp}]
        for r in ex.rubrics:
            requests.append((conv, r["criterion"], r["points"]))
            owners.append(k)
    flat = verifier.grade_requests(requests)
    out: list[list[dict]] = [[] for _ in examples]
    for k, g in zip(owners, flat, strict=True):
        out[k].append(g)
    return out


def run_healthbench(
    data: str | Path,
    out_dir: str | Path,
    *,
    grader: LLMVerifier | ReplayGrader,
    policy: Any = None,
    responses: dict[str, str] | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    max_tokens: int = 1024,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate, appending to ``out_dir/results.jsonl`` as examples finish; returns the summary."""
    if (policy is None) == (responses is None):
        raise ValueError("give exactly one of policy= (a ChatModel) or responses= (prompt_id -> text)")
    examples, errors = load_healthbench(data)
    if limit is not None:
        examples = examples[:limit]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    done: dict[str, dict] = {}
    if results_path.exists():
        text = results_path.read_text(encoding="utf-8")
        good_lines = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
                done[rec["prompt_id"]] = rec
                good_lines.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a crash: that example is graded again
        if len(good_lines) != len([x for x in text.splitlines() if x.strip()]) or (
            text and not text.endswith("\n")
        ):
            # Rewrite without the torn line, so appended results start on a line of their own.
            tmp = results_path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(x + "\n" for x in good_lines), encoding="utf-8")
            tmp.replace(results_path)
    if responses is not None:
        missing = [ex.prompt_id for ex in examples if ex.prompt_id not in responses]
        errors += [
            {"line": None, "prompt_id": pid, "error": "no response for this prompt_id"} for pid in missing
        ]
        examples = [ex for ex in examples if ex.prompt_id in responses]
    todo = [ex for ex in examples if ex.prompt_id not in done]
    (out / "errors.jsonl").write_text("".join(json.dumps(e) + "\n" for e in errors), encoding="utf-8")
    total = len(examples)
    if progress:
        progress(total - len(todo), total)
    with results_path.open("a", encoding="utf-8") as fh:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            if policy is not None:
                texts = policy.generate(
                    [ex.prompt for ex in chunk], max_tokens=max_tokens, temperature=0.0, seed=seed
                )
            else:
                texts = [responses[ex.prompt_id] for ex in chunk]
            if isinstance(grader, LLMVerifier):
                grades = _grade_llm(grader, chunk, texts)
            else:
                grades = [
                    [grader.lookup(ex.prompt_id, j, r["criterion"]) for j, r in enumerate(ex.rubrics)]
                    for ex in chunk
                ]
            for ex, text, g in zip(chunk, texts, grades, strict=True):
                met = [bool(x["criteria_met"]) for x in g]
                metrics = example_metrics(ex.rubrics, met, ex.example_tags)
                rec = {
                    "prompt_id": ex.prompt_id,
                    "completion_id": hashlib.sha256((ex.prompt_id + text).encode("utf-8")).hexdigest(),
                    "response": text,
                    "score": metrics["overall_score"],
                    "metrics": metrics,
                    "rubric_items": [
                        {**r, "criteria_met": x["criteria_met"], "explanation": x.get("explanation", "")}
                        for r, x in zip(ex.rubrics, g, strict=True)
                    ],
                }
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                fh.flush()
                done[ex.prompt_id] = rec
            if progress:
                progress(total - len(todo) + i + len(chunk), total)
    graded = [done[ex.prompt_id]["metrics"] for ex in examples if ex.prompt_id in done]
    summary = aggregate(graded, seed=seed) if graded else {}
    summary = {
        **summary,
        "n_examples": len(graded),
        "n_input_errors": len(errors),
        "grader": getattr(grader, "name", type(grader).__name__),
    }
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "summary.json")
    return summary
