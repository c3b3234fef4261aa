"""latent-prefect benchmarks: `latent.prefect` flows and tasks beside bare Prefect 3, one run.

Run from the repository root:

    uv run --frozen python benchmarks/bench_prefect.py           # 500 tasks, 10,000 rows
    uv run --frozen python benchmarks/bench_prefect.py --quick   # 100 tasks, 1,000 rows

Every measurement runs in its own fresh Python process (Prefect's ephemeral server, Latent's and
Prefect's in-process caches all start empty), against one temporary Prefect database created
before anything is timed and one temporary Latent project. Each worker first starts its ephemeral
server with an untimed empty bare-Prefect flow, so server start-up is not in any number.

Prints one table: Latent time, bare Prefect time, and their ratio (Latent / Prefect: below 1 means
Latent is faster), plus the counts of the cold 10,000-row `.map`. Nothing is asserted: timings
depend on the machine. `--profile NAME` re-runs one worker under cProfile and prints where its
time goes (names: see WORKERS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

RESULT_TAG = "BENCH_RESULT "
END_TAG = "BENCH_MEASURED"  # on stderr: what a worker logs after it is process-exit noise
SUBPROCESS_TIMEOUT_S = 1800
REPO = Path(__file__).resolve().parents[1]
REPEATS = 3  # later calls of the empty / subflow flows; the median is reported

# The project's flows: Latent and bare Prefect side by side, same bodies. Written to
# flows/bench/flow.py of the temporary project; every Latent flow also gets its own
# flows/<name>/ directory, as a project needs.
FLOWS_PY = '''
"""Benchmark flows: each Latent flow next to its bare-Prefect twin, same body."""

import time

import prefect
from prefect.cache_policies import INPUTS, NO_CACHE
from prefect.context import FlowRunContext

from latent.prefect import flow, task


def _run_id() -> str:
    return str(FlowRunContext.get().flow_run.id)


def _collect(futures, started: float) -> dict:
    """Resolve every future; count results and errors (an error never stops the count)."""
    results, errors, first_error = 0, 0, None
    for future in futures:
        try:
            future.result()
            results += 1
        except Exception as exc:  # noqa: BLE001 - the benchmark reports, never raises
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
    return {
        "seconds": time.perf_counter() - started,
        "results": results,
        "errors": errors,
        "first_error": first_error,
        "flow_run_id": _run_id(),
    }


def make_rows(n: int) -> list:
    return [{"id": i, "question": f"question number {i}"} for i in range(n)]


# -- 1. sequential trivial tasks ----------------------------------------------------------

@task("inc_nocache", cache=False)
def l_inc_nocache(x: int) -> int:
    return x + 1


@task("inc_cached")
def l_inc_cached(x: int) -> int:
    return x + 1


@prefect.task(cache_policy=NO_CACHE)
def p_inc(x: int) -> int:
    return x + 1


def _loop(fn, n: int, start: int = 0) -> dict:
    started = time.perf_counter()
    for i in range(start, start + n):
        fn(i)
    return {"seconds": time.perf_counter() - started}


@flow("seq_nocache")
def l_seq_nocache(n: int) -> dict:
    return _loop(l_inc_nocache, n)


@flow("seq_cached")
def l_seq_cached(n: int, start: int = 0) -> dict:
    return _loop(l_inc_cached, n, start)


@prefect.flow
def p_seq(n: int) -> dict:
    return _loop(p_inc, n)


# -- 2/3. mapped rows ------------------------------------------------------------------------

@task("answer_row")
def l_answer(row: dict) -> dict:
    return {"id": row["id"], "answer": row["question"].upper()}


@prefect.task(cache_policy=INPUTS, persist_result=True)
def p_answer(row: dict) -> dict:
    return {"id": row["id"], "answer": row["question"].upper()}


@flow("map_rows")
def l_map(n: int) -> dict:
    rows = make_rows(n)
    started = time.perf_counter()
    return _collect(l_answer.map(row=rows), started)


@prefect.flow
def p_map(n: int) -> dict:
    rows = make_rows(n)
    started = time.perf_counter()
    return _collect(p_answer.map(row=rows), started)


# -- 4. empty flow, flow with 5 subflows -----------------------------------------------------

@flow("empty")
def l_empty() -> None:
    return None


@flow("child")
def l_child() -> None:
    return None


@flow("parent")
def l_parent() -> None:
    for _ in range(5):
        l_child()


@prefect.flow
def p_empty() -> None:
    return None


@prefect.flow
def p_child() -> None:
    return None


@prefect.flow
def p_parent() -> None:
    for _ in range(5):
        p_child()
'''

LATENT_FLOW_NAMES = ("seq_nocache", "seq_cached", "map_rows", "empty", "child", "parent")


# ==========================================================================================
# Worker side: one measurement in a fresh process; prints one RESULT_TAG line of JSON.
# ==========================================================================================


def _load_flows(project: Path) -> Any:
    import importlib.util

    path = project / "flows" / "bench" / "flow.py"
    spec = importlib.util.spec_from_file_location("latent_bench_flows", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _start_server(flows: Any) -> float:
    """Start this process's ephemeral server (untimed for the measurements); its seconds."""
    started = time.perf_counter()
    flows.p_empty()
    return time.perf_counter() - started


