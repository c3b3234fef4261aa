"""`latent init` and `latent new flow <name>`: a project and its flows, ready to run."""

from __future__ import annotations

import keyword
from pathlib import Path

_FLOW = '''"""The {name} flow."""

from pydantic import BaseModel

from latent.prefect import flow, logger, params, task


class {model}(BaseModel):
    """Typed parameters of this flow (flows/{name}/parameters.yaml)."""

    greeting: str = "hello"


@task("say")
def say(greeting: str) -> str:
    logger.info(greeting)
    return greeting


@flow("{name}", config_schema={model})
def {name}() -> str:
    return say(params.greeting)


if __name__ == "__main__":  # python flows/{name}/flow.py runs it like `latent run {name}`
    {name}()
'''

_PARAMETERS = """\
# Parameters of this flow, merged over config/global.yaml (values here win).
greeting: hello
"""

_CATALOG = """\
# Datasets of this flow (config/catalog.yaml holds the shared ones), e.g.
# results:
#   type: parquet
#   filepath: data/{name}/results.parquet
"""


def new_flow(root: Path, name: str) -> list[Path]:
    """Create flows/<name>/{flow.py,parameters.yaml,catalog.yaml}; refuse to overwrite."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"'{name}' is not a valid flow name: use a Python identifier, e.g. my_flow"
        )
    directory = root / "flows" / name
    if directory.exists():
        raise ValueError(f"{directory} already exists: choose another name or edit it")
    directory.mkdir(parents=True)
    model = "".join(part.capitalize() for part in name.split("_")) + "Config"
    files = {
        "flow.py": _FLOW.format(name=name, model=model),
        "parameters.yaml": _PARAMETERS,
        "catalog.yaml": _CATALOG.format(name=name),
    }
    created = []
    for filename, text in files.items():
        path = directory / filename
        path.write_text(text)
        created.append(path)
    return created


_LATENT_TOML = """\
# Latent settings of this project: the docs' "Concepts" page lists every key.
# "dev" turns @checkpoint on, so an interrupted loop resumes where it stopped;
# `latent run --env production ...` overrides it for one run.
environment = "dev"

[cache]
expiration = "7d"

[mlflow]
# tracking_uri defaults to sqlite:///.latent/mlflow.db; MLFLOW_TRACKING_URI wins when set.
# enabled = false

# Run tasks in worker processes instead of threads (see the scale-out how-to):
# [prefect.task_runner]
# type = "processes"   # or "dask" / "ray" with latent-prefect[dask] / latent-prefect[ray]
"""

_GLOBAL_YAML = """\
# Parameters every flow sees; a flow's own flows/<flow>/parameters.yaml wins.
# Override one for a run: latent run <flow> --param key=value
# seed: 42
"""

_CATALOG_YAML = """\
# Datasets shared by every flow, loaded and saved by name, e.g.
# questions:
#   type: jsonl            # or csv / parquet with latent-prefect[pandas]
#   filepath: data/questions.jsonl
"""

_GITIGNORE_LINE = ".latent/"


def new_project(root: Path, first_flow: str = "hello") -> list[Path]:
    """Lay out a project in `root` (created if missing): config/, a first flow, data/.

    Refuses when `root` already holds config/latent.toml; an existing .gitignore is extended,
    never replaced.
    """
    settings = root / "config" / "latent.toml"
    if settings.exists():
        raise ValueError(f"{settings} already exists: {root} is a Latent project already")
    if (root / "flows" / first_flow).exists():
        raise ValueError(f"{root / 'flows' / first_flow} already exists: choose another --flow")
    (root / "config").mkdir(parents=True, exist_ok=True)
    created = []
    for path, text in (
        (settings, _LATENT_TOML),
        (root / "config" / "global.yaml", _GLOBAL_YAML),
        (root / "config" / "catalog.yaml", _CATALOG_YAML),
    ):
        if not path.exists():
            path.write_text(text)
            created.append(path)
    (root / "data").mkdir(exist_ok=True)
    created.append(_ignore_latent_dir(root / ".gitignore"))
    return created + new_flow(root, first_flow)


def _ignore_latent_dir(gitignore: Path) -> Path:
    """Make `gitignore` list `.latent/` (caches, results, MLflow DB are never committed)."""
    lines = gitignore.read_text().splitlines() if gitignore.exists() else []
    if _GITIGNORE_LINE not in {line.strip() for line in lines}:
        lines.append(_GITIGNORE_LINE)
        gitignore.write_text("\n".join(lines) + "\n")
    return gitignore
