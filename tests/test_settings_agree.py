"""One set of rules for Latent's settings, whichever package reads them (issue 10.4).

latent-config reads ``config/latent.toml`` and the environment for latent-prefect; latent-cache
(``LATENT_ENVIRONMENT``, ``environment``, where checkpoints live) and latent-observe
(``LATENT_MLFLOW_ENABLED``) read their part themselves when used alone. They may not import each
other, so each keeps its copy of the rules: these tests feed the same inputs to every package and
assert the same answers (a value, or an error naming the variable or file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from latent.cache import _environment
from latent.config import ConfigFileError, Project
from latent.observe import SettingsError, configure_tracking
from latent.observe._settings import tracking_enabled

BOOLEANS = [
    None,
    "",
    "  ",
    "1",
    "true",
    "TRUE",
    " Yes ",
    "on",
    "0",
    "false",
    "No",
    "OFF",
    "maybe",
    "2",
]
ENVIRONMENTS = [None, "", " ", "dev", "DEV", " development ", "production", "Production", "staging"]
FILE_ENVIRONMENTS = ["dev", "Dev", "development", "production", "staging", ""]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LATENT_ENVIRONMENT", "LATENT_MLFLOW_ENABLED", "LATENT_PROJECT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_environment, "_configured_environment", None)
    monkeypatch.setattr(_environment, "_configured_directory", None)
    _environment._found.clear()
    configure_tracking()  # latent-observe alone: nothing decided for it
    yield
    _environment._found.clear()
    configure_tracking()


def _outcome(read: Callable[[], Any], name: str) -> Any:
    """The value read, or ("error", whether it names `name`) for an error of either package."""
    try:
        return read()
    except (ConfigFileError, SettingsError, ValueError) as exc:
        return ("error", name in str(exc))


def _set(monkeypatch: pytest.MonkeyPatch, name: str, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)


def _project(root: Path, toml: str) -> Path:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "latent.toml").write_text(toml)
    return root


@pytest.mark.parametrize("value", BOOLEANS)
def test_latent_mlflow_enabled_means_the_same_to_config_and_observe(
    value: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set(monkeypatch, "LATENT_MLFLOW_ENABLED", value)
    by_config = _outcome(lambda: Project(tmp_path).settings.mlflow.enabled, "LATENT_MLFLOW_ENABLED")
    by_observe = _outcome(tracking_enabled, "LATENT_MLFLOW_ENABLED")
    assert by_config == by_observe
    expected = {None: True, "maybe": ("error", True), "2": ("error", True)}
    if value in expected or not (value or "").strip():
        assert by_config == expected.get(value, True)  # unset or empty: the default (on)
    else:
        assert by_config is (value.strip().lower() in ("1", "true", "yes", "on"))


@pytest.mark.parametrize("variable", ENVIRONMENTS)
@pytest.mark.parametrize("in_file", [None, "dev", "production"])
def test_latent_environment_means_the_same_to_config_and_cache(
    variable: str | None, in_file: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "proj", f'environment = "{in_file}"\n' if in_file else "")
    (root / "flows" / "x").mkdir(parents=True)
    monkeypatch.chdir(root / "flows" / "x")  # found upwards by both
    _set(monkeypatch, "LATENT_ENVIRONMENT", variable)
    by_config = _outcome(lambda: Project.discover().settings.environment, "LATENT_ENVIRONMENT")
    by_cache = _outcome(_environment.environment, "LATENT_ENVIRONMENT")
    assert by_config == by_cache
    if variable == "staging":
        assert by_config == ("error", True)


@pytest.mark.parametrize("in_file", FILE_ENVIRONMENTS)
def test_environment_in_latent_toml_means_the_same_to_config_and_cache(
    in_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path, f'environment = "{in_file}"\n')
    monkeypatch.chdir(root)
    toml = str(root / "config" / "latent.toml")
    by_config = _outcome(lambda: Project.discover().settings.environment, toml)
    by_cache = _outcome(_environment.environment, toml)
    assert by_config == by_cache
    if in_file in ("staging", ""):
        assert by_config == ("error", True)  # an error naming the file


def test_latent_project_root_and_latent_dir_are_honoured_by_config_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The working directory is another project; LATENT_PROJECT_ROOT names the one to use."""
    here = _project(tmp_path / "here", 'environment = "production"\n')
    there = _project(tmp_path / "there", 'environment = "dev"\n[paths]\nlatent_dir = "state"\n')
    monkeypatch.chdir(here)
    monkeypatch.setenv("LATENT_PROJECT_ROOT", str(there))
    project = Project.discover()
    assert project.root == there
    assert _environment.environment() == project.settings.environment == "dev"
    assert _environment.checkpoint_directory() == str(project.cache_dir)
    monkeypatch.delenv("LATENT_PROJECT_ROOT")
    assert _environment.checkpoint_directory() == str(Project.discover().cache_dir)
