"""Issue 16.2: a full disk and a read-only `.latent/` read as one clear line, and nothing is lost.

The faults are real: a 20 MB tmpfs holds the project (filled up with a ballast file), and
read-only bind mounts cover `.latent/` or its cache. Mounting needs root with CAP_SYS_ADMIN
(tests run as root here; note chmod does not stop root from writing, which is why a read-only
mount is used); where that is not possible the tests skip and say so. A small RLIMIT_FSIZE drives
the same faults without mounts in packages/latent-cache/tests/test_cache_faults.py and
packages/latent-config/tests/test_config_atomic.py.
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_project import ProjectDir, child_env, no_traceback

N = 120

LOOP = f"""
from latent.prefect import checkpoint, flow, task

@task("loop")
def loop(n: int) -> int:
    @checkpoint
    def step(i: int) -> str:
        count(str(i))
        return str(i) * 40_000  # each result in its own file: the disk fills mid-loop

    return sum(len(step(i)) for i in range(n))

@flow("fill")
def fill():
    return loop({N})
"""


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def _mounted(target: Path, *args: str) -> Iterator[None]:
    try:
        _mount(*args, str(target))
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc)
        pytest.skip(f"cannot mount here (needs root with CAP_SYS_ADMIN): {detail!r}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, timeout=30)


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """`directory` read-only for everyone, root included (a read-only bind mount over itself)."""
    directory.mkdir(parents=True, exist_ok=True)
    with _mounted(directory, "--bind", str(directory)):
        try:
            _mount("-o", "remount,bind,ro", str(directory))
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"cannot remount read-only here: {getattr(exc, 'stderr', exc)!r}")
        yield


def _latent_run(project: ProjectDir, flow: str) -> tuple[int, str]:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "latent"), "run", flow],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**child_env(), "COLUMNS": "250"},
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_disk_full_mid_loop_names_the_cache_and_a_rerun_resumes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    mount_point = tmp_path_factory.mktemp("small-disk")
    with _mounted(mount_point, "-t", "tmpfs", "-o", "size=20m", "tmpfs"):
        project = ProjectDir(mount_point)
        for part in ("config", "flows", "data"):
            (mount_point / part).mkdir()
        project.write("config/latent.toml", 'environment = "dev"\n\n[mlflow]\nenabled = false\n')
        project.write("config/global.yaml", "")
        project.flow("fill", LOOP)
        ballast = mount_point / "ballast"
        ballast.write_bytes(b"\0" * 17_000_000)  # ~3 MB left: room for half the loop

        code, terminal = _latent_run(project, "fill")
        assert code != 0, terminal
        cache = mount_point / ".latent" / "cache"
        assert f"Cannot write to the cache directory {cache}: the disk is full" in terminal
        assert "latent_dir in the paths table of config/latent.toml" in terminal
        assert "Give it a type" not in terminal
        done_before = len(set(project.calls()))
        assert 0 < done_before < N

        ballast.unlink()  # space freed: the same command finishes the loop
        code, terminal = _latent_run(project, "fill")
        assert code == 0, terminal
        assert no_traceback(terminal), terminal
        runs = collections.Counter(project.calls())
        assert sorted(runs, key=int) == [str(i) for i in range(N)]
        # Finished rows were not recomputed; only the row being written when the disk filled.
        assert [i for i, n in runs.items() if n > 1] in ([], [max(runs, key=runs.get)])
        assert sum(runs.values()) <= N + 4


@pytest.mark.slow
def test_read_only_cache_directory_is_one_message_naming_it(project: ProjectDir) -> None:
    project.flow("fill", LOOP.replace(f"loop({N})", "loop(3)"))
    cache = project.root / ".latent" / "cache"
    with read_only(cache):
        code, terminal = _latent_run(project, "fill")
    assert code != 0, terminal
    assert f"Cannot write to the cache directory {cache}: the filesystem is read-only" in terminal
    assert "Make it writable" in terminal and "latent_dir in the paths table" in terminal
    assert "attempt to write a readonly database" not in terminal
    assert project.calls() == []  # nothing ran against a cache it could not keep


@pytest.mark.slow
def test_read_only_latent_directory_is_one_message_naming_it(project: ProjectDir) -> None:
    project.flow("fill", LOOP.replace(f"loop({N})", "loop(3)"))
    latent_dir = project.root / ".latent"
    with read_only(latent_dir):
        code, terminal = _latent_run(project, "fill")
    assert code != 0, terminal
    assert str(latent_dir) in terminal and "read-only" in terminal.lower(), terminal
    assert no_traceback(terminal), terminal
    assert "readonly database" not in terminal


@pytest.mark.slow
def test_a_checkpoint_write_fault_is_not_retried(project: ProjectDir) -> None:
    cache = project.root / "ro-cache"
    project.flow(
        "once",
        f"""
        from latent.prefect import checkpoint, flow, task

        @task("write_once", retry_delay_seconds=0)
        def write_once() -> str:
            count("body")

            @checkpoint(directory={str(cache)!r})
            def step(i: int) -> int:
                return i

            return step(1)

        @flow("once")
        def once():
            return write_once()
        """,
    )
    with read_only(cache), pytest.raises(Exception, match="Cannot write to the cache directory"):
        project.load("once")()
    assert project.calls() == ["body"]
