"""The clinic-env command line, run in-process through typer's runner and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from clinic_env.cases import LIBRARY_DIR
from clinic_env.cli import app

runner = CliRunner()
REFERENCE = next(LIBRARY_DIR.rglob("card-inferior-stemi-pde5.json"))


def test_schema_prints_json_schema():
    res = runner.invoke(app, ["cases", "schema"])
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    assert schema["title"] == "clinic-env Case" and "facts" in schema["properties"]


def test_validate_ok_and_failing(tmp_path):
    res = runner.invoke(app, ["cases", "validate", str(REFERENCE)])
    assert res.exit_code == 0, res.output
    bad = json.loads(REFERENCE.read_text())
    bad["facts"][0]["category"] = "gossip"
    del bad["title"]
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad, indent=2))
    res = runner.invoke(app, ["cases", "validate", str(f), str(REFERENCE), "--json"])
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert report["valid_cases"] == 1
    fields = sorted(p["field"] for p in report["problems"])
    assert fields == ["facts.0.category", "title"]
    assert all(p["file"] == str(f) and p["case_id"] == bad["id"] and p["line"] for p in report["problems"])


def test_validate_human_output_lists_file_line_case_field(tmp_path):
    f = tmp_path / "broken.jsonl"
    f.write_text("{}\n")
    res = runner.invoke(app, ["cases", "validate", str(f)])
    assert res.exit_code == 1
    assert f"{f}:1 | " in res.stdout and "required field is missing" in res.stdout


def test_stats_json_has_total_and_by_specialty():
    res = runner.invoke(app, ["cases", "stats", "--json"])
    assert res.exit_code == 0
    stats = json.loads(res.stdout)
    assert stats["total"] == sum(stats["by_specialty"].values()) >= 1
    for key in ("by_age_band", "by_sex", "by_acuity", "by_setting"):
        assert sum(stats[key].values()) == stats["total"]


def test_stats_of_a_bad_source_exits_1(tmp_path):
    res = runner.invoke(app, ["cases", "stats", str(tmp_path / "missing.json")])
    assert res.exit_code == 1
    assert "no such file or directory" in res.output


def test_demo_runs_graded_consultations_and_writes_a_report(tmp_path):
    res = runner.invoke(app, ["demo", "--episodes", "3", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "demo" / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len({r["specialty"] if "specialty" in r else r["case_id"] for r in rows}) == 3
    assert all(r["rubric"] and isinstance(r["score"], float) for r in rows)
    html = (tmp_path / "demo" / "report.html").read_text()
    assert (
        html.count("<h2 id=") == 3 and "not met" in html and "Research software, not for clinical use" in html
    )
    assert "scores over 3 consultations" in res.output


def test_console_script_runs_as_a_subprocess():
    out = subprocess.run(
        [sys.executable, "-m", "clinic_env.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("clinic-env ")


def test_import_is_light():
    code = (
        "import sys, clinic_env, clinic_env.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'vllm', 'fastapi', 'datasets') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import clinic_env pulled in {out.stdout.strip()}"


def test_train_command_rejects_unknown_config_keys_before_building_anything():
    from typer.testing import CliRunner

    from clinic_env.cli import app

    r = CliRunner().invoke(
        app, ["train", "--config", "training/configs/multi_turn.yaml", "--set", "grpo.bogus=1", "--check"]
    )
    assert r.exit_code == 2
    assert "grpo.bogus: unknown key" in r.output
