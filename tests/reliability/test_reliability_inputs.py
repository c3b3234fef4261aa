"""Issue 16.4: an input edited behind the cache's back (mtime put back) still re-runs its task."""

from __future__ import annotations

import os

import pytest
from reliability_project import ProjectDir

OLD = 1_600_000_000_000_000_000  # an mtime well in the past: the stat index keeps such files

FLOW = """
import pandas as pd
from latent.prefect import flow, task

@task("total", input="raw")
def total(raw: pd.DataFrame) -> int:
    count("total")
    return int(raw["value"].sum())

@flow("sums")
def sums():
    return total()
"""


@pytest.mark.slow
def test_edit_with_restored_mtime_reruns_the_task(project: ProjectDir) -> None:
    raw = project.write("data/raw.csv", "value\n1\n2\n")
    os.utime(raw, ns=(OLD, OLD))
    project.write("config/catalog.yaml", "raw:\n  type: csv\n  filepath: data/raw.csv\n")
    project.flow("sums", FLOW)
    assert project.load("sums")() == 3
    assert project.load("sums")() == 3
    assert project.calls("calls") == ["total"]  # the second run was served from the cache

    # Same size, mtime put back (`touch -d`, `cp -p`): only the ctime says the file changed.
    before = os.stat(raw)
    raw.write_text("value\n1\n5\n")
    os.utime(raw, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.stat(raw).st_size, os.stat(raw).st_mtime_ns) == (before.st_size, OLD)

    assert project.load("sums")() == 6
    assert project.calls("calls") == ["total", "total"]
