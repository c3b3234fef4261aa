"""Shared fixtures: a fresh MLflow SQLite store per test, and clean process-wide state.

MLflow's state is process-global (tracking URI, tracer provider), so each test gets its own
store and tracking defaults are reset after it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from latent.observe import configure_tracking, set_logger_provider
from latent.registry import TaskRegistry


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LATENT_MLFLOW_ENABLED", raising=False)
    configure_tracking(enabled=False)
    TaskRegistry.clear()
    yield
    configure_tracking(enabled=False)
    set_logger_provider(None)
    TaskRegistry.clear()


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite store: creating one costs seconds, copying it does not."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, template_store: Path) -> str:
    """Tracking on, to a fresh SQLite store of this test's own under tmp_path/.latent."""
    path = tmp_path / ".latent" / "mlflow.db"
    path.parent.mkdir()
    shutil.copyfile(template_store, path)
    uri = f"sqlite:///{path}"
    configure_tracking(tracking_uri=uri, experiment_prefix="test-", environment="dev")
    return uri


@pytest.fixture
def client(tracking_uri: str):  # type: ignore[no-untyped-def]
    """An MLflow client reading back the test's store."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)
