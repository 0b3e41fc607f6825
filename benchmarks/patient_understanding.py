"""Precision and recall of the patient's understanding on the labelled doctor questions (tests/data/).

Each line of ``tests/data/doctor_questions.jsonl`` is a doctor turn on a library case labelled with the fact,
exam and test ids it asks for, written from the case files without looking at the matcher's output. Cases are
split into ``dev`` and ``test``: the semantic matcher's threshold is chosen on ``dev`` (best F1), and the numbers
reported are on ``test``. Micro-averaged over (question, id) pairs.

    python -m benchmarks.patient_understanding [--quick] [--no-semantic]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._common import write_result

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "doctor_questions.jsonl"
TARGETS = {"recall": 0.9, "precision": 0.9}


def load_questions(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def prf(rows: list[tuple[set, set]]) -> dict[str, float]:
    tp = sum(len(p & g) for p, g in rows)
    fp = sum(len(p - g) for p, g in rows)
    fn = sum(len(g - p) for p, g in rows)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    exact = sum(p == g for p, g in rows) / max(len(rows), 1)
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "exact_match": round(exact, 4),
        "n": len(rows),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def predict(questions, cases, matcher=None) -> list[tuple[set, set, set]]:
    from clinic_env.patient import compile_case

    out = []
    for q in questions:
        cc = compile_case(cases[q["case_id"]])
        intents = cc.parse(q["question"])
        if matcher is not None and not intents.requests_examiner:
            intents = matcher.augment(cc, q["question"], intents)
        out.append((set(intents.facts), set(intents.exams), set(intents.tests)))
    return out


def score(questions, preds) -> dict[str, dict]:
    facts = [(p[0], set(q["facts"])) for q, p in zip(questions, preds, strict=True)]
    exams = [
        (p[1] | p[2], set(q.get("exams", [])) | set(q.get("tests", [])))
        for q, p in zip(questions, preds, strict=True)
    ]
    return {"facts": prf(facts), "exam_and_test": prf(exams)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="coarser threshold grid")
    ap.add_argument("--no-semantic", action="store_true", help="lexicon only (no sentence-transformers)")
    args = ap.parse_args(argv)

    import clinic_env

    cases = clinic_env.load_cases("builtin")
    questions = [q for q in load_questions() if q["case_id"] in cases]
    dev = [q for q in questions if q["split"] == "dev"]
    test = [q for q in questions if q["split"] == "test"]
    result: dict = {
        "data": str(DATA.relative_to(DATA.parents[2])),
        "n_questions": len(questions),
        "n_dev": len(dev),
        "n_test": len(test),
        "n_cases": len({q["case_id"] for q in questions}),
        "targets": TARGETS,
    }
    lex_test = score(test, predict(test, cases))
    result["lexicon"] = {"dev": score(dev, predict(dev, cases)), "test": lex_test}
    print(
        f"lexicon on test: facts P={lex_test['facts']['precision']:.3f} R={lex_test['facts']['recall']:.3f}"
    )
    if not args.no_semantic:
        from clinic_env.patient.semantic import SemanticMatcher

        matcher = SemanticMatcher()
        grid = [0.45, 0.55, 0.65, 0.75] if args.quick else [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]
        sweep = {}
        for th in grid:
            matcher.threshold = th
            matcher.sensitive_threshold = max(th, 0.7)
            sweep[str(th)] = score(dev, predict(dev, cases, matcher))["facts"]
        best = max(grid, key=lambda th: (sweep[str(th)]["f1"], -th))
        matcher.threshold, matcher.sensitive_threshold = best, max(best, 0.7)
        sem_test = score(test, predict(test, cases, matcher))
        result["lexicon_plus_embeddings"] = {
            "threshold_chosen_on_dev": best,
            "dev_sweep": sweep,
            "test": sem_test,
        }
        f = sem_test["facts"]
        result["meets_target"] = f["recall"] >= TARGETS["recall"] and f["precision"] >= TARGETS["precision"]
        print(
            f"lexicon+embeddings (threshold {best} from dev) on test: P={f['precision']:.3f} R={f['recall']:.3f}"
        )
    path = write_result("patient_understanding", result)
    print(f"-> {path}")
    return result


if __name__ == "__main__":
    main()
