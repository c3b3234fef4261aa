"""Cost of observability per task: one span + record_task, tracking on (local SQLite) vs off.

Runs 1,000 tasks inside one flow run, twice: with MLflow tracking to a fresh SQLite store in a
temp dir, and with tracking disabled. Prints the ratio and the per-task overhead in µs, both
for the tasks alone and for the whole flow run (which includes the metric batch and waiting for
MLflow's background trace writer at run end). MLflow import and store creation are excluded
(a warm-up flow run pays them).

Then the same tasks in a worker process (as on Dask, Ray or a process pool): each task is one
`continue_trace(link)` block with its span, against the same tasks with no link. A worker
flushes MLflow's span queue when its last task in a trace ends, so this is the cost per task
of a single-threaded worker.

    uv run --frozen python benchmarks/bench_observe.py [--tasks 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latent.observe import (
    TraceLink,
    configure_tracking,
    continue_trace,
    flow_run,
    record_task,
    span,
    trace_link,
)


def _task(index: int) -> int:
    """A stand-in task body: a little real work, so the ratio is against something."""
    return sum(range(200)) + index


def _run_flow(tasks: int) -> tuple[float, float]:
    """(seconds for the tasks, seconds for the whole flow run) for `tasks` traced tasks."""
    start = time.perf_counter()
    with flow_run("bench_flow", {"tasks": tasks}):
        body_start = time.perf_counter()
        for index in range(tasks):
            task_start = time.perf_counter()
            with span("task", "TOOL", inputs={"index": index}) as handle:
                handle.set_outputs(_task(index))
            record_task("task", duration_s=time.perf_counter() - task_start, success=True)
        body = time.perf_counter() - body_start
    return body, time.perf_counter() - start


def _worker_tasks(link: TraceLink | None, tasks: int) -> float:
    """Seconds for `tasks` worker-side tasks, each in its own `continue_trace` block."""
    start = time.perf_counter()
    for index in range(tasks):
        with (
            continue_trace(link),
            span("worker_task", "TOOL", inputs={"index": index}) as handle,
        ):
            handle.set_outputs(_task(index))
    return time.perf_counter() - start


def _as_worker(link_hex: str, tasks: int) -> None:
    """Child process: time the tasks with no link, then with the flow's link (after warm-up)."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    link = pickle.loads(bytes.fromhex(link_hex))
    _worker_tasks(None, 10)
    off = _worker_tasks(None, tasks)
    _worker_tasks(link, 10)  # warm-up: MLflow import, tracer set-up
    on = _worker_tasks(link, tasks)
    print(json.dumps({"off": off, "on": on}))


def _measure_worker(tasks: int) -> dict[str, float]:
    with flow_run("bench_worker_flow"):
        link = trace_link()
        assert link is not None, "tracking must be on to measure the worker side"
        child = subprocess.run(
            [sys.executable, __file__, "--as-worker", pickle.dumps(link).hex(), str(tasks)],
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, float] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--as-worker":
        _as_worker(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("latent.observe").setLevel(logging.ERROR)

    configure_tracking(enabled=False)
    _run_flow(10)
    off_body, off_total = _run_flow(args.tasks)

    with tempfile.TemporaryDirectory() as directory:
        configure_tracking(tracking_uri=f"sqlite:///{Path(directory) / 'mlflow.db'}")
        _run_flow(10)  # warm-up: MLflow import, store creation
        on_body, on_total = _run_flow(args.tasks)
        worker = _measure_worker(args.tasks)

    n = args.tasks
    print(f"tasks: {n}  (one span + record_task each)")
    print(f"tracking off: tasks {off_body * 1e3:8.1f} ms   flow run {off_total * 1e3:8.1f} ms")
    print(f"tracking on : tasks {on_body * 1e3:8.1f} ms   flow run {on_total * 1e3:8.1f} ms")
    print(f"ratio on/off: tasks {on_body / off_body:6.1f}x   flow run {on_total / off_total:6.1f}x")
    print(
        f"overhead per task: tasks {(on_body - off_body) / n * 1e6:8.1f} µs   "
        f"flow run {(on_total - off_total) / n * 1e6:8.1f} µs"
    )
    w_off, w_on = worker["off"], worker["on"]
    print(f"worker process, one continue_trace block + span per task ({n} tasks):")
    print(f"  no link: {w_off * 1e3:8.1f} ms   linked: {w_on * 1e3:8.1f} ms")
    print(f"  ratio linked/no link: {w_on / w_off:6.1f}x")
    print(f"  overhead per task in the worker: {(w_on - w_off) / n * 1e6:8.1f} µs")


if __name__ == "__main__":
    main()
