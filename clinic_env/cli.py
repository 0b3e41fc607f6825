"""The ``clinic-env`` command line (typer + rich).

clinic-env cases schema                 # JSON Schema of a case
clinic-env cases validate PATH...       # every problem with file, line, case id, field; exit 1 if any
clinic-env cases stats [SOURCE] [--json]
clinic-env cases generate --n N --seed S -o OUT.jsonl
clinic-env train --config training/configs/STAGE.yaml [--set KEY=VALUE]
clinic-env demo                         # the main job on embedded defaults
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__

app = typer.Typer(
    name="clinic-env",
    help="Clinical consultations as RL environments. Research software, not for clinical use.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cases_app = typer.Typer(help="Inspect, validate and summarise case files.", no_args_is_help=True)
app.add_typer(cases_app, name="cases")
rubric_app = typer.Typer(help="Rubrics: show a case's rubric, grade a transcript.", no_args_is_help=True)
app.add_typer(rubric_app, name="rubric")
patient_app = typer.Typer(help="The patient simulator: audit it, or talk to it.", no_args_is_help=True)
app.add_typer(patient_app, name="patient")

console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"clinic-env {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """clinic-env command line."""


@cases_app.command("schema")
def cases_schema(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of a case."""
    from .cases import case_json_schema

    text = json.dumps(case_json_schema(), indent=2)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        err_console.print(f"wrote {out}")
    else:
        sys.stdout.write(text + "\n")