def _timed(fn: Any, *args: Any) -> tuple[Any, float, str | None]:
    """(return value, wall seconds, error text) of one flow call; errors are reported."""
    started = time.perf_counter()
    try:
        value = fn(*args)
        error = None
    except Exception as exc:
        value, error = None, f"{type(exc).__name__}: {exc}"[:300]
    return value, time.perf_counter() - started, error


def _server_task_runs(flow_run_id: str, settle_s: float = 60.0) -> int | None:
    """Task runs the server recorded for a flow run, once the count stops moving.

    Task-run records reach the server through its event stream after the flow returned, so
    the count is polled until it is stable for three seconds (or `settle_s` passed).
    """
    from prefect.client.orchestration import get_client

    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    last, stable, deadline = -1, 0, time.monotonic() + settle_s
    try:
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                response = client.request("POST", "/task_runs/count", json=body)  # type: ignore[arg-type]
                response.raise_for_status()
                count = int(response.json())
                stable = stable + 1 if count == last else 0
                if stable >= 3:
                    break
                last = count
                time.sleep(1.0)
    except Exception:
        return None
    return last


def worker_init(flows: Any, n: int) -> dict[str, Any]:
    """Create and migrate the shared Prefect database (run once, before anything is timed)."""
    return {"server_start_s": _start_server(flows)}


def _seq(flow: Any, flows: Any, n: int) -> dict[str, Any]:
    server = _start_server(flows)
    value, wall, error = _timed(flow, n)
    return {
        "server_start_s": server,
        "loop_s": value["seconds"] if value else None,
        "flow_s": wall,
        "error": error,
    }


def worker_seq_bare(flows: Any, n: int) -> dict[str, Any]:
    return _seq(flows.p_seq, flows, n)


def worker_seq_latent_nocache(flows: Any, n: int) -> dict[str, Any]:
    return _seq(flows.l_seq_nocache, flows, n)


def worker_seq_latent_cold(flows: Any, n: int) -> dict[str, Any]:
    return _seq(flows.l_seq_cached, flows, n)


def worker_seq_interleaved(flows: Any, n: int) -> dict[str, Any]:
    """Bare and Latent (cache off) alternately in one process: both see the same machine load.

    On a shared machine the load drifts between processes; alternating rounds and keeping
    each side's best round compares the two under the same conditions.
    """
    server = _start_server(flows)
    bare: list[float] = []
    latent: list[float] = []
    cached: list[float] = []
    for round_ in range(REPEATS):
        # cache on and cold every round: arguments no earlier round used, so every call
        # misses, runs and writes its result
        cold = (flows.l_seq_cached, cached, (n, (round_ + 1) * 1_000_000))
        for flow, times, args in (
            (flows.p_seq, bare, (n,)),
            (flows.l_seq_nocache, latent, (n,)),
            cold,
        ):
            value, _, _error = _timed(flow, *args)
            if value:
                times.append(value["seconds"])
    return {
        "server_start_s": server,
        "bare_loop_s": min(bare, default=None),
        "latent_loop_s": min(latent, default=None),
        "latent_cached_loop_s": min(cached, default=None),
    }


