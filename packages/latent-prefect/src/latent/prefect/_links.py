"""Where a run can be looked at, and the links between its two records.

A flow run is recorded twice: by Prefect (states, task runs, logs) and by MLflow (params,
metrics, tables, traces). The MLflow run is tagged with the Prefect flow run's id and UI URL;
the Prefect flow run gets a markdown artifact linking the MLflow run and trace, with the merged
parameters the flow ran with (Prefect's Parameters tab shows only the function's arguments).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latent.config import Project
from latent.observe import FlowRunHandle, flatten_params, logger, stable_tracking_env

#: `latent ui` records the MLflow UI it started here, under the project's `.latent/`.
UI_STATE_FILE = "mlflow-ui.json"
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"
_MAX_PARAM_ROWS = 200
_recent: list[dict[str, str]] = []  # the flow runs of this process, for `latent run`'s hint


def recent_runs() -> list[dict[str, str]]:
    """Flow runs of this process, oldest first: flow, mlflow_run_url, prefect_url (if known)."""
    return list(_recent)


def mlflow_ui_url(project: Project) -> str:
    """The MLflow UI of the project's store: its tracking server, else what `latent ui` ran."""
    with stable_tracking_env():  # not the store another project's flow points MLflow at now
        uri = project.tracking_uri
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    state = read_ui_state(project)
    return str(state.get("url") or DEFAULT_MLFLOW_UI) if state else DEFAULT_MLFLOW_UI


def read_ui_state(project: Project) -> dict[str, Any] | None:
    path = project.latent_dir / UI_STATE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_ui_state(project: Project, state: Mapping[str, Any]) -> Path:
    path = project.latent_dir / UI_STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(dict(state), indent=2))
    os.replace(temporary, path)
    return path


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_trace_url(base: str, experiment_id: str, trace_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/traces?traceId={trace_id}"


def prefect_ui_base() -> str | None:
    """The Prefect UI's address (`PREFECT_UI_URL`, else derived from `PREFECT_API_URL`)."""
    from latent.prefect._startup import ui_url_of_flow_run

    page = ui_url_of_flow_run("-")  # the managed server's too, when `latent run` chose it
    return page.removesuffix("/runs/flow-run/-") if page else None


def prefect_tags() -> dict[str, str]:
    """MLflow tags naming the Prefect flow run this code runs in (id, name, UI URL)."""
    try:
        return _prefect_tags()
    except Exception as exc:  # observability never breaks a flow
        logger.debug(f"No Prefect tags for the MLflow run: {exc}")
        return {}


def _prefect_tags() -> dict[str, str]:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    flow_run = getattr(ctx, "flow_run", None)
    if flow_run is None:
        return {}
    from latent.prefect._startup import ui_url_of_flow_run

    tags = {"prefect.flow_run.id": str(flow_run.id), "prefect.flow_run.name": flow_run.name}
    url = ui_url_of_flow_run(flow_run.id)
    if url:
        tags["prefect.flow_run.url"] = url
    return tags


def publish_run_links(
    project: Project, flow_name: str, handle: FlowRunHandle, parameters: Mapping[str, Any]
) -> None:
    """The Prefect flow run's markdown artifact: MLflow run and trace links, merged parameters.

    Written once the MLflow run is open (`FlowRunHandle.when_open`): under `latent run` that is
    on the background thread, so the flow's end does not wait for MLflow; the artifact then
    names the flow run explicitly and uses the Prefect settings of the flow's call.
    Observability never breaks a flow: a failure here is one warning.
    """
    try:
        from prefect.context import FlowRunContext, SettingsContext

        context = FlowRunContext.get()
        flow_run = getattr(context, "flow_run", None)
        if flow_run is None:
            return
        entry = {"flow": flow_name}
        prefect_url = prefect_tags().get("prefect.flow_run.url")
        if prefect_url:
            entry["prefect_url"] = prefect_url
        _recent.append(entry)
        settings = SettingsContext.get()
        call = _Publication(project, flow_name, parameters, flow_run.id, entry, settings)
        handle.when_open(call.publish)
    except Exception as exc:
        logger.warning(f"Could not link flow '{flow_name}' to its MLflow run in Prefect: {exc}")


class _Publication:
    """What `publish_run_links` writes once the MLflow run is open (maybe in another thread)."""

    def __init__(
        self,
        project: Project,
        flow_name: str,
        parameters: Mapping[str, Any],
        flow_run_id: Any,
        entry: dict[str, str],
        settings: Any,
    ) -> None:
        self.project, self.flow_name, self.parameters = project, flow_name, parameters
        self.flow_run_id, self.entry, self.settings = flow_run_id, entry, settings

    def publish(self, handle: FlowRunHandle) -> None:
        try:
            if handle.active and handle.run_id and handle.experiment_id:
                base = mlflow_ui_url(self.project)
                url = mlflow_run_url(base, handle.experiment_id, handle.run_id)
                self.entry["mlflow_run_url"] = url
            markdown = run_links_markdown(self.project, self.flow_name, handle, self.parameters)
            self._create_artifact(markdown)
        except Exception as exc:
            logger.warning(
                f"Could not link flow '{self.flow_name}' to its MLflow run in Prefect: {exc}"
            )

    def _create_artifact(self, markdown: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactCreate
        from prefect.context import FlowRunContext, SettingsContext

        key = re.sub(r"[^a-z0-9-]+", "-", f"{self.flow_name.lower()}-run").strip("-")
        artifact = ArtifactCreate(
            type="markdown",
            key=key,
            description=f"MLflow run and parameters of flow '{self.flow_name}'",
            data=markdown,
            flow_run_id=self.flow_run_id,
        )
        if FlowRunContext.get() is not None:  # in the flow's own context: its client
            get_client(sync_client=True).create_artifact(artifact)
            return
        settings = self.settings
        scope = SettingsContext(profile=settings.profile, settings=settings.settings)
        with scope, get_client(sync_client=True) as client:
            client.create_artifact(artifact)


def run_links_markdown(
    project: Project, flow_name: str, handle: FlowRunHandle, parameters: Mapping[str, Any]
) -> str:
    lines = [f"# {flow_name}", ""]
    if handle.active and handle.run_id and handle.experiment_id:
        base = mlflow_ui_url(project)
        run_url = mlflow_run_url(base, handle.experiment_id, handle.run_id)
        lines += ["## MLflow", "", f"- Run: [{handle.run_id}]({run_url})"]
        trace_id = handle.trace_id
        if trace_id:
            url = mlflow_trace_url(base, handle.experiment_id, trace_id)
            lines.append(f"- Trace: [{trace_id}]({url})")
        lines += [
            "",
            f"Start the MLflow UI with `latent ui` (store: `{project.tracking_uri}`).",
            "",
        ]
    flat = flatten_params(parameters)
    lines += ["## Parameters", ""]
    if not flat:
        return "\n".join([*lines, "_none_", ""])
    lines += ["| parameter | value |", "|---|---|"]
    for key, value in list(flat.items())[:_MAX_PARAM_ROWS]:
        lines.append(f"| `{key}` | {_cell(value)} |")
    if len(flat) > _MAX_PARAM_ROWS:
        more = len(flat) - _MAX_PARAM_ROWS
        lines.append(f"| … | {more} more (all in the MLflow run's params.json) |")
    return "\n".join([*lines, ""])


def _cell(value: str) -> str:
    text = value if len(value) <= 200 else value[:200] + "…"
    return text.replace("|", "\\|").replace("\n", " ")
