"""Cost of observability per task: one span + record_task, tracking on (local SQLite) vs off.

Runs 1,000 tasks inside one flow run, twice: with MLflow tracking to a fresh SQLite store in a
temp dir, and with tracking disabled. Prints the ratio and the per-task overhead in µs, both
for the tasks alone and for the whole flow run (which includes the metric batch and waiting for
MLflow's background trace writer at run end). MLflow import and store creation are excluded
(a warm-up flow run pays them).

    uv run --frozen python benchmarks/bench_observe.py [--tasks 1000]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from latent.observe import configure_tracking, flow_run, record_task, span


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


def main() -> None:
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

    n = args.tasks
    print(f"tasks: {n}  (one span + record_task each)")
    print(f"tracking off: tasks {off_body * 1e3:8.1f} ms   flow run {off_total * 1e3:8.1f} ms")
    print(f"tracking on : tasks {on_body * 1e3:8.1f} ms   flow run {on_total * 1e3:8.1f} ms")
    print(f"ratio on/off: tasks {on_body / off_body:6.1f}x   flow run {on_total / off_total:6.1f}x")
    print(
        f"overhead per task: tasks {(on_body - off_body) / n * 1e6:8.1f} µs   "
        f"flow run {(on_total - off_total) / n * 1e6:8.1f} µs"
    )


if __name__ == "__main__":
    main()