def _map(flow: Any, flows: Any, n: int) -> dict[str, Any]:
    server = _start_server(flows)
    value, wall, error = _timed(flow, n)
    out: dict[str, Any] = {"server_start_s": server, "flow_s": wall, "error": error}
    if value:
        out.update(
            map_s=value["seconds"],
            results=value["results"],
            errors=value["errors"],
            first_error=value["first_error"],
            server_task_runs=_server_task_runs(value["flow_run_id"]),
        )
    # Prefect alone was seen to crash the *next* flow with a 503 after a large map.
    _, next_s, next_error = _timed(flows.p_empty)
    out.update(next_flow_s=next_s, next_flow_error=next_error)
    return out


def worker_map_latent(flows: Any, n: int) -> dict[str, Any]:
    return _map(flows.l_map, flows, n)


def worker_map_bare(flows: Any, n: int) -> dict[str, Any]:
    return _map(flows.p_map, flows, n)


def _flows(empty: Any, parent: Any, flows: Any) -> dict[str, Any]:
    server = _start_server(flows)
    out: dict[str, Any] = {"server_start_s": server, "errors": []}
    for label, fn in (("empty", empty), ("parent", parent)):
        times = []
        for _ in range(1 + REPEATS):
            _, wall, error = _timed(fn)
            times.append(wall)
            if error:
                out["errors"].append(f"{label}: {error}")
        out[f"{label}_first_s"] = times[0]
        out[f"{label}_median_s"] = statistics.median(times[1:])
    return out


def worker_flows_bare(flows: Any, n: int) -> dict[str, Any]:
    return _flows(flows.p_empty, flows.p_parent, flows)


def worker_flows_latent(flows: Any, n: int) -> dict[str, Any]:
    return _flows(flows.l_empty, flows.l_parent, flows)


WORKERS = {
    "init": worker_init,
    "seq-bare": worker_seq_bare,
    "seq-latent-nocache": worker_seq_latent_nocache,
    "seq-latent-cold": worker_seq_latent_cold,
    "seq-interleaved": worker_seq_interleaved,
    "map-latent": worker_map_latent,
    "map-bare": worker_map_bare,
    "flows-bare": worker_flows_bare,
    "flows-latent": worker_flows_latent,
}


