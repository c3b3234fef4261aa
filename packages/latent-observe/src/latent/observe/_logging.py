"""Flow-aware logging: records go to the active flow/task's logger, resolved at call time.

latent-prefect binds the flow and task names (`bind_names`) and may install a provider that
returns Prefect's run logger, so records show in Prefect's UI. Nothing here imports Prefect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from latent.observe._redact import install_log_redaction

LoggerLike = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]
LoggerProvider = Callable[[], LoggerLike | None]

_NAMES: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "latent_observe_names", default=(None, None)
)
_provider: LoggerProvider | None = None
_ROOT_NAME = "latent"


@contextmanager
def bind_names(*, flow: str | None = None, task: str | None = None) -> Iterator[None]:
    """Bind the active flow and task names for this context (and the threads it is copied to).

    Given only `task`, the outer flow is kept; given a `flow`, the task starts empty unless given
    too (a subflow run inside a task is not that task).
    """
    outer_flow, _ = _NAMES.get()
    token = _NAMES.set((flow if flow is not None else outer_flow, task))
    try:
        yield
    finally:
        _NAMES.reset(token)


def current_names() -> tuple[str | None, str | None]:
    """The (flow, task) names bound in this context; (None, None) outside any flow."""
    return _NAMES.get()


def set_logger_provider(provider: LoggerProvider | None) -> None:
    """Install (or remove, with None) the hook that returns the run's logger, e.g. Prefect's.

    The provider returns None when it has no logger for the current context; records then go to
    ``latent.flow.<flow>[.<task>]``. A provider that raises is treated as returning None.
    Installing one also turns on log redaction (`install_log_redaction`): from then on Latent
    forwards records to another system's handlers, which must never see a credential.
    """
    global _provider
    _provider = provider
    if provider is not None:
        install_log_redaction()


class _NamesAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds ``latent_flow`` / ``latent_task`` to every record's `extra`, keeping caller's extra."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def get_flow_logger() -> LoggerLike:
    """The logger of the active flow/task (Prefect's run logger when the hook provides one).

    Outside any flow this is the plain ``latent`` logger. Never raises.
    """
    flow, task = _NAMES.get()
    if flow is None and task is None:
        return logging.getLogger(_ROOT_NAME)
    names = {"latent_flow": flow, "latent_task": task}
    base = _provided_logger() or logging.getLogger(_logger_name(flow, task))
    if type(base) is logging.LoggerAdapter:
        # The stdlib adapter replaces a call's `extra` with its own (bpo-32732); unwrap it so
        # both survive. Subclasses such as Prefect's merge extras themselves and are kept.
        return _NamesAdapter(base.logger, {**(base.extra or {}), **names})
    return _NamesAdapter(base, names)


def _provided_logger() -> LoggerLike | None:
    provider = _provider
    if provider is None:
        return None
    try:
        return provider()
    except Exception:  # the hook must never break user logging
        return None


def _logger_name(flow: str | None, task: str | None) -> str:
    parts = [_ROOT_NAME, "flow", flow or "unknown"]
    if task:
        parts.append(task)
    return ".".join(parts)


class FlowLogger:
    """`logger`: a module-level object that behaves like the active flow/task's logger.

    Each call resolves the target logger at that moment, so one import serves every flow, task
    and thread. `stacklevel` is raised by one so records point at the caller, not at this class.
    """

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **_caller(kwargs))

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **_caller(kwargs))

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **_caller(kwargs))

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **_caller(kwargs))

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **_caller(kwargs))

    def critical(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **_caller(kwargs))

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        try:
            get_flow_logger().log(level, msg, *args, **kwargs)
        except Exception:  # logging must never take a task down
            logging.getLogger(_ROOT_NAME).debug("latent logger failed", exc_info=True)

    def isEnabledFor(self, level: int) -> bool:
        return get_flow_logger().isEnabledFor(level)

    def __repr__(self) -> str:
        return f"<latent logger -> {get_flow_logger()!r}>"


def _caller(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Count the level method (debug/info/...) as one more frame between caller and logging."""
    kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
    return kwargs


logger = FlowLogger()
