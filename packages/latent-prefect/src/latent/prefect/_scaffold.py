"""`latent new flow <name>`: the three files of a new flow, ready to run."""

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
