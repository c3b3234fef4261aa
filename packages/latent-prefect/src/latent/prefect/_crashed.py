"""Runs left behind by a process that died: marked failed by the next run of the project.

A run killed with SIGKILL (or a machine that lost power) never tells Prefect or MLflow that it
ended: its Prefect flow run stays Running and its MLflow run RUNNING, forever. So every process
keeps a small file under ``.latent/runs/`` naming the flow runs it has open (Prefect flow run
ids with their API URL, MLflow run ids with their tracking URI), and who it is (host, pid and
the pid's start time, so that a reused pid is not mistaken for the owner). A clean end removes
its entries. The next `latent run` of the project looks at the files of processes that are gone
and marks their runs Crashed (Prefect) and FAILED (MLflow), in a background thread: start-up
pays one directory listing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from uuid import UUID

from latent.config import Project
from latent.observe import FlowRunHandle, mark_runs_failed

RUNS_DIR = "runs"
#: How long the end of `latent run` waits for the marking started at its beginning.
MARK_WAIT_S = 15.0
REASON = "process {pid} on {host} ended without finishing this run (killed or crashed)"

_log = logging.getLogger("latent.prefect")
_lock = threading.Lock()
_marking: list[threading.Thread] = []
_ended: set[str] = set()  # keys of flow runs of this process that ended


def _me() -> dict[str, Any]:
    import psutil

    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": round(psutil.Process().create_time(), 2),
    }


def _file(project: Project) -> Path:
    me = _me()
    return project.latent_dir / RUNS_DIR / f"{me['host']}-{me['pid']}-{me['started']}.json"


@contextmanager
def owned(project: Project, handle: FlowRunHandle) -> Iterator[None]:
    """Note this flow run (Prefect's and, once open, MLflow's) as this process's while it runs.

    Never fails the flow: a `.latent/` that cannot be written only loses the later marking.
    """
    entry: dict[str, Any] = {}
    try:
        entry = _prefect_entry(handle)
        _update(project, add=entry)
        handle.when_open(lambda opened: _note_mlflow(project, entry, opened))
    except Exception as exc:
        _log.debug(f"Could not note the flow run for crash recovery: {exc}")
    try:
        yield
    finally:
        # once the MLflow run is ended: a process whose last writes never reached the store
        # (a tracking server that stopped answering) leaves its run for the next one to mark
        handle.after_end(lambda: _forget(project, entry))


def _forget(project: Project, entry: dict[str, Any]) -> None:
    with suppress(Exception):
        _update(project, remove=entry)


def _prefect_entry(handle: FlowRunHandle) -> dict[str, Any]:
    from prefect.context import FlowRunContext
    from prefect.settings import get_current_settings

    flow_run = getattr(FlowRunContext.get(), "flow_run", None)
    if flow_run is None:
        return {"key": f"handle-{id(handle)}"}
    return {
        "key": str(flow_run.id),
        "prefect_flow_run": str(flow_run.id),
        "prefect_api_url": get_current_settings().api.url,
    }


def _note_mlflow(project: Project, entry: dict[str, Any], handle: FlowRunHandle) -> None:
    uri = handle.tracking_uri
    if handle.active and handle.run_id and uri:
        with suppress(Exception):
            _update(project, add={**entry, "mlflow_run": handle.run_id, "tracking_uri": uri})


def _update(
    project: Project, *, add: dict[str, Any] | None = None, remove: dict[str, Any] | None = None
) -> None:
    path = _file(project)
    with _lock:
        record = _read(path) or {**_me(), "runs": {}}
        runs: dict[str, Any] = record["runs"]
        if add and add["key"] not in _ended:  # the MLflow run can open after the flow ended
            runs[add["key"]] = {**runs.get(add["key"], {}), **add}
        if remove:
            _ended.add(remove.get("key", ""))
            runs.pop(remove.get("key", ""), None)
        if not runs:
            with suppress(FileNotFoundError):
                path.unlink()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("runs"), dict) else None


def _dead(record: dict[str, Any]) -> bool:
    """Whether the process that wrote `record` is gone (same host only; a pid reused counts)."""
    import psutil

    if record.get("host") != socket.gethostname():
        return False  # another machine's process: not ours to judge
    try:
        started = psutil.Process(int(record["pid"])).create_time()
    except (psutil.NoSuchProcess, ValueError, KeyError, TypeError):
        return True
    except psutil.Error:
        return False
    return abs(round(started, 2) - float(record.get("started", 0))) > 1.0


def mark_crashed_runs(project: Project) -> None:
    """Mark the runs of dead processes of this project failed, in a background thread."""
    directory = project.latent_dir / RUNS_DIR
    try:
        files = [p for p in directory.iterdir() if p.suffix == ".json"]
    except OSError:
        return
    if not files:
        return
    thread = threading.Thread(target=_mark, args=(files,), name="latent-crashed", daemon=True)
    thread.start()
    _marking.append(thread)


def wait_for_marking(timeout_s: float = MARK_WAIT_S) -> None:
    """At the end of `latent run`: let the marking started at its beginning finish (bounded)."""
    for thread in list(_marking):
        thread.join(timeout_s)


def _mark(files: list[Path]) -> None:
    for path in files:
        record = _read(path)
        if record is None or not _dead(record):
            continue
        reason = REASON.format(pid=record.get("pid"), host=record.get("host"))
        by_store: dict[str, list[str]] = {}
        for run in record["runs"].values():
            if run.get("prefect_flow_run") and run.get("prefect_api_url"):
                try:
                    _crash_prefect_run(run["prefect_flow_run"], run["prefect_api_url"], reason)
                except Exception as exc:
                    _log.debug(f"Could not mark flow run {run['prefect_flow_run']}: {exc}")
            if run.get("mlflow_run") and run.get("tracking_uri"):
                by_store.setdefault(run["tracking_uri"], []).append(run["mlflow_run"])
        for uri, run_ids in by_store.items():
            mark_runs_failed(uri, run_ids, reason)
        with suppress(OSError):
            path.unlink()


def _crash_prefect_run(flow_run_text: str, api_url: str, reason: str) -> None:
    from latent.prefect._server import healthy
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Crashed

    flow_run_id = UUID(flow_run_text)
    if not healthy(api_url, timeout=2.0):
        return  # an ephemeral server that ended with the process: nothing to mark
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True, httpx_settings={"timeout": 10}) as client,
    ):
        run = client.read_flow_run(flow_run_id)
        if run.state is None or not run.state.is_final():
            client.set_flow_run_state(flow_run_id, Crashed(message=reason.capitalize()), force=True)


__all__ = ["mark_crashed_runs", "owned", "wait_for_marking"]
