"""What `latent run` shows at the default log level, and what only `-v` shows.

Prefect logs one "Finished in state Completed()" line per task run (430 for a 430-row map), a
"Beginning flow run" / "View at" / "Finished in state" triple per flow run, and background
services log tracebacks while the process shuts down (an event consumer cancelled, an event
batch that could not be flushed to a server that stopped); MLflow's INFO lines are quiet by
default everywhere (`_startup.QUIET_DEFAULTS`). The summary table, its "Prefect UI:" line and
the progress bar already say what ran; these records stay in Prefect's UI, out of the terminal.
What the user's code logs, warnings, errors and retries are always shown.

A flow file run as a script (`python flows/x/flow.py`) has no summary: Prefect's lines are its
only account of the run, so they stay there.
"""

from __future__ import annotations

import logging

_verbose = [False]

#: Loggers of Prefect's background services: their shutdown noise is shown with -v only.
_SERVICE_LOGGERS = (
    "prefect.events.clients",
    "prefect._internal.concurrency",
    "prefect.client",
    "prefect.task_runner",
    "EventsWorker",  # "Still processing items: 8 items remaining..." while it flushes at exit
    "APILogWorker",
)
#: Prefect's per-flow-run lines that the summary and its "Prefect UI:" line replace.
_FLOW_RUN_CHATTER = ("Beginning flow run", "Beginning subflow run", "View at ", "Finished in state")


def configure(*, verbose: bool) -> None:
    """Choose what the terminal shows for this run (call before the flows run)."""
    _verbose[0] = verbose
    if verbose:
        from latent.prefect._startup import verbose_logging

        verbose_logging()


def install() -> None:
    """Attach the filters to Prefect's console handlers (after Prefect set up its logging)."""
    if _verbose[0]:
        return
    console_filter = _QuietConsole()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", *_SERVICE_LOGGERS):
        for handler in logging.getLogger(name).handlers:
            if type(handler).__name__ != "APILogHandler" and console_filter not in handler.filters:
                handler.addFilter(console_filter)


class _QuietConsole(logging.Filter):
    """Drops per-task-run state lines and shutdown tracebacks from the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(_SERVICE_LOGGERS) or _is_explained_error(record):
            return False
        if "'remember_flow_run'" in record.getMessage():
            return False  # `latent run`'s own hook (it notes the flow run for Ctrl-C)
        if record.name == "prefect.task_runs":  # the summary says how every task ended
            return not record.getMessage().startswith("Finished in state")
        # the summary says how the flow ended (once, with the error, when it failed)
        return not (
            record.name == "prefect.flow_runs"
            and record.levelno <= logging.INFO
            and record.getMessage().startswith(_FLOW_RUN_CHATTER)
        )


def _is_explained_error(record: logging.LogRecord) -> bool:
    """An error whose message says everything (what, where, how to fix): a configuration or
    dataset mistake, a cache directory that cannot be written. `latent run` prints it once;
    Prefect would log it again, with a traceback, per task and per flow."""
    from latent.cache.errors import CacheWriteError
    from latent.config import LatentConfigError
    from latent.prefect.errors import TaskNotSelectedError

    exc = record.exc_info[1] if record.exc_info else None
    while exc is not None:
        if isinstance(exc, LatentConfigError | CacheWriteError | TaskNotSelectedError):
            return True
        exc = exc.__cause__
    return False
