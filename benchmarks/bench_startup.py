"""Start-up of a run: whole `latent run` processes beside a bare Prefect script.

Run from the repository root:

    uv run --frozen python benchmarks/bench_startup.py              # median of 5 per row
    uv run --frozen python benchmarks/bench_startup.py --repeats 9

Every number is the wall time of a whole process, start to exit, median of `--repeats` runs:

1. A one-task flow, second and later `latent run` (the managed Prefect server already up) beside
   the same flow as a bare Prefect script, which starts Prefect's ephemeral server each time
   (its database created before anything is timed). Goal: Latent >= 3x faster.
2. A fully cached `latent run answer metrics` of examples/qa-eval (a copy, MLflow on). Goal:
   <= 2.5 s. Beside it, the same with `LATENT_MLFLOW_WRITER=private` (a writer process per
   run that imports MLflow itself, instead of one forked by the shared writer).
3. Invalid configuration to its error: a YAML syntax error in parameters.yaml, and a typed-config
   error (which needs the flow file imported; its `@flow`/`@task` wait for Prefect until the
   checks pass). Goal: <= 1.5 s.

Then where the time of an import goes (`python -X importtime`, the largest packages). Everything
runs in a temporary directory with its own Latent state directory (its managed server is stopped
at the end) and its own PREFECT_HOME. Nothing is asserted: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

ONE_TASK = """
from latent.prefect import flow, task


@task("double", cache=False)
def double(x: int) -> int:
    return 2 * x


@flow("one")
def one() -> int:
    return double(21)
"""

BARE = """
from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE)
def double(x: int) -> int:
    return 2 * x


@flow
def one() -> int:
    return double(21)


if __name__ == "__main__":
    one()
"""

TYPED = """
from pydantic import BaseModel
from latent.prefect import flow, params


class Config(BaseModel):
    size: int


@flow("typed", config_schema=Config)
def typed() -> int:
    return params.size
"""

LATENT_TOML = 'environment = "dev"\n\n[mlflow]\nenabled = false\n'


def _project(root: Path) -> Path:
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text(LATENT_TOML)
    for name, code, params in (
        ("one", ONE_TASK, ""),
        ("typed", TYPED, "size: lots\n"),
        ("broken", ONE_TASK.replace('"one"', '"broken"'), "n: [1, 2\n"),
    ):
        (root / "flows" / name).mkdir(parents=True)
        (root / "flows" / name / "flow.py").write_text(code)
        (root / "flows" / name / "parameters.yaml").write_text(params)
    (root / "bare.py").write_text(BARE)
    return root


def _timed(cmd: list[str], cwd: Path, env: dict[str, str], expect: int = 0) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != expect:
        raise SystemExit(
            f"{' '.join(cmd)} exited {done.returncode} (expected {expect}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return elapsed


def _median(
    cmd: list[str], cwd: Path, env: dict[str, str], repeats: int, expect: int = 0
) -> list[float]:
    return [_timed(cmd, cwd, env, expect) for _ in range(repeats)]


def _env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LATENT_"))}
    env.update(
        LATENT_STATE_DIR=str(scratch / "state"),
        PREFECT_HOME=str(scratch / "prefect-home"),  # the bare script's ephemeral server
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    # As installed for a user, modules are compiled once (__pycache__); with this set (some CI
    # and sandbox shells do), every process compiles every module again: +3-4 s a run here.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _row(name: str, times: list[float], goal: str) -> str:
    return (
        f"{name:<58} {statistics.median(times):>7.2f} {min(times):>7.2f} {max(times):>7.2f}  {goal}"
    )


def _import_profile(env: dict[str, str], cwd: Path) -> list[str]:
    """The largest top-level packages (cumulative ms) of importing what a flow file needs."""
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import latent.prefect.cli; from latent.prefect import flow",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    totals: dict[str, int] = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if "." not in name:  # a package's own module: its cumulative time is the package's cost
            totals[name] = max(totals.get(name, 0), int(parts[1]))
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:10]
    return [f"  {name:<28} {us / 1000:>7.0f} ms" for name, us in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="latent-bench-startup-"))
    env = _env(scratch)
    latent = str(BIN / "latent")
    project = _project(scratch / "proj")
    example = scratch / "qa-eval"
    shutil.copytree(
        REPO / "examples" / "qa-eval", example, ignore=shutil.ignore_patterns(".latent", "mlruns")
    )
    load_start = os.getloadavg()
    try:
        print("warming up: managed server, bare Prefect database, example caches ...", flush=True)
        _timed([latent, "run", "one"], project, env)  # starts the managed server
        _timed([sys.executable, "bare.py"], project, env)  # creates the bare database
        _timed([latent, "run", "answer", "metrics"], example, env)  # fills the caches

        n = args.repeats
        latent_one, bare_one = [], []
        for _ in range(n):  # alternate, so load drift hits both sides alike
            latent_one.append(_timed([latent, "run", "one"], project, env))
            bare_one.append(_timed([sys.executable, "bare.py"], project, env))
        python_alone = _median([sys.executable, "-c", "pass"], project, env, n)
        prefect_import = _median([sys.executable, "-c", "import prefect"], project, env, n)
        cached = _median([latent, "run", "answer", "metrics"], example, env, n)
        # the same with a writer process of its own per run (MLflow imported by each run)
        private = {**env, "LATENT_MLFLOW_WRITER": "private"}
        cached_private = _median([latent, "run", "answer", "metrics"], example, private, n)
        syntax = _median([latent, "run", "broken"], project, env, n, expect=1)
        typed = _median([latent, "run", "typed"], project, env, n, expect=1)
        profile = _import_profile(env, project)
    finally:
        # the managed server and MLflow's shared writer
        subprocess.run([latent, "server", "stop"], cwd=scratch, env=env, capture_output=True)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    ratio = statistics.median(bare_one) / statistics.median(latent_one)
    print()
    title = f"whole process, seconds ({n} runs each)"
    print(f"{title:<58} {'median':>7} {'min':>7} {'max':>7}  goal")
    print(_row("for scale: python -c pass", python_alone, ""))
    print(_row("for scale: python -c 'import prefect'", prefect_import, ""))
    print(_row("one-task flow: latent run (managed server up)", latent_one, ""))
    print(_row("one-task flow: bare Prefect script (ephemeral server)", bare_one, ""))
    verdict = "met" if ratio >= 3 else "NOT met"
    print(f"{'  Latent is faster by':<58} {ratio:>6.1f}x{'':>16}  >= 3x  {verdict}")
    ok = statistics.median(cached) <= 2.5
    print(
        _row(
            "qa-eval: fully cached latent run answer metrics",
            cached,
            f"<= 2.5 s  {'met' if ok else 'NOT met'}",
        )
    )
    print(_row("  the same, MLflow's writer per run (not shared)", cached_private, ""))
    ok = statistics.median(syntax) <= 1.5
    print(
        _row(
            "invalid config to error: YAML syntax (no Prefect import)",
            syntax,
            f"<= 1.5 s  {'met' if ok else 'NOT met'}",
        )
    )
    ok = statistics.median(typed) <= 1.5
    print(
        _row(
            "invalid config to error: typed config (flow file, no Prefect)",
            typed,
            f"<= 1.5 s  {'met' if ok else 'NOT met'}",
        )
    )
    print()
    print("import profile of `import latent.prefect.cli; from latent.prefect import flow`:")
    print("\n".join(profile))
    print()
    load_end = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end"
    )


if __name__ == "__main__":
    main()
