"""Is the reward trustworthy? Two measurements of the rule rubric + rule verifier.

1. **Verifier agreement**: macro F1 of the rule verifier against hand labels in ``tests/data/rubric_labels.jsonl``
   (transcripts in ``rubric_transcripts.jsonl``, written and labelled from criterion text without looking at the
   verifier). For scale, HealthBench reports 0.709 for a GPT-4.1 grader against physicians, and 0.647 between
   physicians, on harder free text. Target here: >= 0.9. The reported number is the test split of that file
   (transcripts whose number is not divisible by 3); the dev split is its other third plus
   ``rubric_*_dev2.jsonl`` (21 transcripts over cases no test transcript uses, labelled by reading before the
   verifier was run on them). ``--dev-only`` grades the dev split alone, for working on the verifier.
2. **Separation**: oracle good and bad consultations (``clinic_env.rubrics.probes``) on every library case, played
   through the rule patient and graded: mean score gap (target >= 0.4) and AUROC (target >= 0.95).

    python -m benchmarks.rubric_validation [--quick] [--dev-only]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._common import write_result

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def macro_f1(pairs: list[tuple[bool, bool]]) -> dict[str, float]:
    """Macro F1 over the two classes (met, not met), as HealthBench reports grader agreement."""
    out = {}
    f1s = []
    for cls in (True, False):
        tp = sum(p == cls and g == cls for p, g in pairs)
        fp = sum(p == cls and g != cls for p, g in pairs)
        fn = sum(p != cls and g == cls for p, g in pairs)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        out[f"f1_{'met' if cls else 'not_met'}"] = round(f1, 4)
    out["macro_f1"] = round(float(np.mean(f1s)), 4)
    out["accuracy"] = round(sum(p == g for p, g in pairs) / max(len(pairs), 1), 4)
    out["n"] = len(pairs)
    return out


def is_dev(transcript_id: str) -> bool:
    """Transcripts whose number is divisible by 3 are the dev split (fixed before the labels were written);
    verifier changes may be driven by dev errors, and the reported numbers come from the rest."""
    digits = "".join(ch for ch in transcript_id if ch.isdigit())
    return bool(digits) and int(digits) % 3 == 0


# Labelled sets: (transcripts file, labels file, whether every transcript in it is dev). The first set is split by
# ``is_dev``; ``*_dev2`` was written later, over cases no test transcript uses, to drive verifier changes without
# touching the test split (it is all dev).
LABELLED_SETS = (
    ("rubric_transcripts.jsonl", "rubric_labels.jsonl", False),
    ("rubric_transcripts_dev2.jsonl", "rubric_labels_dev2.jsonl", True),
)


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg}); fix or remove the line") from None
    return out


def verifier_agreement(cases, *, dev_only: bool = False) -> dict:
    """Macro F1 of the rule verifier against the hand labels: test split (reported), dev split (old dev + dev2).

    With ``dev_only`` the test split is neither graded nor reported (for iterating on the verifier honestly).
    """
    from clinic_env.rubrics import RuleRubricGenerator, RuleVerifier, Transcript

    gen, ver = RuleRubricGenerator(), RuleVerifier()
    rubrics: dict = {}
    pairs: list[tuple[bool, bool]] = []
    dev_pairs: dict[str, list[tuple[bool, bool]]] = {}
    by_kind: dict[str, list[tuple[bool, bool]]] = {}
    dev_by_kind: dict[str, list[tuple[bool, bool]]] = {}
    mismatched_text, n_transcripts, found = 0, 0, False
    for tname, lname, all_dev in LABELLED_SETS:
        tpath, lpath = DATA / tname, DATA / lname
        if not (tpath.exists() and lpath.exists()):
            continue
        found = True
        transcripts = {r["transcript_id"]: r for r in _read_jsonl(tpath)}
        graded: dict[str, dict[str, bool]] = {}
        for lab in _read_jsonl(lpath):
            tid, cid = lab["transcript_id"], lab["case_id"]
            dev = all_dev or is_dev(tid)
            if cid not in cases or (dev_only and not dev):
                continue
            if tid not in transcripts:
                raise ValueError(f"{lpath}: label for transcript {tid!r}, which {tpath.name} does not hold")
            if cid not in rubrics:
                rubrics[cid] = gen.generate(cases[cid], 0)
            rubric = rubrics[cid]
            if tid not in graded:
                tr = Transcript.from_messages(transcripts[tid]["messages"])
                graded[tid] = {g.criterion_id: g.met for g in ver.grade(cases[cid], rubric, tr)}
            crit = rubric.criteria[lab["criterion_index"]]
            if crit.text != lab["criterion"]:
                mismatched_text += 1
                continue
            pair = (graded[tid][crit.id], bool(lab["met"]))
            kind = crit.id.split("_")[0]
            if dev:
                dev_pairs.setdefault("dev2" if all_dev else "dev_old", []).append(pair)
                dev_by_kind.setdefault(kind, []).append(pair)
            else:
                pairs.append(pair)
                by_kind.setdefault(kind, []).append(pair)
        n_transcripts += len(graded)
    if not found:
        return {"skipped": "no labelled set yet"}
    out = {} if dev_only else macro_f1(pairs)  # the test split: what is reported
    out["dev"] = macro_f1([p for v in dev_pairs.values() for p in v])
    out["dev_parts"] = {k: macro_f1(v) for k, v in sorted(dev_pairs.items())}
    out["dev_by_criterion_kind"] = {k: macro_f1(v) for k, v in sorted(dev_by_kind.items())}
    if not dev_only:
        out["by_criterion_kind"] = {k: macro_f1(v) for k, v in sorted(by_kind.items())}
        out["met_share_in_labels"] = round(sum(g for _, g in pairs) / max(len(pairs), 1), 4)
    out["labels_with_changed_criterion_text"] = mismatched_text
    out["n_transcripts"] = n_transcripts
    return out


def separation(cases) -> dict:
    from clinic_env.rubrics import RuleRubricGenerator, RuleVerifier, score_grades
    from clinic_env.rubrics.probes import bad_consultation, good_consultation

    gen, ver = RuleRubricGenerator(), RuleVerifier()
    good, bad = [], []
    t0 = time.perf_counter()
    for case in cases:
        r = gen.generate(case, 0)
        good.append(score_grades(r, ver.grade(case, r, good_consultation(case)))["overall_score"])
        bad.append(score_grades(r, ver.grade(case, r, bad_consultation(case)))["overall_score"])
    g, b = np.array(good), np.array(bad)
    auroc = float(np.mean([[1.0 if x > y else 0.5 if x == y else 0.0 for y in b] for x in g]))
    return {
        "n_cases": len(cases),
        "good_mean": round(float(g.mean()), 4),
        "bad_mean": round(float(b.mean()), 4),
        "gap": round(float(g.mean() - b.mean()), 4),
        "auroc": round(auroc, 4),
        "good_min": round(float(g.min()), 4),
        "bad_max": round(float(b.max()), 4),
        "seconds": round(time.perf_counter() - t0, 2),
        "targets": {"gap": 0.4, "auroc": 0.95},
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="separation on every 4th case")
    ap.add_argument(
        "--dev-only",
        action="store_true",
        help="grade only the dev split (old dev + dev2) and write nothing: for working on the verifier",
    )
    args = ap.parse_args(argv)

    import clinic_env

    cases = clinic_env.load_cases("builtin")
    sep_cases = list(cases)[::4] if args.quick else list(cases)
    if args.dev_only:
        va = verifier_agreement(cases, dev_only=True)
        print(json.dumps({k: va[k] for k in ("dev", "dev_parts")}, indent=1))
        return {"verifier_agreement": va}
    result = {"verifier_agreement": verifier_agreement(cases), "separation": separation(sep_cases)}
    va, sp = result["verifier_agreement"], result["separation"]
    result["meets_target"] = (va.get("macro_f1", 0) >= 0.9) and sp["gap"] >= 0.4 and sp["auroc"] >= 0.95
    path = write_result("rubric_validation", result)
    print(
        f"verifier macro F1 {va.get('macro_f1', 'n/a')} on {va.get('n', 0)} labels; separation gap {sp['gap']} "
        f"AUROC {sp['auroc']} over {sp['n_cases']} cases -> {path}"
    )
    return result


if __name__ == "__main__":
    main()
