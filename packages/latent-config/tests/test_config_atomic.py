"""Saves are atomic: a crash mid-write leaves the previous dataset whole."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import latent.config

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
    assert all(name.startswith(".d.txt.") and name.endswith(".tmp") for name in leftovers)


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
