"""Rows at LLM scale: Latent's row engine beside bare Prefect `.map` and plain asyncio, one run.

Run from the repository root:

    uv run --frozen python benchmarks/bench_rows.py             # N = 1,000 and 10,000
    uv run --frozen python benchmarks/bench_rows.py --sizes 1000

One `prefect server start` (SQLite) serves every measurement and is up before anything is
timed; each measurement is a fresh Python process on a fresh Latent project. Cases, per N:

  (a) trivial body, cold:  Latent `.map` (MLflow tracing on)  vs bare Prefect `.map`
  (b) 50 ms async body, concurrency 64, cold:  Latent  vs  asyncio.gather + Semaphore(64)
      (the physical floor is N x 0.05 / 64 s)
  (c) warm re-run of (a):  Latent (all cached)  vs bare Prefect (which has no row cache)
  (d) warm 1,000-row map with one `unmapped` 50 MB object vs the same map without it: the
      difference, counted in hashes of the object (issue 10: hashed once per map, not per row)

Beside the times it prints what each side left behind: Prefect task runs recorded by the
server for the flow run (counted until the count stops moving), and for Latent the row spans
in the MLflow trace. Latent's time runs until its MLflow writes are in the store
(`wait_for_tracking()`, as `latent run` waits before it exits); the time its flow call returned
is shown too. Nothing is asserted:
timings depend on the machine, and these machines are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

TAG = "BENCH_RESULT "

FLOW = """
import asyncio, time
import prefect
from latent.prefect import flow, task

N = {n}

@task("trivial", retry=False)
def trivial(x: int) -> int:
    return x + 1

@task("slow_io", retry=False, max_in_flight=64)
async def slow_io(x: int) -> int:
    await asyncio.sleep(0.05)
    return x

@task("tiny", retry=False)
def tiny(x: int) -> int:
    return x

@flow("warmup")
def warmup():
    return tiny(1)

@task("with_model", retry=False)
def with_model(x: int, model: object) -> int:
    return x + 1

def _timed_map(make):
    started = time.perf_counter()
    values = [f.result() for f in make()]
    return time.perf_counter() - started, len(values)

@flow("plain_map")
def plain_map():
    return _timed_map(lambda: trivial.map(range(1000)))

def make_model():
    # a model-like object of plain Python (~50 MB): hashed value by value, like a fitted
    # estimator's attributes (a NumPy array of the same size hashes ~100x faster)
    return {{"weights": [i / 7 for i in range(1_600_000)], "classes": list(range(10))}}

_MODEL = []

@flow("model_map")
def model_map():
    if not _MODEL:
        _MODEL.append(make_model())  # made once per process, before the timed map
    model = _MODEL[0]
    return _timed_map(lambda: with_model.map(range(1000), model=prefect.unmapped(model)))

@flow("rows")
def rows():
    return [f.result() for f in trivial.map(range(N))]

@flow("io")
def io():
    return [f.result() for f in slow_io.map(range(N))]

@prefect.task
def bare_trivial(x: int) -> int:
    return x + 1

@prefect.flow
def bare_rows():
    return [f.result() for f in bare_trivial.map(range(N))]
"""

WORKER = r"""
import asyncio, json, sys, time
from pathlib import Path
case, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, str(Path.cwd() / "flows" / "rows"))

def report(seconds, **extra):
    print("BENCH_RESULT " + json.dumps({"seconds": seconds, **extra}), flush=True)

if case == "floor":
    async def main():
        gate = asyncio.Semaphore(64)
        async def one(x):
            async with gate:
                await asyncio.sleep(0.05)
                return x
        return await asyncio.gather(*(one(x) for x in range(n)))
    started, cpu_started = time.perf_counter(), time.process_time()
    asyncio.run(main())
    report(time.perf_counter() - started, cpu=time.process_time() - cpu_started)
    sys.exit(0)

if case == "unmapped":
    # (d) a warm 1,000-row map with one unmapped 50 MB object: what hashing the object costs
    # the map, in units of one hash of it (measured here too)
    from latent.cache import stable_hash
    from latent.config import Project
    from latent.prefect.cli import load_flow
    project = Project.discover()
    plain, with_model = load_flow(project, "plain_map"), load_flow(project, "model_map")
    plain(), with_model()  # cold: fill the caches (untimed)
    sys.path.insert(0, str(Path.cwd() / "flows" / "model_map"))
    import flow as module
    model = module.make_model()  # an equal object: one hash of it, timed here
    plain_s, model_s, hash_s = [], [], []
    for _ in range(5):
        plain_s.append(plain()[0])
        model_s.append(with_model()[0])
        started = time.perf_counter()
        stable_hash(model)
        hash_s.append(time.perf_counter() - started)
    report(min(model_s), plain=min(plain_s), one_hash=min(hash_s))
    sys.exit(0)

from latent.config import Project
from latent.prefect.cli import load_flow
project = Project.discover()
if case == "bare":
    import flow as module
    target = module.bare_rows
else:
    target = load_flow(project, "rows" if case in ("latent", "latent_warm") else "io")
# untimed: each side's start-up (Prefect's client and server connection; for Latent also its
# MLflow store and run), with a tiny flow of its own. Start-up is measured by bench_startup.py.
import prefect
@prefect.flow
def bare_warmup():
    return 1
