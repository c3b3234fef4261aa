"""The documentation site builds strictly (broken links and anchors fail) and offline, and the
README points readers to it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _nav_files(nav: list[object]) -> list[str]:
    files: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        files.extend(_nav_files(value) if isinstance(value, list) else [str(value)])
    return files


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    listed = set(_nav_files(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert listed == on_disk
    for page in ("getting-started.md", "comparison.md", "troubleshooting.md", "how-to/ci.md"):
        assert page in listed


def test_readme_links_to_the_documentation() -> None:
    readme = (ROOT / "README.md").read_text()
    site = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)["site_url"]
    assert site in readme


@pytest.mark.slow
def test_docs_build_strictly_and_offline(tmp_path: Path) -> None:
    # Any attempt to reach the network goes to a closed local port and fails the build.
    offline = {f"{k}_PROXY": "http://127.0.0.1:9" for k in ("HTTP", "HTTPS", "ALL")}
    env = {**os.environ, **offline, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    reference = (tmp_path / "reference" / "prefect" / "index.html").read_text()
    for name in ("latent.prefect.flow", "latent.prefect.task", "latent.prefect.params"):
        assert f'id="{name}"' in reference, name  # generated from the docstrings
    assert (tmp_path / "getting-started" / "index.html").is_file()
