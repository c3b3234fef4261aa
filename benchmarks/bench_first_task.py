"""Time from a flow's start to its first task body, MLflow tracking on (local SQLite store).

Each measurement is a fresh process (so `import mlflow` and the store are paid as a user pays
them) running a one-task flow of a throwaway project against the Prefect server named by
``PREFECT_API_URL`` (start one with `prefect server start` or let Latent manage it). Printed:
flow call -> flow body, flow call -> first task body, and the whole flow call, median of N, for
a fresh store (first run) and an existing one (every later run).

    uv run --frozen python benchmarks/bench_first_task.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

FLOW = """
import json, sys, time
from latent.prefect import flow, task

MARKS = {}

@task("first", cache=False)
def first():
    MARKS.setdefault("task", time.perf_counter())
    return 1

@flow("bench")
def bench():
    MARKS.setdefault("body", time.perf_counter())
    return first()
"""

RUNNER = """
import json, sys, time
sys.path.insert(0, {flow_dir!r})
started = time.perf_counter()
import flow as module
before = time.perf_counter()
module.bench()
done = time.perf_counter()
print(json.dumps({{"body": module.MARKS["body"] - before, "task": module.MARKS["task"] - before,
                  "call": done - before, "import": before - started}}))
"""


def _project(root: Path) -> Path:
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text('environment = "dev"\n[mlflow]\nenabled = true\n')
    flow_dir = root / "flows" / "bench"
    flow_dir.mkdir(parents=True)
    (flow_dir / "flow.py").write_text(textwrap.dedent(FLOW))
    (flow_dir / "parameters.yaml").write_text("{}\n")
    return flow_dir


def _once(root: Path, flow_dir: Path) -> dict[str, float]:
    code = RUNNER.format(flow_dir=str(flow_dir))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = []
        for index in range(args.runs):
            root = Path(tmp) / f"fresh{index}"
            fresh.append(_once(root, _project(root)))
        root = Path(tmp) / "warm"
        flow_dir = _project(root)
        _once(root, flow_dir)
        warm = [_once(root, flow_dir) for _ in range(args.runs)]
    for label, runs in (("fresh store", fresh), ("existing store", warm)):
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"{label:15s} flow call -> body {med['body']:.2f} s, -> first task {med['task']:.2f} s,"
            f" whole flow call {med['call']:.2f} s (median of {len(runs)})"
        )


if __name__ == "__main__":
    main()