@cases_app.command("validate")
def cases_validate(
    paths: Annotated[list[str], typer.Argument(help="Case files (.json, .jsonl), folders, or 'builtin'.")],
    library: Annotated[
        bool | None,
        typer.Option(
            "--library/--no-library",
            help="Also apply the shipped library's minimums (default: only for 'builtin').",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print problems as one JSON object.")] = False,
) -> None:
    """Validate cases; list every problem with file, line, case id and field path. Exit 1 if any."""
    from .cases import check_cases

    n_cases, problems = 0, []
    for p in paths:
        cases, probs = check_cases(p, library=library)
        n_cases += len(cases)
        problems += probs
    if as_json:
        sys.stdout.write(
            json.dumps({"valid_cases": n_cases, "problems": [p.to_dict() for p in problems]}, indent=2) + "\n"
        )
    else:
        for prob in problems:
            console.print(str(prob), markup=False, highlight=False, soft_wrap=True)
        if problems:
            err_console.print(f"[red]{len(problems)} problem(s)[/red]; {n_cases} case(s) valid.")
        else:
            err_console.print(f"[green]OK[/green]: {n_cases} case(s) valid.")
    raise typer.Exit(1 if problems else 0)


def _load_or_exit(source: str):
    from .cases import CaseLoadError, load_cases

    try:
        return load_cases(source)
    except CaseLoadError as exc:
        err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _case_or_exit(source: str, case_id: str):
    """One case by id, or exit 2 with the set's message (which names close matches)."""
    try:
        return _load_or_exit(source).get(case_id)
    except KeyError as exc:
        err_console.print(str(exc.args[0]))
        raise typer.Exit(2) from None


def print_stats_tables(stats: dict, *, title: str = "cases") -> None:
    console.print(
        f"[bold]{stats['total']} {title}[/bold] in {stats['n_specialties']} specialties; "
        f"mean {stats['mean_facts']} facts, {stats['mean_exam_findings']} exam findings, "
        f"{stats['mean_test_results']} test results, {stats['mean_differential']} differentials per case"
    )
    for key in (
        "by_specialty",
        "by_age_band",
        "by_sex",
        "by_acuity",
        "by_setting",
        "by_disposition",
        "by_tag",
    ):
        table = Table(
            title=key.replace("by_", "by ").replace("_", " "), title_justify="left", show_header=False
        )
        table.add_column("value")
        table.add_column("n", justify="right")
        for k, v in stats[key].items():
            table.add_row(str(k), str(v))
        console.print(table)


@cases_app.command("stats")
def cases_stats(
    source: Annotated[str, typer.Argument(help="'builtin', a case file or a folder.")] = "builtin",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Counts by specialty, age band, sex, acuity, setting, disposition and tag."""
    from .cases.stats import case_stats

    stats = case_stats(_load_or_exit(source))
    if as_json:
        sys.stdout.write(json.dumps(stats, indent=2) + "\n")
    else:
        print_stats_tables(stats)


@cases_app.command("generate")
def cases_generate(
    n: Annotated[int, typer.Option("--n", min=0, help="How many cases.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Same seed and options, same cases.")] = 0,
    specialty: Annotated[
        list[str] | None, typer.Option("--specialty", help="Restrict to a specialty (repeatable).")
    ] = None,
    age: Annotated[
        str | None, typer.Option("--age", help="Age range 'LO-HI' in years, or a band name.")
    ] = None,
    sex: Annotated[str | None, typer.Option("--sex", help="'female' or 'male'.")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output JSONL file (written atomically).")] = Path(
        "generated.jsonl"
    ),
) -> None:
    """Stratified synthetic cases from the condition knowledge base (specialty, prevalence, age, sex, comorbidity)."""
    from rich.progress import track

    from .cases.generator import CaseGenerator, GeneratorError

    try:
        gen = CaseGenerator()
        cases = gen.iter_cases(n, seed=seed, specialty=specialty or None, age=age, sex=sex)
        tmp = out.with_name(out.name + ".tmp")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as fh:
            for case in track(
                cases, total=n, description="generating", console=err_console, disable=n < 2000
            ):
                fh.write(case.model_dump_json(exclude_none=True) + "\n")
        tmp.replace(out)
    except GeneratorError as exc:
        tmp = out.with_name(out.name + ".tmp")
        tmp.unlink(missing_ok=True)
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    err_console.print(f"wrote {n} cases to {out}")


@cases_app.command("import")
def cases_import(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Source JSON Lines file.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="agentclinic, agentclinic-nejm, mediq or healthbench.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            help="Output JSONL of cases (atomic); OUT.errors.jsonl and OUT.report.json beside it.",
        ),
    ],
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            help="Structure free-text vignettes with this model: hf:PATH, openai:MODEL@URL, vllm:PATH.",
        ),
    ] = None,
    id_prefix: Annotated[
        str | None, typer.Option("--id-prefix", help="Case-id prefix (default: the format).")
    ] = None,
    default_sex: Annotated[
        str | None,
        typer.Option(
            "--default-sex", help="'female' or 'male' for records that do not say (kept as a placeholder)."
        ),
    ] = None,
    llm_retries: Annotated[
        int, typer.Option("--llm-retries", min=0, help="Retries on invalid LLM JSON.")
    ] = 2,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Records per batched LLM call.")] = 8,
) -> None:
    """Import AgentClinic, MediQ or HealthBench records as cases. Exit 0 if every record imported, 1 if any failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .cases.importers import ImportInputError, import_file, sidecar_paths

    model = None
    if llm is not None:
        from .llm import load_chat_model

        try:
            model = load_chat_model(llm)
        except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
            err_console.print(f"[red]cannot load the --llm model[/red]: {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(2) from None
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task(f"importing {src.name}", total=None)
            report = import_file(
                src,
                out,
                fmt,
                llm=model,
                id_prefix=id_prefix,
                default_sex=default_sex,
                max_retries=llm_retries,
                batch_size=batch_size,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except ImportInputError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        err_console.print(f"[red]cannot write {out}[/red]: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    for e in report.errors[:10]:
        err_console.print(f"  {src.name}:{e['line']}: {escape(e['error'])}", highlight=False, soft_wrap=True)
    if report.n_failed > 10:
        err_console.print(f"  ... and {report.n_failed - 10} more")
    errors_path, report_path = sidecar_paths(out)
    wrote = f"wrote {out}" if report.output else f"{out} not written (nothing imported)"
    colour = "green" if report.n_failed == 0 else "red"
    err_console.print(
        f"[{colour}]{report.n_imported} of {report.n_records} records imported[/{colour}], {report.n_failed} failed; "
        f"{wrote}; errors in {errors_path}, report in {report_path}",
        soft_wrap=True,
    )
    raise typer.Exit(0 if report.n_failed == 0 else 1)


def _backend(spec: str):
    if spec == "rule":
        return "rule"
    from .llm import load_chat_model

    try:
        return load_chat_model(spec)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        err_console.print(f"[red]cannot load the patient model[/red]: {exc}")
        raise typer.Exit(2) from None


@patient_app.command("audit")
def patient_audit(
    cases: Annotated[str, typer.Option(help="'builtin', a case file or a folder.")] = "builtin",
    backend: Annotated[
        str, typer.Option(help="'rule', or a model spec (hf:PATH, openai:MODEL@URL, vllm:PATH).")
    ] = "rule",
    seed: Annotated[int, typer.Option(help="Seed for the scripted doctors and the patient.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Privacy, Fact and Personification of the simulator under scripted and adversarial doctors."""
    from .patient.audit import audit

    loaded = _load_or_exit(cases)
    result = audit(loaded, backend=_backend(backend), seed=seed, progress=not as_json)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(
        title=f"patient audit: {result['n_cases']} cases, {result['n_turns']} turns, backend {result['backend']}"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in ("privacy", "fact", "personification"):
        table.add_row(k, f"{result[k]:.4f}")
    console.print(table)
    for k, v in result["failures"].items():
        console.print(f"  failed {k}: {v}", markup=False)


@patient_app.command("chat")
def patient_chat(
    case_id: Annotated[str, typer.Argument(help="Case id, e.g. card-inferior-stemi-pde5.")],
    cases: Annotated[str, typer.Option(help="'builtin', a case file or a folder.")] = "builtin",
    backend: Annotated[str, typer.Option(help="'rule' or a model spec.")] = "rule",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Talk to the patient yourself (type EXAM:, TEST:, DIAGNOSIS:, PLAN: for the structured channel)."""
    from .patient import PatientSimulator

    case = _case_or_exit(cases, case_id)
    sim = PatientSimulator(_backend(backend))
    console.print(f"[bold]{case.persona.name}[/bold]: {escape(sim.reset(case, seed))}", highlight=False)
    while not sim.done:
        try:
            line = console.input("[cyan]doctor> [/cyan]")
        except (EOFError, KeyboardInterrupt):
            break
        turn = sim.respond(line)
        console.print(f"[bold]{case.persona.name}[/bold]: {escape(turn.text)}", highlight=False)
        for x in turn.examiner:
            console.print(f"  [dim]examiner:[/dim] {escape(x)}", highlight=False)
    if sim.turns and sim.turns[-1].reason:
        console.print(f"[dim]ended: {sim.turns[-1].reason}[/dim]")


@rubric_app.command("show")
def rubric_show(
    case_id: Annotated[str, typer.Argument(help="Case id.")],
    cases: Annotated[str, typer.Option(help="'builtin', a case file or a folder.")] = "builtin",
    seed: Annotated[int, typer.Option(help="Seed for the criterion wording.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rubric as JSON.")] = False,
    healthbench: Annotated[
        bool, typer.Option(help="Print HealthBench-style items (criterion, points, tags).")
    ] = False,
) -> None:
    """The rule-generated rubric of one case."""
    from .rubrics import RuleRubricGenerator

    case = _case_or_exit(cases, case_id)
    rubric = RuleRubricGenerator().generate(case, seed=seed)
    if healthbench:
        sys.stdout.write(json.dumps(rubric.to_healthbench(), indent=2) + "\n")
    elif as_json:
        sys.stdout.write(rubric.model_dump_json(indent=2) + "\n")
    else:
        table = Table(
            title=f"rubric for {case.id} ({len(rubric.criteria)} criteria, {rubric.max_points} positive points)"
        )
        for col in ("id", "points", "axis", "dimension", "criterion"):
            table.add_column(col)
        for c in rubric.criteria:
            table.add_row(c.id, str(c.points), c.axis.value, c.dimension.value, c.text)
        console.print(table)


@rubric_app.command("grade")
def rubric_grade(
    case_id: Annotated[str, typer.Argument(help="Case id.")],
    transcript: Annotated[
        Path, typer.Argument(help="JSON list of {role: doctor|patient, content} messages.")
    ],
    cases: Annotated[str, typer.Option(help="'builtin', a case file or a folder.")] = "builtin",
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Grade a transcript against the case's rubric with the rule verifier."""
    from .rubrics import RuleRubricGenerator, RuleVerifier, Transcript, score_grades

    case = _case_or_exit(cases, case_id)
    try:
        messages = json.loads(transcript.read_text(encoding="utf-8"))
        tr = Transcript.from_messages(messages)
        rubric = RuleRubricGenerator().generate(case, seed=seed)
        grades = RuleVerifier().grade(case, rubric, tr)
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
        err_console.print(f"[red]cannot grade {transcript}[/red]: {exc}")
        raise typer.Exit(2) from None
    metrics = score_grades(rubric, grades)
    if as_json:
        out = {
            "case_id": case.id,
            "score": metrics["overall_score"],
            "metrics": metrics,
            "grades": [g.__dict__ for g in grades],
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    by_id = {c.id: c for c in rubric.criteria}
    for g in grades:
        c = by_id[g.criterion_id]
        mark = "[green]met[/green]" if g.met else "[dim]not met[/dim]"
        console.print(
            f"{mark:>22} {escape(f'[{c.points:+d}] {c.text}')}  [dim]({escape(g.explanation)})[/dim]"
        )
    console.print(f"[bold]score {metrics['overall_score']:.3f}[/bold]")


@app.command("healthbench")
def healthbench(
    data: Annotated[Path, typer.Option(help="HealthBench JSONL (full, hard or consensus), a local file.")],
    grader: Annotated[
        str, typer.Option(help="llm:MODEL_SPEC (e.g. llm:openai:gpt-4.1@URL) or replay:LABELS.jsonl")
    ],
    out: Annotated[Path, typer.Option(help="Output folder: results.jsonl, errors.jsonl, summary.json.")],
    policy: Annotated[
        str | None, typer.Option(help="The model under test: hf:PATH, openai:MODEL@URL, vllm:PATH.")
    ] = None,
    responses: Annotated[
        Path | None, typer.Option(help="Precomputed responses JSONL (prompt_id, response).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per batched policy/grader call.")] = 16,
    max_retries: Annotated[int, typer.Option(help="Grader retries on unparsable JSON (bounded).")] = 3,
) -> None:
    """Evaluate a policy (or precomputed responses) on HealthBench, scored exactly like simple-evals."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .rubrics.healthbench import load_responses, run_healthbench
    from .rubrics.verify import LLMVerifier, ReplayGrader

    if (policy is None) == (responses is None):
        err_console.print("give exactly one of --policy or --responses")
        raise typer.Exit(2)
    try:
        if grader.startswith("replay:"):
            judge = ReplayGrader(grader.removeprefix("replay:"))
        elif grader.startswith("llm:"):
            from .llm import load_chat_model

            judge = LLMVerifier(
                load_chat_model(grader.removeprefix("llm:")), max_retries=max_retries, consultation=False
            )
        else:
            raise ValueError(f"--grader must start with 'llm:' or 'replay:', got {grader!r}")
        model = None
        if policy is not None:
            from .llm import load_chat_model

            model = load_chat_model(policy)
        resp = load_responses(responses) if responses is not None else None
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
        ) as bar:
            task = bar.add_task("grading", total=None)
            summary = run_healthbench(
                data,
                out,
                grader=judge,
                policy=model,
                responses=resp,
                limit=limit,
                batch_size=batch_size,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except (ValueError, FileNotFoundError, ImportError, KeyError) as exc:
        err_console.print(f"[red]healthbench failed[/red]: {exc}")
        raise typer.Exit(2) from None
    console.print(
        f"score {summary.get('score', float('nan')):.4f} over {summary['n_examples']} examples "
        f"({summary['n_input_errors']} input lines skipped, see {out / 'errors.jsonl'}); wrote {out / 'summary.json'}"
    )


def _scripted():
    from agents import ScriptedDoctor

    return ScriptedDoctor()


def _checklist():
    from .policies import ChecklistDoctor

    return ChecklistDoctor()


def _random():
    from agents import RandomDoctor

    return RandomDoctor(seed=0)


@app.command("demo")
def demo(
    cases: Annotated[str, typer.Option(help="'builtin', a case file or a folder.")] = "builtin",
    episodes: Annotated[int, typer.Option(help="How many consultations to run.")] = 17,
    seed: Annotated[int, typer.Option(help="Seed for case choice and the patient.")] = 0,
    out: Annotated[Path, typer.Option(help="Where to write the demo outputs.")] = Path("runs/demo"),
    doctor_name: Annotated[
        str, typer.Option("--doctor", help="'scripted' (naive-Bayes differential), 'checklist' or 'random'.")
    ] = "scripted",
) -> None:
    """The main job on embedded defaults: a batch of graded consultations and a report.

    Validates the cases, then runs ``episodes`` consultations (one case per specialty first) between a doctor
    agent (default: ``agents.ScriptedDoctor``, systematic history and a naive-Bayes differential over the
    condition knowledge base; it sees only what the patient and examiner say) and the rule patient, graded by each
    case's rubric. Prints one transcript and the scores by
    dimension; writes ``runs/demo/episodes.jsonl`` and ``runs/demo/report.html``.
    """
    from rich.progress import track

    from .cases import check_cases
    from .cases.stats import case_stats
    from .env import ConsultationEnv
    from .logs import load_episodes
    from .report import summarize, write_html_report

    doctors = {"scripted": _scripted, "checklist": _checklist, "random": _random}
    if doctor_name not in doctors:
        err_console.print(f"--doctor must be one of {sorted(doctors)}, got {doctor_name!r}")
        raise typer.Exit(2)

    loaded, problems = check_cases(cases)
    if problems:
        for prob in problems:
            err_console.print(str(prob), markup=False, highlight=False, soft_wrap=True)
        err_console.print(f"[red]{len(problems)} problem(s) in the cases[/red]")
        raise typer.Exit(1)
    if episodes < 1:
        err_console.print("--episodes must be at least 1")
        raise typer.Exit(2)
    stats = case_stats(loaded)
    console.print(
        f"[bold]{stats['total']} valid cases[/bold] in {stats['n_specialties']} specialties "
        f"({stats['n_emergency_disposition']} emergencies); `clinic-env cases stats` for the full make-up"
    )
    # One case per specialty first, then the rest, in a seeded order.
    import numpy as np

    rng = np.random.default_rng(seed)
    order = [loaded[int(i)] for i in rng.permutation(len(loaded))]
    firsts, seen = [], set()
    for c in order:
        if c.specialty not in seen:
            seen.add(c.specialty)
            firsts.append(c)
    chosen = (firsts + [c for c in order if c not in firsts])[:episodes]
    out.mkdir(parents=True, exist_ok=True)
    log = out / "episodes.jsonl"
    log.unlink(missing_ok=True)  # each demo run writes a fresh log
    env = ConsultationEnv(cases=loaded, log_path=log, max_turns=20)
    doctor = doctors[doctor_name]()
    for k, case in enumerate(track(chosen, description="consultations", console=err_console)):
        obs, info = env.reset(seed=seed + k, options={"case_id": case.id})
        doctor.reset()
        done = False
        while not done:
            obs, _reward, terminated, truncated, info = env.step(doctor.act(obs, info))
            done = terminated or truncated
    eps = load_episodes(log)
    first = eps[0]
    console.rule(
        f"example transcript: {first['case_id']} (score {first['score']:.3f}, {first['termination_reason']})"
    )
    for m in first["messages"]:
        who = "[bold]patient[/bold]" if m["role"] == "user" else "[cyan] doctor[/cyan]"
        console.print(f"{who}: {escape(m['content'])}", highlight=False)
    summary = summarize(eps)
    table = Table(
        title=f"scores over {len(eps)} consultations ({doctor_name} doctor vs rule patient)",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for k, v in summary.items():
        if k == "score" or k.startswith("dimension:"):
            table.add_row(k, f"{v:.3f}")
    console.print(table)
    report = write_html_report(
        eps,
        out / "report.html",
        title="clinic-env demo",
        note=f"{doctor_name.capitalize()} doctor vs the rule patient; rubric scores.",
    )
    console.print(f"wrote {log} and {report}")


@app.command("serve")
def serve_command(
    model: Annotated[str, typer.Option("--model", help="Local model folder to serve.")],
    draft: Annotated[
        str | None,
        typer.Option("--draft", help="Draft model folder (speculative decoding; needs deploy.engine)."),
    ] = None,
    quant: Annotated[
        str | None, typer.Option("--quant", help="Weight quantization: int8 or int4 (needs deploy.engine).")
    ] = None,
    gamma: Annotated[int, typer.Option("--gamma", help="Draft tokens per speculative step.")] = 4,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="float32, bfloat16, float16.")] = "float32",
    max_batch: Annotated[int, typer.Option("--max-batch", help="Requests per generate call.")] = 32,
    max_tokens_cap: Annotated[
        int, typer.Option("--max-tokens-cap", help="Requests asking for more max_tokens get 422.")
    ] = 1024,
    queue_size: Annotated[
        int, typer.Option("--queue-size", help="Waiting requests beyond this get 429.")
    ] = 256,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request before 504.")] = 120.0,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /metrics)."""
    try:  # deploy and fastapi load only here: `import clinic_env.cli` stays light
        from deploy.server import ServerConfig, serve
    except ImportError as exc:
        err_console.print(f"cannot start the server: {exc} (pip install 'clinic-env[serve]')")
        raise typer.Exit(2) from None
    try:
        cfg = ServerConfig(
            max_batch=max_batch, max_tokens_cap=max_tokens_cap, queue_size=queue_size, timeout_s=timeout
        )
        serve(
            model,
            draft=draft,
            quant=quant,
            gamma=gamma,
            device=device,
            dtype=dtype,
            host=host,
            port=port,
            config=cfg,
            announce=err_console.print,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        err_console.print(f"cannot serve: {escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command("train", context_settings={"allow_extra_args": False})
def train_command(
    config: Annotated[
        Path, typer.Option("--config", help="A stage config, e.g. training/configs/multi_turn.yaml.")
    ],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: KEY=VALUE (dotted; repeatable).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the config and its paths, then exit.")
    ] = False,
) -> None:
    """Run one training stage (sft, single_turn, multi_turn): the same as ``python -m training.grpo``."""
    from training.grpo import main as grpo_main

    argv = ["--config", str(config)] + [x for o in overrides or [] for x in ("--set", o)]
    raise typer.Exit(grpo_main(argv + (["--check"] if check else [])))


if __name__ == "__main__":
    app()
