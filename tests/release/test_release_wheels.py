"""What a user gets from PyPI: four wheels that build cleanly, carry their metadata and licence,
and each work when installed ALONE into a fresh virtual environment (its README's first example
runs there; latent-prefect without `[pandas]` runs a dict-only flow and explains how to get
pandas when a catalog entry needs it)."""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "latent-config": "config",
    "latent-cache": "cache",
    "latent-observe": "observe",
    "latent-prefect": "prefect",
}
HEAVY = ("prefect", "mlflow", "pandas", "pyarrow")


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    assert found, "uv is needed to build and install the wheels (pip install uv)"
    return found


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        [str(a) for a in args], capture_output=True, text=True, timeout=900, **kwargs
    )
    return done


def _pyproject(package: str) -> dict[str, object]:
    return tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())


def _requirement(package: str, name: str) -> str:
    project = _pyproject(package)["project"]
    assert isinstance(project, dict)
    extras = project.get("optional-dependencies", {})
    everything = [*project["dependencies"], *(r for group in extras.values() for r in group)]
    found = [r for r in everything if re.match(rf"{re.escape(name)}(\[|>|<|=|$)", r)]
    assert found, f"{package} does not depend on {name}"
    return str(found[0])


# -- metadata, read from the sources (fast) ------------------------------------------------


def test_one_version_source_per_package() -> None:
    for package, module in PACKAGES.items():
        project = _pyproject(package)
        assert project["project"]["dynamic"] == ["version"]  # type: ignore[index]
        assert project["tool"]["hatch"]["version"]["path"] == (  # type: ignore[index]
            f"src/latent/{module}/__init__.py"
        )
        init = (ROOT / "packages" / package / "src/latent" / module / "__init__.py").read_text()
        assert re.search(r'^__version__ = "\d+\.\d+\.\d+"$', init, re.M), package


def test_latent_prefect_is_lean_and_pins_its_siblings() -> None:
    assert _requirement("latent-prefect", "latent-config") == "latent-config>=0.1,<0.2"
    for sibling in ("latent-cache", "latent-observe"):
        assert _requirement("latent-prefect", sibling) == f"{sibling}>=0.1,<0.2"
    assert "latent-config[pandas]" in _requirement("latent-prefect", "latent-config[pandas]")


def test_upper_bounds_where_a_major_release_would_break_us() -> None:
    for package, name in (
        ("latent-prefect", "prefect"),
        ("latent-observe", "mlflow-skinny"),
        ("latent-observe", "mlflow"),
        ("latent-config", "pydantic"),
        ("latent-config", "pandas"),
    ):
        assert re.search(r",<\d+$", _requirement(package, name)), (package, name)


def test_readmes_only_link_to_absolute_urls() -> None:
    """PyPI renders the README out of the repository: relative links would break there."""
    for package in PACKAGES:
        text = (ROOT / "packages" / package / "README.md").read_text()
        relative = re.findall(r"\]\((?!https?://|#)([^)]+)\)", text)
        assert relative == [], (package, relative)


def test_every_package_ships_the_apache_licence() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    for package in PACKAGES:
        assert (ROOT / "packages" / package / "LICENSE").read_text() == licence, package


# -- built wheels ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run(_uv(), "build", "--all-packages", "--quiet", "-o", out, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lockfile's versions: installs come from uv's cache (offline) and match the tests."""
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    exported = _run(
        _uv(),
        "export",
        "--frozen",
        "--all-packages",
        "--all-extras",
        "--no-dev",
        "--no-hashes",
        "--no-emit-workspace",
        "--quiet",
        "-o",
        path,
        cwd=ROOT,
    )
    assert exported.returncode == 0, exported.stderr
    return path


def _wheel(dist: Path, package: str) -> Path:
    (wheel,) = dist.glob(f"{package.replace('-', '_')}-*-py3-none-any.whl")
    return wheel