def source_digest() -> str:
    """A short digest of the latent packages' source, to tell if it changed during a run."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(REPO.glob("packages/latent-*/src/latent/**/*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def run_worker(name: str, project: Path, n: int, profile: Path | None) -> None:
    digest, load_before = source_digest(), os.getloadavg()[0]
    flows = _load_flows(project)
    fn = WORKERS[name]
    if profile is None:
        result = fn(flows, n)
    else:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(fn, flows, n)
        profiler.dump_stats(str(profile))
    result.update(source=digest, load=[load_before, os.getloadavg()[0]])
    print(END_TAG, file=sys.stderr, flush=True)
    print(RESULT_TAG + json.dumps(result), flush=True)


# ==========================================================================================
# Driver side: build the project and the Prefect home, run the workers, print the table.
# ==========================================================================================


@dataclass
class Bench:
    """One benchmark run: its temporary directories and what the workers reported."""

    root: Path
    tasks: int
    rows: int
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stderr_errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return self.root / "project"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PREFECT_", "LATENT_", "MLFLOW_"))
        }
        env.update(
            PREFECT_HOME=str(self.root / "prefect-home"),
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
            PREFECT_LOGGING_LEVEL="WARNING",
            # bare Prefect's persisted results (INPUTS cache) go here, not to ~/.prefect
            PREFECT_LOCAL_STORAGE_PATH=str(self.root / "prefect-results"),
            # no telemetry call at every server start (the sandbox may have no network)
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        return env

    def make_project(self) -> None:
        config = self.project / "config"
        config.mkdir(parents=True)
        (config / "latent.toml").write_text('environment = "dev"\n\n[mlflow]\nenabled = false\n')
        (config / "global.yaml").write_text("")
        (self.project / "data").mkdir()
        for name in (*LATENT_FLOW_NAMES, "bench"):
            (self.project / "flows" / name).mkdir(parents=True)
            (self.project / "flows" / name / "parameters.yaml").write_text("{}\n")
        (self.project / "flows" / "bench" / "flow.py").write_text(FLOWS_PY)

    def run(
        self, name: str, n: int, profile: Path | None = None, label: str | None = None
    ) -> dict[str, Any]:
        """Run worker `name` in a fresh process; keep its result and errors under `label`."""
        label = label or name
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--n", str(n)]
        cmd += ["--project", str(self.project)]
        if profile is not None:
            cmd += ["--profile-out", str(profile)]
        print(f"  running {label} (n={n}) ...", end="", flush=True, file=sys.stderr)
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                cwd=self.project,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=SUBPROCESS_TIMEOUT_S,
            )
            stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout, stderr, code = _text(exc.stdout), _text(exc.stderr), -1
        elapsed = time.perf_counter() - started
        print(f" {elapsed:.1f} s", file=sys.stderr)
        log = self.root / f"{label}.stderr.log"
        log.write_text(stderr)
        result = _parse_result(stdout)
        if result is None:
            result = {"crashed": f"exit code {code}; see {log}"}
        result["process_s"] = elapsed
        self.results[label] = result
        self.stderr_errors[label] = _error_lines(stderr)
        result["dropped_events"] = _dropped_events(stderr)
        return result


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _parse_result(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_TAG) :])
            return parsed
    return None


def _error_lines(stderr: str) -> list[str]:
    """Failure lines a worker logged while measuring (Prefect logs errors, never raises them).

    Lines after END_TAG are left out: at interpreter exit the ephemeral server is cancelled
    mid-flush and logs the same harmless "Error flushing 1 events (1 to retry, 0 dropped)" in
    every process, bare Prefect's included. Events the server *dropped* are counted apart.
    """
    measured = stderr.split(END_TAG, 1)[0]
    markers = ("ERROR", "Traceback", "503", "Service Unavailable", "Crashed")
    return [line for line in measured.splitlines() if any(m in line for m in markers)]


def _dropped_events(stderr: str) -> int:
    """Events the embedded server reported as dropped, over the whole worker log."""
    return sum(int(m) for m in re.findall(r"(\d+) dropped\)", stderr))


def machine_info() -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"machine : {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        f"python  : {platform.python_version()} ({sys.executable})",
        f"prefect : {metadata.version('prefect')}, "
        f"latent-prefect {metadata.version('latent-prefect')}",
    ]


# -- the table ---------------------------------------------------------------------------------


def fmt_s(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    if value >= 0.1:
        return f"{value:.3f} s"
    return f"{value * 1e3:.1f} ms"


def ratio(ours: Any, base: Any) -> float | None:
    if isinstance(ours, (int, float)) and isinstance(base, (int, float)) and base > 0:
        return float(ours) / float(base)
    return None


Row = tuple[str, str, str, str, str, str]


def table_rows(b: Bench) -> list[Row]:
    r = b.results
    rows: list[Row] = []

    def add(what: str, ours: Any, base: Any, target: str = "", met: bool | None = None) -> None:
        q = ratio(ours, base)
        verdict = "" if met is None else ("yes" if met else "NO")
        rows.append((what, fmt_s(ours), fmt_s(base), f"{q:.2f}" if q else "—", target, verdict))

    seq_b, seq_l, seq_c = r["seq-bare"], r["seq-latent-nocache"], r["seq-latent-cold"]
    n = b.tasks
    q = ratio(seq_l.get("loop_s"), seq_b.get("loop_s"))
    add(
        f"1. {n} sequential tasks, cache off (task loop)",
        seq_l.get("loop_s"),
        seq_b.get("loop_s"),
        "≤ 1.10",
        q is not None and q <= 1.10,
    )
    q = ratio(seq_c.get("loop_s"), seq_b.get("loop_s"))
    add(
        f"1. {n} sequential tasks, Latent cache on, cold (loop)",
        seq_c.get("loop_s"),
        seq_b.get("loop_s"),
        "≤ 1.10",
        q is not None and q <= 1.10,
    )
    inter = r.get("seq-interleaved", {})
    q = ratio(inter.get("latent_loop_s"), inter.get("bare_loop_s"))
    add(
        f"1. {n} sequential tasks, cache off, alternating in 1 process (best of {REPEATS})",
        inter.get("latent_loop_s"),
        inter.get("bare_loop_s"),
        "≤ 1.10",
        q is not None and q <= 1.10,
    )
    q = ratio(inter.get("latent_cached_loop_s"), inter.get("bare_loop_s"))
    add(
        f"1. {n} sequential tasks, cache on, cold, alternating in 1 process (best of {REPEATS})",
        inter.get("latent_cached_loop_s"),
        inter.get("bare_loop_s"),
        "≤ 1.10",
        q is not None and q <= 1.10,
    )
    add("   same, whole flow call (cache off)", seq_l.get("flow_s"), seq_b.get("flow_s"))
    add(
        "   same, whole flow call (Latent cache on, cold)", seq_c.get("flow_s"), seq_b.get("flow_s")
    )

    warm_l, warm_b = r.get("map-latent-warm", {}), r.get("map-bare-warm", {})
    cold_l, cold_b = r.get("map-latent-cold", {}), r.get("map-bare-cold", {})
    speedup = ratio(warm_b.get("map_s"), warm_l.get("map_s"))
    rows.append(
        (
            f"2. warm re-run, {b.rows:,}-row .map (map+results)",
            fmt_s(warm_l.get("map_s")),
            fmt_s(warm_b.get("map_s")),
            f"{1 / speedup:.4f} ({speedup:.0f}x faster)" if speedup else "—",
            "≥ 20x faster",
            "" if speedup is None else ("yes" if speedup >= 20 else "NO"),
        )
    )
    add("   same, whole flow call (warm)", warm_l.get("flow_s"), warm_b.get("flow_s"))
    add(
        f"   cold first run, {b.rows:,}-row .map (map+results)",
        cold_l.get("map_s"),
        cold_b.get("map_s"),
    )

    fl, fb = r["flows-latent"], r["flows-bare"]
    add("4. empty flow (median of later calls)", fl.get("empty_median_s"), fb.get("empty_median_s"))
    add("   empty flow (first call in process)", fl.get("empty_first_s"), fb.get("empty_first_s"))
    add("4. flow with 5 subflows (median)", fl.get("parent_median_s"), fb.get("parent_median_s"))
    add("   flow with 5 subflows (first call)", fl.get("parent_first_s"), fb.get("parent_first_s"))
    return rows


def print_table(rows: list[Row]) -> None:
    header: Row = ("measurement", "Latent", "bare Prefect", "ratio L/P", "target", "met")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if row is header:
            print(line)
    print(line)


def print_scale(b: Bench) -> None:
    """Item 3: the cold map must finish with every result and no error anywhere."""
    print(f"\n3. cold {b.rows:,}-row .map on the embedded server (first run, empty caches):")
    for label, key in (("Latent", "map-latent-cold"), ("bare Prefect", "map-bare-cold")):
        res = b.results.get(key, {})
        logged = b.stderr_errors.get(key, [])
        if "crashed" in res:
            print(f"   {label:13}: worker crashed: {res['crashed']}")
            continue
        zero = (
            res.get("results") == b.rows
            and not res.get("errors")
            and not res.get("error")
            and not res.get("next_flow_error")
            and not logged
            and not res.get("dropped_events")
        )
        print(
            f"   {label:13}: results {res.get('results')}/{b.rows}, task errors "
            f"{res.get('errors')}, flow error {res.get('error')}, server task runs "
            f"{res.get('server_task_runs')}, next flow "
            f"{'OK' if not res.get('next_flow_error') else res['next_flow_error']}, "
            f"error lines logged {len(logged)}, server events dropped "
            f"{res.get('dropped_events')} -> {'zero errors' if zero else 'ERRORS'}"
        )
        if res.get("first_error"):
            print(f"   {'':13}  first task error: {res['first_error']}")
        for line in logged[:3]:
            print(f"   {'':13}  log: {line[:160]}")
    warm = b.results.get("map-latent-warm", {})
    print(
        f"   (warm re-run: Latent created {warm.get('server_task_runs')} task runs for "
        f"{warm.get('results')} results; bare Prefect created "
        f"{b.results.get('map-bare-warm', {}).get('server_task_runs')})"
    )


# -- main --------------------------------------------------------------------------------------


def drive(args: argparse.Namespace) -> None:
    tasks, rows = (100, 1_000) if args.quick else (500, 10_000)
    root = Path(tempfile.mkdtemp(prefix="latent-bench-prefect-"))
    bench = Bench(root=root, tasks=tasks, rows=rows)
    bench.make_project()
    print("\n".join(machine_info()))
    print(f"sizes   : {tasks} sequential tasks, {rows:,} mapped rows; scratch dir {root}")

    if args.profile:
        profile_one(bench, args.profile)
        return

    init = bench.run("init", 0)
    print(f"prefect : fresh database created in {init['process_s']:.1f} s (not timed below)")
    bench.run("seq-bare", tasks)
    bench.run("seq-latent-nocache", tasks)
    bench.run("seq-latent-cold", tasks)
    bench.run("seq-interleaved", tasks)
    # cold then warm, each in a fresh process: the warm run hits the cache across processes
    for side in ("latent", "bare"):
        for phase in ("cold", "warm"):
            bench.run(f"map-{side}", rows, label=f"map-{side}-{phase}")
    bench.run("flows-bare", 0)
    bench.run("flows-latent", 0)

    print()
    print_table(table_rows(bench))
    print_scale(bench)
    start = [res.get("server_start_s") for res in bench.results.values()]
    known = [s for s in start if isinstance(s, (int, float))]
    if known:
        print(
            f"\n(ephemeral server start + first flow, excluded above: {min(known):.1f}–"
            f"{max(known):.1f} s per process; logs in {root})"
        )
    print_conditions(bench)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def print_conditions(bench: Bench) -> None:
    """Machine load per worker, and whether the measured source changed during the run."""
    loads = ", ".join(
        f"{name} {res['load'][0]:.1f}/{res['load'][1]:.1f}"
        for name, res in bench.results.items()
        if isinstance(res.get("load"), list)
    )
    print(f"(1-min load average at worker start/end: {loads})")
    digests = {res.get("source") for res in bench.results.values() if res.get("source")}
    if len(digests) > 1:
        print(
            f"WARNING: the latent packages' source changed during this run ({len(digests)} "
            "versions measured); rows may compare different code. Re-run on a quiet tree."
        )
    else:
        print(f"(latent source digest {next(iter(digests), '?')}, unchanged during the run)")


def profile_one(bench: Bench, name: str) -> None:
    """Run one worker under cProfile (cold first for map workers) and print the hot spots."""
    import pstats

    bench.run("init", 0)
    n = bench.rows if name.startswith("map") else bench.tasks
    if name.startswith("map"):
        bench.run(name, n)  # the cold run fills the cache; the profiled run is the warm one
    out = bench.root / f"{name}.prof"
    res = bench.run(name, n, profile=out)
    print(json.dumps(res, indent=1))
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 tasks, 1,000 rows")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir and logs")
    parser.add_argument("--profile", choices=sorted(WORKERS), help="profile one worker")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.project, args.n, args.profile_out)
    else:
        drive(args)


if __name__ == "__main__":
    main()
