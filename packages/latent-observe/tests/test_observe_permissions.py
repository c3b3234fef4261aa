"""registry.json gets the permissions the user's umask gives (not a temp file's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from latent.registry import TaskRegistry


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o007, 0o660)])
def test_registry_file_honours_the_umask(tmp_path: Path, mask: int, expected: int) -> None:
    TaskRegistry.clear()
    TaskRegistry.register_task("prepare", "clean", inputs=["raw"], outputs=["cleaned"])
    target = tmp_path / ".latent" / "registry.json"
    previous = os.umask(mask)
    try:
        TaskRegistry.save(target)
    finally:
        os.umask(previous)
        TaskRegistry.clear()
    assert stat.S_IMODE(target.stat().st_mode) == expected
    assert [p.name for p in target.parent.iterdir()] == ["registry.json"]
    TaskRegistry.load(target)
    assert "clean" in TaskRegistry.render_ascii(emoji=False)
    TaskRegistry.clear()
