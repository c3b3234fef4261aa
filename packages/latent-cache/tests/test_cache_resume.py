"""Checkpoints across real processes: a SIGKILLed loop resumes; threads + processes lose nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from latent.cache import CacheStore

LOOP = """
import os, signal, sys
from latent.cache import checkpoint

log_path, crash_at = sys.argv[1], int(sys.argv[2])
log = open(log_path, "a")


def process_documents(documents):
    @checkpoint
    def expensive_llm_call(doc):
        log.write(f"{doc['id']}\\n")
        log.flush()
        if doc["id"] == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)  # the machine dies mid-item
        return {"id": doc["id"], "response": doc["prompt"].upper()}

    return [expensive_llm_call(doc) for doc in documents]


docs = [{"id": i, "prompt": f"doc {i}"} for i in range(10_000)]
results = process_documents(docs)
assert [r["id"] for r in results] == list(range(10_000))
assert results[1234]["response"] == "DOC 1234"
print("done", len(results))
"""


def _run_loop(
    project: Path, log: Path, crash_at: int, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LOOP, str(log), str(crash_at)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sigkill_mid_loop_then_rerun_runs_only_the_unfinished_items(
    tmp_path: Path, child_env
) -> None:
    env = child_env(LATENT_ENVIRONMENT="dev")
    project = tmp_path / "proj"
    project.mkdir()
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"

    crashed = _run_loop(project, first_log, crash_at=7_500, env=env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    first = [int(x) for x in first_log.read_text().split()]
    assert first == list(range(7_501))  # 0..7499 finished, 7500 was in flight

    resumed = _run_loop(project, second_log, crash_at=-1, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "done 10000"
    second = [int(x) for x in second_log.read_text().split()]
    assert second == list(range(7_500, 10_000))  # only the unfinished items ran again
    assert len(CacheStore(project / ".latent" / "cache").entries()) == 10_000


HAMMER = """
import sys, threading
from latent.cache import checkpoint, shared_store

directory, proc = sys.argv[1], int(sys.argv[2])
errors = []


@checkpoint(directory=directory)
def work(item):
    return {"item": item, "square": item * item, "pad": "x" * (item % 7) * 1000}


def thread_main(t):
    shared = list(range(600))  # every thread of both processes writes and reads these
    own = [10_000 + proc * 1_000 + t * 20 + i for i in range(20)]  # unique to this thread
    items = shared[t::3] + own + shared[::-1]
    try:
        for item in items:
            result = work(item)
            if result["square"] != item * item:
                errors.append(("wrong", item))
    except Exception as exc:
        errors.append(repr(exc))


threads = [threading.Thread(target=thread_main, args=(t,)) for t in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join()
stores = {id(shared_store(directory)) for _ in range(3)}
print("errors", errors, "stores", len(stores))
"""


def test_ten_threads_and_two_processes_lose_no_entry(tmp_path: Path, child_env) -> None:
    directory = tmp_path / "ck"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(directory), str(p)],
            env=child_env(LATENT_ENVIRONMENT="dev"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "errors [] stores 1"
    store = CacheStore(directory)
    entries = store.entries()
    assert len(entries) == 600 + 2 * 10 * 20
    items = sorted(store.get(e.key)["item"] for e in entries)  # type: ignore[index]
    expected = list(range(600)) + [10_000 + p * 1_000 + i for p in range(2) for i in range(200)]
    assert items == expected


@pytest.mark.slow
def test_clean_venv_with_only_latent_cache_runs_the_spec_example(tmp_path: Path, child_env) -> None:
    package = Path(__file__).resolve().parents[1]
    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    install = ["uv", "pip", "install", "-q", "--python", str(python), str(package)]
    if subprocess.run(install, capture_output=True, text=True).returncode != 0:
        subprocess.run([*install, "--offline"], check=True)
    example = textwrap.dedent(
        """
        import sys
        from latent.cache import checkpoint, clear_checkpoints

        calls = []

        def process_documents(documents):
            @checkpoint  # Results persist to disk
            def expensive_llm_call(doc):
                calls.append(doc["id"])
                return {"id": doc["id"], "response": doc["prompt"][::-1]}

            return [expensive_llm_call(doc) for doc in documents]

        docs = [{"id": i, "prompt": f"p{i}"} for i in range(50)]
        assert process_documents(docs) == process_documents(docs)
        assert calls == list(range(50)), calls
        heavy = [m for m in ("pandas", "numpy", "prefect", "mlflow") if m in sys.modules]
        assert not heavy, heavy
        print("cleared", clear_checkpoints())
        """
    )
    project = tmp_path / "proj"
    (project / "config").mkdir(parents=True)
    (project / "config" / "latent.toml").write_text('environment = "dev"\n')
    env = {k: v for k, v in child_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(python), "-c", example], cwd=project, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cleared 50"
    missing = subprocess.run(
        [str(python), "-c", "import pandas"], capture_output=True, text=True, env=env
    )
    assert missing.returncode != 0  # truly a venv without pandas
    assert (project / ".latent" / "cache" / "cache.db").is_file()


ASYNC_LOOP = """
import asyncio, os, signal, sys
from latent.cache import checkpoint

log_path, crash_at = sys.argv[1], int(sys.argv[2])
log = open(log_path, "a")


@checkpoint
async def ask(doc):
    log.write(f"{doc['id']}\\n")
    log.flush()
    await asyncio.sleep(0)
    if doc["id"] == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"id": doc["id"], "response": doc["prompt"].upper()}


async def main():
    docs = [{"id": i, "prompt": f"doc {i}"} for i in range(400)]
    results = []
    for start in range(0, len(docs), 50):  # gather in waves of 50, as a rate-limited client would
        results += await asyncio.gather(*(ask(d) for d in docs[start:start + 50]))
    assert [r["id"] for r in results] == list(range(400))
    print("done", len(results))


asyncio.run(main())
"""


def test_async_checkpoint_resumes_after_sigkill_under_gather(tmp_path: Path, child_env) -> None:
    env = child_env(LATENT_ENVIRONMENT="dev")
    project = tmp_path / "proj"
    (project / "config").mkdir(parents=True)
    (project / "config" / "latent.toml").write_text('environment = "dev"\n')
    log = tmp_path / "calls.log"

    def run(crash_at: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", ASYNC_LOOP, str(log), str(crash_at)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    crashed = run(crash_at=237)
    assert crashed.returncode == -signal.SIGKILL
    first = log.read_text().split()
    assert "237" in first
    done = run(crash_at=-1)
    assert done.returncode == 0, done.stderr
    assert "done 400" in done.stdout
    second = log.read_text().split()[len(first) :]
    # items that finished before the kill (200-236 of the crash's wave too) are not called again
    assert sorted(map(int, second)) == list(range(237, 400))