@pytest.mark.slow
def test_wheels_build_with_metadata_and_pass_twine_check(dist: Path) -> None:
    assert len(list(dist.glob("*.whl"))) == 4 and len(list(dist.glob("*.tar.gz"))) == 4
    for package, module in PACKAGES.items():
        with zipfile.ZipFile(_wheel(dist, package)) as wheel:
            names = wheel.namelist()
            (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
            metadata = email.message_from_bytes(wheel.read(metadata_name))
        assert "latent/__init__.py" not in names  # `latent` stays a PEP 420 namespace
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), package
        assert f"latent/{module}/py.typed" in names
        imported = __import__(f"latent.{module}", fromlist=["__version__"])
        assert metadata["Version"] == imported.__version__
        assert metadata["License-Expression"] == "Apache-2.0"
        assert metadata["Author"] or metadata["Author-email"]
        assert "Typing :: Typed" in metadata.get_all("Classifier", [])
        urls = " ".join(metadata.get_all("Project-URL", []))
        assert "Documentation" in urls and "Repository" in urls
    artifacts = sorted([*dist.glob("*.whl"), *dist.glob("*.tar.gz")])
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", *artifacts)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _first_python_example(package: str) -> str:
    text = (ROOT / "packages" / package / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, f"{package}/README.md has no python example"
    return match.group(1)


@pytest.fixture
def fresh_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of the subprocesses: no workspace on the path, no project variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LATENT_PROJECT_ROOT", "LATENT_ENVIRONMENT")
        and not k.startswith("MLFLOW_")
    }
    env["PYTHONNOUSERSITE"] = "1"
    yield env


def _venv_with(
    package: str, dist: Path, constraints: Path, where: Path, env: dict[str, str]
) -> Path:
    """A fresh venv holding `package` (from `dist`) and its dependencies, nothing else."""
    venv = where / "venv"
    created = _run(_uv(), "venv", "--quiet", "--python", sys.executable, venv, env=env)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    install = [_uv(), "pip", "install", "--quiet", "--python", python, "--find-links", dist]
    install += ["--constraint", constraints, package]
    done = _run(*install, "--offline", env=env)  # the uv cache has every locked version
    if done.returncode != 0:
        done = _run(*install, env=env)
    assert done.returncode == 0, done.stderr
    return python


