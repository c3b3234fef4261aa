"""What an evaluation produced, into the current flow's MLflow run: metrics, tables, files,
datasets. Callable from any task, thread, coroutine or worker process of a flow.

Everything is handed to the run (`FlowRunHandle.submit`), so nothing here waits for MLflow;
outside a recorded flow run each function is a no-op that says so once in the log.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from latent.observe._settings import current_settings, emit_warning
from latent.observe._summary import summarize
from latent.observe._tracking import FlowRunHandle, current_run, numeric_metrics

_log = logging.getLogger("latent.observe")
_said_no_run: set[str] = set()


def _run_or_say(what: str) -> FlowRunHandle | None:
    run = current_run()
    if run is None and what not in _said_no_run:
        _said_no_run.add(what)
        _log.info(f"latent.observe.{what}: no recorded flow run here; nothing logged")
    return run


def log_metric(key: str, value: float, *, step: int | None = None) -> None:
    """Log one metric to the current flow's run (`step=None`: 0, 1, 2... per key)."""
    log_metrics({key: value}, step=step)


def log_metrics(metrics: Mapping[str, float], *, step: int | None = None) -> None:
    """Log several metrics to the current flow's run; non-finite and non-numeric values raise.

    Buffered and sent in batches with the task metrics (at the latest when the flow ends).
    """
    values: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {key!r} is {number}; MLflow stores finite numbers only")
        values[str(key)] = number
    run = _run_or_say("log_metrics")
    if run is not None and values:
        run.log_metrics(values, step)


def log_table(data: Any, name: str) -> None:
    """Log a DataFrame, a list of records (dicts) or a dict of columns as an MLflow table.

    Shown in MLflow's run page (Artifacts) and in the evaluation view as ``<name>.json``.
    At most ``max_table_rows`` rows (10,000 by default, `configure_tracking`) are kept; the tag
    ``latent.table.<name>`` says how many of how many.
    """
    run = _run_or_say("log_table")
    if run is None:
        return
    limit = current_settings().max_table_rows
    table, total = _bounded_table(data, limit)
    artifact = name if name.endswith(".json") else f"{name}.json"
    kept = len(table)
    note = f"{kept} rows" if kept == total else f"first {kept} of {total} rows"

    def send(backend: Any, run_id: str) -> None:
        backend.log_table(run_id, table, artifact)
        backend.set_tags(run_id, {f"latent.table.{name}": note})

    run.submit(f"log table '{name}'", send)


def _bounded_table(data: Any, limit: int) -> tuple[Any, int]:
    """A copy of at most `limit` rows (the caller may change `data` after this returns)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Mapping):
        frame = pd.DataFrame(dict(data))
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes):
        frame = pd.DataFrame(list(data))
    else:
        raise TypeError(
            f"log_table takes a DataFrame, a list of dicts or a dict of columns, "
            f"got {type(data).__name__}"
        )
    total = len(frame)
    bounded = frame.head(limit).copy()
    bounded.columns = [str(column) for column in bounded.columns]
    return bounded.reset_index(drop=True), total


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Copy a file or directory into the current flow run's artifacts (under `artifact_path`)."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"log_artifact: {source} does not exist")
    run = _run_or_say("log_artifact")
    if run is None:
        return
    location = str(source.resolve())
    run.submit(
        f"log artifact {source}",
        lambda backend, run_id: backend.log_artifact(run_id, location, artifact_path),
    )


def log_dataset(
    name: str,
    source: str,
    digest: str,
    *,
    context: str = "input",
    source_type: str | None = None,
    schema: Mapping[str, Any] | None = None,
    rows: int | None = None,
) -> None:
    """Record that the current flow run read (`context="input"`) or wrote (``"output"``) a
    dataset: its name, where it lives, and its content digest, in MLflow's run inputs.

    `schema` (column -> type) and `rows` are shown with it when given.
    """
    run = _run_or_say("log_dataset")
    if run is None:
        return
    import json

    kind = source_type or ("local" if "://" not in source or source.startswith("file://") else "")
    kind = kind or source.split("://", 1)[0]
    schema_text = json.dumps({"columns": dict(schema)}, default=str) if schema else None
    profile = json.dumps({"num_rows": rows}) if rows is not None else None
    source_text = json.dumps({"uri": source})

    def send(backend: Any, run_id: str) -> None:
        backend.log_dataset(
            run_id,
            name=name,
            digest=digest[:36],
            source=source_text,
            source_type=kind,
            context=context,
            schema=schema_text,
            profile=profile,
        )

    run.submit(f"log dataset '{name}'", send)


def log_outputs(outputs: Any, *, name: str = "output") -> None:
    """What a flow returned, on its run: the root span's outputs (a bounded summary), numeric
    summaries as metrics (a dict of numbers, nested dicts as ``a.b``, a one-row DataFrame) and
    each multi-row DataFrame as a table named after its key (`name` for a bare frame)."""
    run = current_run()
    if run is None:
        return
    try:
        run.set_outputs(summarize(outputs))
        metrics = numeric_metrics(outputs)
        if metrics:
            run.log_metrics(metrics, 0)
        for table, frame in _frames(outputs, name):
            log_table(frame, table)
    except Exception as exc:  # a value we cannot read must not fail the flow that returned it
        emit_warning(
            f"flow '{run.flow_name}': its return value could not be recorded in MLflow "
            f"({type(exc).__name__}: {exc}); the flow's result is unaffected"
        )


def _frames(value: Any, name: str) -> list[tuple[str, Any]]:
    if _is_frame(value):
        return [(name, value)] if len(value) > 1 else []
    if isinstance(value, Mapping):
        return [
            (str(key), item) for key, item in value.items() if _is_frame(item) and len(item) > 1
        ]
    return []


def _is_frame(value: Any) -> bool:
    cls = type(value)
    return cls.__module__.startswith("pandas") and cls.__name__ == "DataFrame"
