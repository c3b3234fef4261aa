"""Saved datasets get the permissions any program of the user's would give them (the umask),
not the 0600 of a private temp file; a file being replaced keeps its mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from latent.config.datasets import JSONDataset, TextDataset


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_new_outputs_honour_the_umask(tmp_path: Path, mask: int, expected: int) -> None:
    target = tmp_path / "data" / "scores.json"
    with umask(mask):
        JSONDataset("scores", target).save({"accuracy": 0.9})
    assert mode(target) == expected
    assert JSONDataset("scores", target).load() == {"accuracy": 0.9}
    assert [p.name for p in target.parent.iterdir()] == ["scores.json"]  # no temp file left


def test_a_replaced_output_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("old")
    target.chmod(0o640)
    with umask(0o022):
        TextDataset("notes", target).save("new")
    assert target.read_text() == "new" and mode(target) == 0o640
