"""Point 2: settings from config/latent.toml, env overrides, and their errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from latent.config import ConfigFileError, Project, Settings


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "config" / "latent.toml")
    assert settings.environment == "production"
    assert not settings.is_dev
    assert settings.paths.data_dir == "data"
    assert settings.paths.latent_dir == ".latent"
    assert settings.cache.expiration == timedelta(days=7)
    assert settings.cache.result_storage is None
    assert settings.mlflow.enabled is True
    assert settings.mlflow.tracking_uri is None
    assert settings.mlflow.experiment_prefix == ""
    assert settings.prefect.heartbeat is False
    assert settings.prefect.max_in_flight is None


def test_reads_every_section(make_project: Callable[..., Path]) -> None:
    root = make_project(
        {
            "config/latent.toml": """
            environment = "development"
            [cache]
            expiration = "12h"
            [mlflow]
            enabled = false
            experiment_prefix = "team-"
            [prefect]
            heartbeat = true
            max_in_flight = 4
            """
        }
    )
    settings = Project(root).settings
    assert settings.is_dev
    assert settings.cache.expiration == timedelta(hours=12)
    assert settings.mlflow.enabled is False
    assert settings.mlflow.experiment_prefix == "team-"
    assert settings.prefect.heartbeat is True
    assert settings.prefect.max_in_flight == 4


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3600", timedelta(hours=1)),
        ('"7d"', timedelta(days=7)),
        ('"30m"', timedelta(minutes=30)),
        ('"1d12h"', timedelta(days=1, hours=12)),
        ('"2w"', timedelta(weeks=2)),
        ('"P3D"', timedelta(days=3)),
    ],
)
def test_cache_expiration_formats(
    make_project: Callable[..., Path], raw: str, expected: timedelta
) -> None:
    root = make_project({"config/latent.toml": f"[cache]\nexpiration = {raw}\n"})
    assert Project(root).settings.cache.expiration == expected


def test_bad_expiration_names_key_and_file(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/latent.toml": '[cache]\nexpiration = "soon"\n'})
    with pytest.raises(ConfigFileError) as info:
        Project(root)
    message = str(info.value)
    assert "latent.toml" in message
    assert "cache.expiration" in message


def test_unknown_key_names_key_file_and_close_match(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/latent.toml": '[cache]\nexpiry = "7d"\n'})
    with pytest.raises(ConfigFileError) as info:
        Project(root)
    message = str(info.value)
    assert str(root / "config" / "latent.toml") in message
    assert "cache.expiry: unknown key in [cache]" in message
    assert "Did you mean 'expiration'?" in message


def test_unknown_top_level_key(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/latent.toml": 'enviroment = "dev"\n'})
    with pytest.raises(ConfigFileError, match="enviroment: unknown key in the top level") as info:
        Project(root)
    assert "Did you mean 'environment'?" in str(info.value)


def test_bad_environment_value(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/latent.toml": 'environment = "staging"\n'})
    with pytest.raises(ConfigFileError, match="environment") as info:
        Project(root)
    assert "latent.toml" in str(info.value)


def test_malformed_toml_names_file_and_line(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/latent.toml": 'environment = "dev"\n[cache\nx = 1\n'})
    with pytest.raises(ConfigFileError) as info:
        Project(root)
    message = str(info.value)
    assert str(root / "config" / "latent.toml") in message
    assert "invalid TOML" in message
    assert "line 2" in message


def test_environment_variables_override_the_file(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project({"config/latent.toml": 'environment = "dev"\n'})
    monkeypatch.setenv("LATENT_ENVIRONMENT", "production")
    monkeypatch.setenv("LATENT_MLFLOW_ENABLED", "false")
    settings = Project(root).settings
    assert settings.environment == "production"
    assert settings.mlflow.enabled is False


def test_environment_variable_change_is_seen_by_discover(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project({"config/latent.toml": 'environment = "production"\n'})
    assert not Project.discover(cwd=root).settings.is_dev
    monkeypatch.setenv("LATENT_ENVIRONMENT", "dev")
    assert Project.discover(cwd=root).settings.is_dev


@pytest.mark.parametrize(
    ("name", "value"), [("LATENT_ENVIRONMENT", "staging"), ("LATENT_MLFLOW_ENABLED", "maybe")]
)
def test_invalid_environment_variables_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigFileError, match=name):
        Project(tmp_path)


def test_observe_secret_patterns_are_read_and_checked(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/latent.toml": '[observe]\nsecret_patterns = ["ACME-\\\\w+"]\n'})
    assert Project(root).settings.observe.secret_patterns == ["ACME-\\w+"]
    assert Settings.load(root / "missing.toml").observe.secret_patterns == []
    bad = make_project({"config/latent.toml": '[observe]\nsecret_patterns = ["(open"]\n'})
    with pytest.raises(ConfigFileError) as info:
        Project(bad).settings  # noqa: B018
    assert "observe.secret_patterns" in str(info.value) and "'(open'" in str(info.value)
