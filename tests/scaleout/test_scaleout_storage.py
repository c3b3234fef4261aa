"""Issue 6, point 10: catalog datasets and task-cache results on fsspec URLs, not the local disk.

Two filesystems stand in for S3/GCS: `memory://` (in-process) and `file://` on a directory
outside the project root (as a mounted share would be). The project sets only
`[cache] result_storage` in latent.toml and URL filepaths in its catalog.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import fsspec
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import load

pytestmark = pytest.mark.slow

SHARED_FLOW = """
from pathlib import Path

import pandas as pd

from latent.prefect import flow, task

LOG = Path(__file__).resolve().parents[2] / "calls.log"


def _called(name: str) -> None:
    with LOG.open("a") as fh:
        fh.write(name + "\\n")


@task("double", input="raw", output="doubled")
def double(raw: pd.DataFrame) -> pd.DataFrame:
    _called("double")
    return raw.assign(x=raw["x"] * 2)


@task("square")
def square(x: int) -> int:
    _called("square")
    return x * x


@flow("shared")
def shared() -> list[int]:
    doubled = double()
    return [f.result() for f in square.map(x=[int(v) for v in doubled["x"]])]
"""


def _memory(tmp_path: Path) -> str:
    return f"memory://latent-tests/{uuid.uuid4().hex}"


def _file_elsewhere(tmp_path: Path) -> str:
    return (tmp_path / "mounted-share").as_uri()  # file:///..., outside the project root


@pytest.fixture(params=[_memory, _file_elsewhere], ids=["memory", "file"])
def shared_project(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    quiet_project_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, str]:
    """A project whose datasets and task results live under one fsspec URL."""
    base: str = request.param(tmp_path)
    root = tmp_path / "proj"
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text(
        f'[cache]\nresult_storage = "{base}/results"\n\n[mlflow]\nenabled = false\n'
    )
    flow_dir = root / "flows" / "shared"
    flow_dir.mkdir(parents=True)
    (flow_dir / "flow.py").write_text(SHARED_FLOW)
    (flow_dir / "catalog.yaml").write_text(
        f"raw:\n  type: csv\n  filepath: {base}/data/raw.csv\n"
        f"doubled:\n  type: csv\n  filepath: {base}/data/doubled.csv\n"
    )
    with fsspec.open(f"{base}/data/raw.csv", "w") as fh:
        fh.write("x\n1\n2\n3\n")
    monkeypatch.chdir(root)
    return root, base


def _calls(root: Path) -> list[str]:
    log = root / "calls.log"
    return log.read_text().split() if log.exists() else []


def _ls(url: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(url)
    return [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]


def test_datasets_and_task_results_live_on_the_url(shared_project: tuple[Path, str]) -> None:
    root, base = shared_project
    flow = load(root, "shared")

    assert flow() == [4, 16, 36]

    assert sorted(_calls(root)) == ["double", "square", "square", "square"]
    with fsspec.open(f"{base}/data/doubled.csv", "r") as fh:
        assert fh.read().split() == ["x", "2", "4", "6"]
    assert len(_ls(f"{base}/results")) >= 3  # one record per square() call at least
    assert not (root / "data").exists()
    assert not (root / ".latent" / "results").exists()


def test_row_level_cache_on_the_url_is_hit_by_the_next_run(
    shared_project: tuple[Path, str],
) -> None:
    root, _ = shared_project
    flow = load(root, "shared")
    flow()
    before = _calls(root).count("square")

    assert flow() == [4, 16, 36]
    assert _calls(root).count("square") == before  # all three answered from the URL


def test_file_based_cache_on_a_url_input_is_hit_by_the_next_run(
    shared_project: tuple[Path, str],
) -> None:
    root, _ = shared_project
    flow = load(root, "shared")
    flow()
    flow()
    assert _calls(root).count("double") == 1


PARAM_FLOW = """
from latent.prefect import flow, params, task


@task("scale")
def scale(x: int) -> int:
    return x * params.factor


@flow("scaled")
def scaled() -> list[int]:
    return [f.result() for f in scale.map(x=[1, 2, 3])]
"""


def _param_project(root: Path, results: str, factor: int) -> Path:
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text(
        f'[cache]\nresult_storage = "{results}"\n\n[mlflow]\nenabled = false\n'
    )
    (root / "flows" / "scaled").mkdir(parents=True)
    (root / "flows" / "scaled" / "flow.py").write_text(PARAM_FLOW)
    (root / "flows" / "scaled" / "parameters.yaml").write_text(f"factor: {factor}\n")
    return root


def test_shared_results_respect_params_changed_on_another_machine(
    tmp_path: Path, quiet_project_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = f"memory://latent-tests/{uuid.uuid4().hex}/results"
    first = _param_project(tmp_path / "machine-a", results, factor=2)
    second = _param_project(tmp_path / "machine-b", results, factor=3)
    monkeypatch.chdir(first)
    assert load(first, "scaled")() == [2, 4, 6]
    monkeypatch.chdir(second)
    assert load(second, "scaled")() == [3, 6, 9]
