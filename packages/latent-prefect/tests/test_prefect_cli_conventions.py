"""The `latent` command behaves as Kedro/Prefect/MLflow users expect: help, version, completion,
`latent init`, `--env`, confirmation before deleting, documented exit codes, and no Prefect import
for the commands that do not run anything."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from project_dir import ProjectDir
from typer.testing import CliRunner

import latent.prefect
from latent.prefect.cli import app

runner = CliRunner()
LATENT = str(Path(sys.executable).parent / "latent")

ENVIRONMENT_FLOW = """
from latent.config import Project
from latent.prefect import flow, task

@task("where", output="where")
def where() -> dict:
    return {"environment": Project.discover().settings.environment}

@flow("envcheck")
def envcheck():
    return where()
"""


def _latent(*args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LATENT, *args], cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs
    )  # type: ignore[call-overload, no-any-return]


def _heavy_modules_after(args: list[str], cwd: Path) -> dict[str, object]:
    """Run the console script's code in a fresh interpreter; report exit code and heavy imports."""
    code = f"""
import json, sys
sys.argv = ["latent", *{args!r}]
from latent.prefect.cli import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
heavy = [m for m in ("prefect", "mlflow", "pandas", "pyarrow", "numpy", "pydantic")
         if m in sys.modules]
print("\\n" + json.dumps({{"code": code, "heavy": heavy}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_latent_alone_shows_help_and_succeeds(tmp_path: Path) -> None:
    done = _latent(cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: latent" in done.stdout and "run" in done.stdout and "init" in done.stdout


def test_help_documents_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit codes:" in text
    assert "0 success" in text and "1 the command ran and failed" in text
    assert "configuration is invalid" in text and "2 the command line is wrong" in text


def test_version_names_every_component() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert f"latent-prefect {latent.prefect.__version__}" in result.output
    for sibling in ("latent-config", "latent-cache", "latent-observe", "prefect"):
        assert sibling in result.output


def test_python_dash_m_latent_runs_the_command(tmp_path: Path) -> None:
    for module in ("latent", "latent.prefect"):
        done = subprocess.run(
            [sys.executable, "-m", module, "--version"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("latent-prefect ")


def test_latent_stays_a_namespace_package() -> None:
    root = Path(__file__).resolve().parents[3]
    assert list(root.glob("packages/*/src/latent/__init__.py")) == []


def test_shell_completion_completes_commands(tmp_path: Path) -> None:
    env = {**os.environ, "_LATENT_COMPLETE": "complete_bash", "COMP_WORDS": "latent ca"}
    done = _latent(cwd=tmp_path, env={**env, "COMP_CWORD": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cache"]
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


@pytest.mark.parametrize(
    ("args", "loaded"),
    [(["--help"], []), (["--version"], []), ([], []), (["flows"], ["pydantic"])],
)
def test_commands_that_run_nothing_do_not_import_prefect(
    args: list[str], loaded: list[str], project: ProjectDir
) -> None:
    """Only what the command needs: help and version not even the configuration layer."""
    project.flow("first", "from latent.prefect import flow\n", parameters={"n": 1})
    seen = _heavy_modules_after(args, project.root)
    assert seen == {"code": 0, "heavy": loaded}


def test_no_project_says_where_it_looked(tmp_path: Path) -> None:
    empty = tmp_path / "empty" / "sub"
    empty.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "LATENT_PROJECT_ROOT"}
    done = _latent("flows", cwd=empty, env=env)
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert f"looked for config/latent.toml in {empty}" in message
    assert str(empty.parent) in message and "latent init" in message


def test_init_creates_a_project_that_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / ".gitignore").write_text("*.pyc\n")
    result = runner.invoke(app, ["init", "evals"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "evals"
    for relative in (
        "config/latent.toml",
        "config/global.yaml",
        "config/catalog.yaml",
        "flows/hello/flow.py",
        "flows/hello/parameters.yaml",
    ):
        assert (root / relative).is_file(), relative
    assert (root / ".gitignore").read_text().splitlines() == ["*.pyc", ".latent/"]
    assert "latent run hello" in result.output

    again = runner.invoke(app, ["init", "evals"])
    assert again.exit_code == 2 and "already" in again.output

    monkeypatch.chdir(root)
    for var in ("LATENT_ENVIRONMENT", "LATENT_PROJECT_ROOT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LATENT_MLFLOW_ENABLED", "false")
    ran = runner.invoke(app, ["run", "hello"])
    assert ran.exit_code == 0, ran.output
    assert "say" in ran.output and "Completed" in ran.output
    assert (root / ".latent").is_dir()


def test_run_env_sets_the_environment_for_that_run(project: ProjectDir) -> None:
    project.write("config/latent.toml", 'environment = "production"\n[mlflow]\nenabled = false\n')
    project.flow(
        "envcheck",
        ENVIRONMENT_FLOW,
        catalog={"where": {"type": "json", "filepath": "data/where.json"}},
    )
    result = runner.invoke(app, ["run", "envcheck", "--env", "dev"])
    assert result.exit_code == 0, result.output
    assert json.loads((project.root / "data/where.json").read_text()) == {"environment": "dev"}
    assert "LATENT_ENVIRONMENT" not in os.environ  # restored after the command

    bad = runner.invoke(app, ["run", "envcheck", "--env", "staging"])
    assert bad.exit_code == 2
    said = " ".join(bad.output.replace("│", " ").split())  # Typer draws usage errors in a box
    assert "'staging' is not an environment: use dev or production" in said


def test_destructive_commands_refuse_without_a_terminal(project: ProjectDir) -> None:
    for command in (["cache", "clear"], ["checkpoints", "clear"]):
        result = runner.invoke(app, command)  # the runner's stdin is not a terminal
        assert result.exit_code == 2, result.output
        assert "pass --yes" in " ".join(result.output.split())
    assert runner.invoke(app, ["cache", "clear", "--yes"]).exit_code == 0
    assert "Removed 0 checkpoint" in runner.invoke(app, ["checkpoints", "clear", "-y"]).output


def _answer_in_a_terminal(args: list[str], answer: str, cwd: Path) -> tuple[int, str]:
    """Run `latent <args>` with a real terminal on stdin and type `answer` at its prompt."""
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [LATENT, *args],
            cwd=cwd,
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.write(primary, answer.encode() + b"\n")
        output, _ = process.communicate(timeout=120)
        return process.returncode, output
    finally:
        os.close(primary)
        os.close(secondary)


def test_destructive_commands_ask_in_a_terminal(project: ProjectDir) -> None:
    code, output = _answer_in_a_terminal(["checkpoints", "clear"], "n", project.root)
    assert code == 1 and "Nothing was deleted" in output, output
    code, output = _answer_in_a_terminal(["checkpoints", "clear"], "y", project.root)
    assert code == 0 and "Removed 0 checkpoint" in output, output
    assert "Delete the checkpoints of every function" in " ".join(output.split())
