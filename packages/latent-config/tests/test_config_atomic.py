"""Saves are atomic: a crash mid-write leaves the previous dataset whole."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import latent.config
from latent.config.datasets import JSONDataset

SRC = str(Path(latent.config.__file__).resolve().parents[2])

CRASHING_SAVE = """
import os
from latent.config import Dataset

class Crashing(Dataset):
    def _load(self):
        return self._read_bytes().decode()

    def _save(self, value):
        def write(fh):
            fh.write(value[: len(value) // 2].encode())
            fh.flush()
            os._exit(3)  # the process dies half-way through the write
        self._write(write)

Crashing("d", {path!r}).save("new content that never fully lands")
"""


def test_process_killed_mid_save_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "data" / "d.txt"
    target.parent.mkdir()
    target.write_text("old content")
    code = textwrap.dedent(CRASHING_SAVE).format(path=str(target))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, check=False, timeout=120)
    assert done.returncode == 3
    assert target.read_text() == "old content"
    leftovers = [p.name for p in target.parent.iterdir() if p != target]
    assert leftovers, "the killed save left its temp file"
    assert all(n.startswith(".latent-tmp-") and n.endswith(".tmp") for n in leftovers)

    # The next process that saves into that directory removes what the killed one left.
    other = target.parent / "e.txt"
    code = f"from latent.config.datasets import TextDataset as T; T('e', {str(other)!r}).save('x')"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert sorted(p.name for p in target.parent.iterdir()) == ["d.txt", "e.txt"]


def test_temp_files_of_live_writers_and_of_this_process_are_kept(tmp_path: Path) -> None:
    from latent.config import _storage

    old = 1_000_000_000  # long before any process started
    live = tmp_path / f".latent-tmp-{os.getppid()}-a.csv.x.tmp"  # our parent is alive
    dead = tmp_path / ".latent-tmp-999999999-b.csv.x.tmp"
    young = tmp_path / ".latent-tmp-999999999-c.csv.y.tmp"  # newer than this process
    other = tmp_path / ".someone-else.tmp"
    for path in (live, dead, young, other):
        path.write_bytes(b"")
    for path in (live, dead, other):
        os.utime(path, (old + 1e5, old + 1e5) if path is live else (old, old))
    os.utime(live, (_storage._STARTED - 10, _storage._STARTED - 10))
    assert _storage.remove_stale_temp_files(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, young, other)
    )


FULL_DISK_SAVE = """
import resource, sys
from latent.config import DatasetError
from latent.config.datasets import TextDataset

resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    TextDataset("report", sys.argv[1]).save("x" * 1_000_000)
except DatasetError as exc:
    print(exc)
"""


def test_save_past_a_file_size_limit_names_the_fault_not_the_type(tmp_path: Path) -> None:
    target = tmp_path / "data" / "report.txt"
    target.parent.mkdir()
    target.write_text("previous report")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_SAVE, str(target)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    message = done.stdout
    assert f"Could not save dataset 'report' (text.TextDataset) to {target}" in message
    assert "file size limit" in message and "[paths] data_dir" in message
    assert "Give it a type" not in message
    assert target.read_text() == "previous report"  # the old file is whole
    assert os.listdir(target.parent) == ["report.txt"]  # and no temp file is left


def test_a_value_the_format_cannot_hold_still_gets_the_type_hint(tmp_path: Path) -> None:
    with pytest.raises(latent.config.DatasetError, match="Give it a type that can store"):
        JSONDataset("d", tmp_path / "d.json").save({"when": object()})


def test_exception_mid_save_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    class Failing(latent.config.Dataset):
        def _load(self) -> str:
            return self._read_bytes().decode()

        def _save(self, value: str) -> None:
            def write(fh: object) -> None:
                fh.write(value.encode())  # type: ignore[attr-defined]
                raise OSError("disk full")

            self._write(write)

    target = tmp_path / "d.txt"
    target.write_text("old")
    dataset = Failing("d", target)
    with pytest.raises(latent.config.DatasetError) as info:
        dataset.save("new")
    assert "'d'" in str(info.value) and "disk full" in str(info.value)
    assert dataset.load() == "old"
    assert os.listdir(tmp_path) == ["d.txt"]
