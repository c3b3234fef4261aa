"""Point 1 (project discovery) and the project's locations."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from latent.config import Project


def test_discovers_nearest_configured_ancestor_of_cwd(make_project: Callable[..., Path]) -> None:
    root = make_project({"flows/a/parameters.yaml": "x: 1\n"})
    project = Project.discover(cwd=root / "flows" / "a")
    assert project.root == root.resolve()
    assert project.is_configured


def test_falls_back_to_the_source_files_project(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_project({"flows/a/flow.py": "# flow\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = Project.discover(cwd=elsewhere, source_file=root / "flows" / "a" / "flow.py")
    assert project.root == root.resolve()


def test_cwd_wins_over_source_file(make_project: Callable[..., Path]) -> None:
    first = make_project(name="first")
    second = make_project({"flows/a/flow.py": ""}, name="second")
    project = Project.discover(cwd=first, source_file=second / "flows" / "a" / "flow.py")
    assert project.root == first.resolve()


def test_unconfigured_directory_is_its_own_root(tmp_path: Path) -> None:
    project = Project.discover(cwd=tmp_path)
    assert project.root == tmp_path.resolve()
    assert not project.is_configured
    assert project.settings.environment == "production"


def test_env_root_overrides_discovery(
    make_project: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(name="chosen")
    other = make_project(name="other")
    monkeypatch.setenv("LATENT_PROJECT_ROOT", str(root))
    assert Project.discover(cwd=other).root == root.resolve()


def test_default_cwd_is_the_process_cwd(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project()
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    assert Project.discover().root == root.resolve()


def test_discover_is_cached_and_rereads_a_changed_latent_toml(
    make_project: Callable[..., Path],
) -> None:
    root = make_project({"config/latent.toml": 'environment = "dev"\n'})
    first = Project.discover(cwd=root)
    assert Project.discover(cwd=root) is first
    toml = root / "config" / "latent.toml"
    toml.write_text('environment = "production"\n[paths]\ndata_dir = "datasets"\n')
    os.utime(toml, ns=(1, 1))  # a different mtime whatever the clock's granularity
    second = Project.discover(cwd=root)
    assert second is not first
    assert second.settings.environment == "production"
    assert second.data_dir == root.resolve() / "datasets"


def test_default_locations(make_project: Callable[..., Path]) -> None:
    root = make_project().resolve()
    project = Project(root)
    assert project.latent_dir == root / ".latent"
    assert project.data_dir == root / "data"
    assert project.cache_dir == root / ".latent" / "cache"
    assert project.results_storage == str(root / ".latent" / "results")
    assert project.tracking_uri == f"sqlite:///{root}/.latent/mlflow.db"
    assert project.tracking_uri.startswith("sqlite:////")


def test_configured_locations(make_project: Callable[..., Path], tmp_path: Path) -> None:
    root = make_project(
        {
            "config/latent.toml": f"""
            [paths]
            data_dir = "store/data"
            latent_dir = "{tmp_path / "state"}"
            [cache]
            result_storage = "s3://bucket/results"
            [mlflow]
            tracking_uri = "http://mlflow:5000"
            """
        }
    ).resolve()
    project = Project(root)
    assert project.data_dir == root / "store" / "data"
    assert project.latent_dir == tmp_path / "state"
    assert project.cache_dir == tmp_path / "state" / "cache"
    assert project.results_storage == "s3://bucket/results"
    assert project.tracking_uri == "http://mlflow:5000"


def test_relative_result_storage_is_under_the_root(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/latent.toml": '[cache]\nresult_storage = "res"\n'}).resolve()
    assert Project(root).results_storage == str(root / "res")


def test_mlflow_tracking_uri_env_wins(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project({"config/latent.toml": '[mlflow]\ntracking_uri = "http://file"\n'})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env")
    assert Project(root).tracking_uri == "http://env"


def test_flow_names_lists_flow_directories_only(make_project: Callable[..., Path]) -> None:
    root = make_project(
        {
            "flows/b/parameters.yaml": "",
            "flows/a/flow.py": "",
            "flows/__pycache__/x.pyc": "",
            "flows/.hidden/x": "",
            "flows/README.md": "",
        }
    )
    project = Project(root)
    assert project.flow_names() == ["a", "b"]
    assert project.flow_dir("a") == root.resolve() / "flows" / "a"
    assert project.has_flow("a") and not project.has_flow("zzz")


def test_unconfigured_project_still_lists_flows(
    tmp_path: Path, write_tree: Callable[..., Path]
) -> None:
    write_tree(tmp_path, {"notes.txt": "hi", "flows/a/parameters.yaml": "x: 1\n"})
    project = Project(tmp_path)
    assert not project.is_configured
    assert project.flow_names() == ["a"]