def _script(python: Path, code: str, cwd: Path, env: dict[str, str]) -> str:
    done = _run(python, "-c", code, cwd=cwd, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _absent(python: Path, cwd: Path, env: dict[str, str]) -> list[str]:
    """Heavy packages importable in the venv."""
    out = _script(
        python,
        f"import importlib.util as u; print([m for m in {HEAVY!r} if u.find_spec(m)])",
        cwd,
        env,
    )
    return eval(out)  # type: ignore[no-any-return]


def _project(root: Path, latent_toml: str = 'environment = "dev"\n') -> Path:
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text(latent_toml)
    (root / "data").mkdir()
    return root


@pytest.mark.slow
def test_latent_cache_alone(
    dist: Path, constraints: Path, tmp_path: Path, fresh_env: dict[str, str]
) -> None:
    python = _venv_with("latent-cache", dist, constraints, tmp_path, fresh_env)
    assert _absent(python, tmp_path, fresh_env) == []
    work = _project(tmp_path / "work")
    stand_ins = """
        import sys
        calls = []
        class model:
            def encode(text):
                calls.append(text)
                return [float(len(text))]
        class llm_client:
            def complete(prompt):
                calls.append(prompt)
                return prompt.upper()
    """
    after = """
        print(embed("hi"), embed("hi"), len(calls))
        print(process_documents([{"id": 1, "prompt": "p"}]), len(calls))
        print(sorted(m for m in ("prefect", "mlflow", "pandas") if m in sys.modules))
    """
    code = textwrap.dedent(stand_ins) + _first_python_example("latent-cache")
    out = _script(python, code + textwrap.dedent(after), work, fresh_env)
    assert out.splitlines() == ["[2.0] [2.0] 1", "[{'id': 1, 'response': 'P'}] 2", "[]"]


@pytest.mark.slow
def test_latent_config_alone(
    dist: Path, constraints: Path, tmp_path: Path, fresh_env: dict[str, str]
) -> None:
    python = _venv_with("latent-config", dist, constraints, tmp_path, fresh_env)
    assert _absent(python, tmp_path, fresh_env) == []
    work = _project(tmp_path / "work")
    (work / "flows" / "evaluate").mkdir(parents=True)
    (work / "flows/evaluate/parameters.yaml").write_text("batch_size: 8\nmodel_name: tiny\n")
    (work / "flows/evaluate/catalog.yaml").write_text(
        "raw_data: {type: json, filepath: data/raw.json}\n"
    )
    (work / "data/raw.json").write_text('[{"x": 1}]')
    after = "\nprint(run.parameters['batch_size'], run.catalog.get('scores').load())\n"
    out = _script(python, _first_python_example("latent-config") + after, work, fresh_env)
    assert out.splitlines() == ["64 [{'x': 1}]"]


@pytest.mark.slow
def test_latent_observe_alone(
    dist: Path, constraints: Path, tmp_path: Path, fresh_env: dict[str, str]
) -> None:
    python = _venv_with("latent-observe", dist, constraints, tmp_path, fresh_env)
    assert _absent(python, tmp_path, fresh_env) == ["mlflow"]
    work = tmp_path / "work"
    (work / ".latent").mkdir(parents=True)
    out = _script(python, _first_python_example("latent-observe"), work, fresh_env)
    assert "data_pipeline" in out and "clean" in out
    assert (work / ".latent/registry.json").is_file()


FLOW_STAND_INS = """
def call_llm(model_name: str, text: str) -> str:
    return f"{model_name}: {text.upper()}"


def llm_judge(answer: str) -> float:
    return float(len(answer))

"""

TABLE_FLOW = """
from latent.prefect import flow

@flow("tabular", input=["table"])
def tabular(table):
    return len(table)
"""


@pytest.mark.slow
def test_latent_prefect_alone_runs_dict_flows_and_asks_for_pandas(
    dist: Path, constraints: Path, tmp_path: Path, fresh_env: dict[str, str], prefect_server: None
) -> None:
    python = _venv_with("latent-prefect", dist, constraints, tmp_path, fresh_env)
    assert _absent(python, tmp_path, fresh_env) == ["prefect", "mlflow"]  # no pandas, no pyarrow
    latent = str(python.parent / "latent")
    work = _project(tmp_path / "work")
    (work / "flows/evaluate").mkdir(parents=True)
    (work / "flows/evaluate/flow.py").write_text(
        FLOW_STAND_INS + _first_python_example("latent-prefect")
    )
    (work / "flows/evaluate/parameters.yaml").write_text("model_name: tiny\n")
    (work / "config/catalog.yaml").write_text(
        "questions: {type: jsonl, filepath: data/questions.jsonl}\n"
        "table: {type: csv, filepath: data/table.csv}\n"
    )
    (work / "data/questions.jsonl").write_text(
        '{"id": 1, "text": "two plus two?"}\n{"id": 2, "text": "capital of France?"}\n'
    )
    ran = _run(latent, "run", "evaluate", cwd=work, env=fresh_env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "answer" in ran.stdout and "score" in ran.stdout
    (scores,) = (work / "data/evaluate").glob("scores.*")
    assert scores.stat().st_size > 0

    (work / "flows/tabular").mkdir()
    (work / "flows/tabular/flow.py").write_text(TABLE_FLOW)
    (work / "data/table.csv").write_text("a\n1\n")
    failed = _run(latent, "run", "tabular", cwd=work, env=fresh_env)
    assert failed.returncode == 1
    said = " ".join((failed.stdout + failed.stderr).split())
    assert "Dataset 'table'" in said and "pip install 'latent-prefect[pandas]'" in said

    version = _run(python, "-m", "latent", "--version", cwd=work, env=fresh_env)
    assert version.returncode == 0 and version.stdout.startswith("latent-prefect 0.")