bare_warmup() if case == "bare" else load_flow(project, "warmup")()
started, cpu_started = time.perf_counter(), time.process_time()
result = target()
returned = time.perf_counter() - started
if case != "bare":
    # Latent's flow returns before MLflow has written its spans and metrics (they are written
    # in the background); the figure is until they are in the store, as `latent run` waits
    from latent.observe import wait_for_tracking
    wait_for_tracking()
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
assert len(result) == n
from prefect.client.orchestration import get_client
from latent.prefect._prefect_compat import count_final_task_runs
async def last_flow_run():
    async with get_client() as client:
        return (await client.read_flow_runs(limit=1, sort="START_TIME_DESC"))[0].id
# the server records task runs behind the run (more so after a run that flooded it): count
# until the count stops moving (5 s unchanged, 120 s at most)
flow_run_id = asyncio.run(last_flow_run())
task_runs, settled, deadline = None, time.monotonic(), time.monotonic() + 120
while time.monotonic() < deadline and time.monotonic() - settled < 5:
    time.sleep(0.5)
    counted = count_final_task_runs(flow_run_id)
    if counted != task_runs:
        task_runs, settled = counted, time.monotonic()
spans = None
if case != "bare":
    import mlflow
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=project.tracking_uri)
    experiment = client.get_experiment_by_name("rows" if case != "latent_io" else "io")
    if experiment is not None:  # None with LATENT_MLFLOW_ENABLED=0
        traces = client.search_traces(
            locations=[experiment.experiment_id], max_results=1, order_by=["timestamp_ms DESC"]
        )
        spans = len(traces[0].data.spans) - 1 if traces else 0  # this run's spans, minus root
report(seconds, returned=returned, cpu=cpu, task_runs=task_runs, spans=spans)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    prefect = Path(sys.executable).parent / "prefect"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false"}
    log = open(home / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"Prefect server did not start; see {home / 'server.log'}")


def new_project(root: Path, n: int) -> Path:
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text('environment = "dev"\n')
    (root / "config" / "global.yaml").write_text("")
    for name in ("rows", "io", "warmup", "plain_map", "model_map"):
        (root / "flows" / name).mkdir(parents=True)
        (root / "flows" / name / "parameters.yaml").write_text("")
        (root / "flows" / name / "flow.py").write_text(textwrap.dedent(FLOW.format(n=n)))
    return root


def measure(case: str, n: int, project: Path, url: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "PREFECT_API_URL": url,
        "PREFECT_LOGGING_LEVEL": "ERROR",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", WORKER, case, str(n)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    for line in done.stdout.splitlines():
        if line.startswith(TAG):
            return dict(json.loads(line[len(TAG) :]))
    raise SystemExit(f"{case} N={n} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="latent-bench-rows-") as tmp:
        home = Path(tmp) / "prefect-home"
        home.mkdir()
        server, url = start_server(home)
        try:
            unmapped = measure("unmapped", 1000, new_project(Path(tmp) / "unmapped", 1000), url)
            measured = []
            for n in args.sizes:
                project = new_project(Path(tmp) / f"p{n}", n)
                latent = measure("latent", n, project, url)
                warm = measure("latent_warm", n, project, url)
                io = measure("latent_io", n, project, url)
                floor = measure("floor", n, project, url)
                measured.append((n, project, latent, warm, io, floor))
            # bare Prefect after every Latent case: its server goes on digesting the events of
            # its task runs long after the run, and would slow whatever is measured next
            rows = [
                (n, latent, measure("bare", n, project, url), warm, io, floor)
                for n, project, latent, warm, io, floor in measured
            ]
        finally:
            server.terminate()
            server.wait(timeout=60)
    print()
    print(f"{'case':<44}{'N':>7}{'Latent s':>10}{'other s':>10}{'ratio':>8}  recorded")
    for n, latent, bare, warm, io, floor in rows:
        print(
            f"{'(a) trivial, cold: Latent vs bare Prefect':<44}{n:>7}"
            f"{latent['seconds']:>10.2f}{bare['seconds']:>10.2f}"
            f"{bare['seconds'] / latent['seconds']:>7.1f}x  Latent: {latent['task_runs']} "
            f"task runs, {latent['spans']} row spans (flow returned at "
            f"{latent['returned']:.2f} s); Prefect: {bare['task_runs']} of {n} task runs"
        )
        print(
            f"{'(b) 50 ms async @64: Latent vs gather floor':<44}{n:>7}"
            f"{io['seconds']:>10.2f}{floor['seconds']:>10.2f}"
            f"{io['seconds'] / floor['seconds']:>7.2f}x  (physical floor {n * 0.05 / 64:.2f} s; "
            f"flow returned at {io['returned']:.2f} s)"
        )
        print(
            f"{'(c) warm re-run: Latent vs bare Prefect':<44}{n:>7}"
            f"{warm['seconds']:>10.2f}{bare['seconds']:>10.2f}"
            f"{bare['seconds'] / warm['seconds']:>7.1f}x"
        )
    extra = unmapped["seconds"] - unmapped["plain"]
    print(
        f"{'(d) warm 1,000-row map + unmapped 50 MB object':<44}{1000:>7}"
        f"{unmapped['seconds']:>10.3f}{unmapped['plain']:>10.3f}"
        f"  hashing it cost {extra:.3f} s = {extra / unmapped['one_hash']:.1f} hashes of it "
        f"({unmapped['one_hash'] * 1000:.0f} ms each; goal: 1, not 1,000)"
    )
    print(
        "\n(a), (c): ratio = bare Prefect / Latent (higher: Latent faster); "
        "(b): Latent / floor (1.00 = the floor)."
    )


if __name__ == "__main__":
    main()
