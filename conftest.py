"""Session-wide test environment, set before any test imports Prefect.

One PREFECT_HOME per test session: creating Prefect's SQLite database costs seconds, so every
test shares it; each test gets its own project directory (and so its own caches and results).
"""

from __future__ import annotations

import os
import tempfile


def pytest_configure(config: object) -> None:
    if "PREFECT_HOME" not in os.environ or not os.environ.get("LATENT_TESTS_KEEP_PREFECT_HOME"):
        os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="latent-tests-prefect-")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a fresh database on a busy 2-core machine can take longer than the 20 s default
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.pop("LATENT_PROJECT_ROOT", None)
    os.environ.pop("LATENT_ENVIRONMENT", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
