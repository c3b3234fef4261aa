"""latent.observe: what a user looks at to understand a run.

Flow-aware logging, MLflow runs / spans / metrics that degrade to one warning when MLflow is
missing or unreachable, bounded summaries of values, and `TaskExecutionError`. It knows nothing
of Prefect: latent-prefect feeds it names and values through these functions.
"""

from latent.observe._logging import (
    FlowLogger,
    bind_names,
    current_names,
    get_flow_logger,
    logger,
    set_logger_provider,
)
from latent.observe._redact import configure_redaction, redact_text
from latent.observe._remote import TraceLink, continue_trace, trace_link
from latent.observe._results import (
    log_artifact,
    log_dataset,
    log_metric,
    log_metrics,
    log_outputs,
    log_table,
)
from latent.observe._settings import (
    TrackingSettings,
    configure_tracking,
    stable_tracking_env,
    tracking_for,
    tracking_warnings,
)
from latent.observe._shared import share_writers, shared_writers, stop_shared_writers
from latent.observe._spans import (
    CACHED_SPANS_PER_MAP,
    SPAN_TYPES,
    SpanHandle,
    cached_rows,
    cached_span,
    record_span,
    row_span_name,
    span,
    task_attributes,
    token_usage,
    validate_span_type,
)
from latent.observe._summary import redact, summarize
from latent.observe._tracking import (
    FlowRunHandle,
    current_run,
    defer_run_end,
    flatten_params,
    flow_run,
    mark_runs_failed,
    record_cache_hits,
    record_task,
    runs_end_after,
    wait_for_tracking,
    warm_up_tracking,
)
from latent.observe.errors import SettingsError, TaskExecutionError

__version__ = "0.1.0"

__all__ = [
    "CACHED_SPANS_PER_MAP",
    "SPAN_TYPES",
    "FlowLogger",
    "FlowRunHandle",
    "SettingsError",
    "SpanHandle",
    "TaskExecutionError",
    "TraceLink",
    "TrackingSettings",
    "bind_names",
    "cached_rows",
    "cached_span",
    "configure_redaction",
    "configure_tracking",
    "continue_trace",
    "current_names",
    "current_run",
    "defer_run_end",
    "flatten_params",
    "flow_run",
    "get_flow_logger",
    "log_artifact",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_outputs",
    "log_table",
    "logger",
    "mark_runs_failed",
    "record_cache_hits",
    "record_span",
    "record_task",
    "redact",
    "redact_text",
    "row_span_name",
    "runs_end_after",
    "set_logger_provider",
    "share_writers",
    "shared_writers",
    "span",
    "stable_tracking_env",
    "stop_shared_writers",
    "summarize",
    "task_attributes",
    "token_usage",
    "trace_link",
    "tracking_for",
    "tracking_warnings",
    "validate_span_type",
    "wait_for_tracking",
    "warm_up_tracking",
]
