"""Each training stage runs end to end in seconds (tiny model), and a killed run resumes with the same data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "configs"

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def tiny_doctor(tmp_path_factory):
    from training.tiny import TinySpec, build_tiny_model, project_text

    spec = TinySpec(vocab_size=700, hidden=32, layers=1, heads=2, intermediate=64, max_positions=4096)
    return build_tiny_model(tmp_path_factory.mktemp("tiny-doctor"), project_text(), spec)


COMMON = [
    "data.split=all",
    "data.max_cases=2",
    "logging.report_to=[none]",
    "checkpoint.save_steps=1",
    "seed=3",
]


def _rl(stage_overrides):
    return [
        *COMMON,
        "grpo.max_steps=2",
        "grpo.num_generations=2",
        "grpo.per_device_train_batch_size=2",
        "grpo.gradient_accumulation_steps=1",
        "grpo.bf16=false",
        "teacher.name=checklist",
        *stage_overrides,
    ]


STAGES = {
    "sft.yaml": [
        *COMMON,
        "teacher.name=checklist",
        "teacher.episodes_per_case=2",
        "sft.max_steps=2",
        "sft.per_device_train_batch_size=2",
        "sft.gradient_accumulation_steps=1",
        "sft.eval_steps=1",
        "sft.bf16=false",
    ],
    "single_turn.yaml": _rl(["teacher.episodes_per_case=1", "grpo.max_completion_length=12"]),
    "multi_turn.yaml": _rl(["env.max_turns=2", "env.max_turn_tokens=5", "grpo.max_completion_length=300"]),
}


@pytest.mark.parametrize("config", list(STAGES))
def test_two_step_smoke_run_of_each_stage(config, tiny_doctor, tmp_path, capsys):
    from training.grpo import main

    out = tmp_path / "run"
    argv = [
        "--config",
        str(CONFIGS / config),
        "--set",
        f"model_path={tiny_doctor}",
        "--set",
        f"output_dir={out}",
    ]
    for o in STAGES[config]:
        argv += ["--set", o]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2
    assert (out / "final" / "config.json").is_file() and (out / "final" / "tokenizer_config.json").is_file()
    assert (out / "checkpoint-2").is_dir()  # checkpoints every save_steps
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all("step" in m for m in metrics)
    if config == "multi_turn.yaml":
        eps = [json.loads(x) for x in (out / "rollouts.jsonl").read_text().splitlines()]
        assert len(eps) == 4 and {e["step"] for e in eps} == {0, 1}
        assert all(e["turns"] <= 2 for e in eps)
        assert any("rewards/rubric/mean" in m for m in metrics)


def test_cli_reports_config_errors_before_building_anything(tmp_path, capsys):
    from training.grpo import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: multi_turn\nmodel_path: x\noutput_dir: y\ngrpo:\n  num_generation: 4\n")
    assert main(["--config", str(bad)]) == 2
    assert "grpo.num_generation: unknown key" in capsys.readouterr().err
    assert main(["--config", str(CONFIGS / "multi_turn.yaml"), "--set", f"model_path={tmp_path}/none"]) == 2
    assert "does not exist" in capsys.readouterr().err


class Crash(Exception):
    pass


def _resume_cfg(model, out):
    from training.config import load_config

    over = [
        f"model_path={model}",
        f"output_dir={out}",
        "data.split=all",
        "data.max_cases=3",
        "env.max_turns=2",
        "env.max_turn_tokens=4",
        "grpo.max_steps=6",
        "grpo.num_generations=2",
        "grpo.per_device_train_batch_size=2",
        "grpo.gradient_accumulation_steps=1",
        "grpo.learning_rate=0.001",
        "grpo.max_completion_length=200",
        "grpo.bf16=false",
        "checkpoint.save_steps=2",
        "logging.report_to=[none]",
    ]
    return load_config(CONFIGS / "multi_turn.yaml", over)


def _episodes(out):
    """(case, seed, score) of each step's episodes; a step logged twice (by the killed run, then by the resumed
    one) keeps the later two."""
    by_step = {}
    for line in (out / "rollouts.jsonl").read_text().splitlines():
        e = json.loads(line)
        by_step.setdefault(e["step"], []).append((e["case_id"], e["seed"], e["score"]))
    return {s: tuple(v[-2:]) for s, v in sorted(by_step.items())}


def test_killed_run_resumes_from_its_last_checkpoint_with_the_same_data(tiny_doctor, tmp_path):
    from transformers import TrainerCallback

    from training.grpo import run_stage

    full = tmp_path / "full"
    run_stage(_resume_cfg(tiny_doctor, full))
    want = _episodes(full)
    assert sorted(want) == [0, 1, 2, 3, 4, 5]
    # 3 cases, one case per step: two epochs, so the resumed epoch's shuffle matters too
    assert len({w[0][0] for w in want.values()}) == 3

    class KillAfterStep5(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise Crash("simulated crash after step 5 (last checkpoint: 4)")

    killed = tmp_path / "killed"
    with pytest.raises(Crash):
        run_stage(_resume_cfg(tiny_doctor, killed), callbacks=[KillAfterStep5()])
    assert (killed / "checkpoint-4").is_dir() and not (killed / "final").exists()
    summary = run_stage(_resume_cfg(tiny_doctor, killed))  # resume: auto
    assert summary["resumed_from"].endswith("checkpoint-4") and summary["steps"] == 6
    got = _episodes(killed)
    # same cases, same patient seeds, and (same restored RNG) the same sampled consultations and scores
    assert [(s, [e[:2] for e in v]) for s, v in got.items()] == [
        (s, [e[:2] for e in v]) for s, v in want.items()
    ]
    assert got == want
