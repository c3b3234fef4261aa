"""Errors raised by latent-prefect itself.

Errors of the other packages (configuration, catalog, hashing, task failures) are raised by those
packages and re-exported where users need them; this module holds only what composing them adds.
"""

from __future__ import annotations


class LatentPrefectError(Exception):
    """Base class of the errors raised by latent-prefect."""


class FlowDefinitionError(LatentPrefectError, ValueError):
    """Raised at decoration time when `@flow` / `@task` arguments cannot work.

    Failing when the module is imported, not an hour into a run, is the point.
    """


class FlowOutputError(LatentPrefectError, ValueError):
    """Raised when a flow's return value does not match its declared `output=[...]`."""


class FlowImportError(LatentPrefectError, RuntimeError):
    """Raised by the command line when `flows/<name>/flow.py` has no matching `@flow`."""


class PrefectServerError(LatentPrefectError, RuntimeError):
    """Raised when the Prefect server a run needs cannot be started or reached.

    The message names the URL and the server's home, what was tried, and the setting that
    fixes it (``PREFECT_API_URL``, ``[prefect] server`` in latent.toml).
    """


class TaskSelectionError(LatentPrefectError, ValueError):
    """Raised by `latent run` before anything runs when `--only/--from/--to` names a task the
    flows do not have (with the close matches), or selects no task at all."""


class TaskNotSelectedError(LatentPrefectError, RuntimeError):
    """Raised when a task outside a run's selection (`--only/--from/--to`) has no cached result
    to answer with. The message names the task, the selection and the option that adds it.

    Never retried, and printed once without a traceback: the message says everything.
    """
