"""The documentation site builds strictly (broken links and anchors fail) and offline, and the
README points readers to it."""

from __future__ import annotations

import json
import os
import re
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
    assert on_disk - listed == set(), "add these pages to `nav:` in mkdocs.yml"
    assert listed - on_disk == set(), "these `nav:` entries of mkdocs.yml have no page"
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


def _blocks(page: str, language: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _rows(output: str) -> set[tuple[str, str, str]]:
    """(task, status, calls) of `latent run`'s summary table."""
    found = re.findall(r"│\s*\w+\s*│\s*(\w+)\s*│\s*(Completed|Cached|Failed)\s*│\s*(\d+)", output)
    return set(found)


@pytest.mark.slow
def test_getting_started_works_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    """Follow docs/getting-started.md step by step and check what it says a reader sees.

    The flow is run in its documented fallback form (sync `answer`/`complete`, as the page's note
    says for versions without async tasks) until async tasks land; then run it as written.
    """
    from typer.testing import CliRunner

    from latent.prefect.cli import app

    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    for var in ("LATENT_ENVIRONMENT", "LATENT_PROJECT_ROOT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LATENT_MLFLOW_ENABLED", "false")
    assert runner.invoke(app, ["init", "my-evals"]).exit_code == 0
    root = tmp_path / "my-evals"
    monkeypatch.chdir(root)
    assert runner.invoke(app, ["new", "flow", "qa"]).exit_code == 0

    questions, flow_code = _blocks("getting-started.md", "json")[0], ""
    yamls = _blocks("getting-started.md", "yaml")
    (root / "data" / "questions.jsonl").write_text(questions)
    (root / "config" / "catalog.yaml").write_text(yamls[0])
    (root / "flows" / "qa" / "parameters.yaml").write_text(yamls[1])
    (root / "flows" / "qa" / "catalog.yaml").write_text(yamls[2])
    flow_code = _blocks("getting-started.md", "python")[0]
    flow_code = flow_code.replace("async def", "def").replace("await complete", "complete")
    flow_code = flow_code.replace("await asyncio.sleep(0.05)", "pass")
    (root / "flows" / "qa" / "flow.py").write_text(flow_code)

    first = runner.invoke(app, ["run", "qa"])
    assert first.exit_code == 0, first.output
    assert _rows(first.output) == {
        ("answer", "Completed", "3"),
        ("grade", "Completed", "1"),
        ("summarise", "Completed", "1"),
    }
    summary = json.loads((root / "data/qa/summary.json").read_text())
    assert round(summary["accuracy"], 2) == 0.67 and summary["questions"] == 3

    again = runner.invoke(app, ["run", "qa"])
    assert {status for _, status, _ in _rows(again.output)} == {"Cached"}, again.output

    warmer = runner.invoke(app, ["run", "qa", "--param", "temperature=0.7"])
    assert ("answer", "Completed", "3") in _rows(warmer.output), warmer.output

    with (root / "data" / "questions.jsonl").open("a") as fh:
        fh.write('{"id": 4, "question": "What is 3 * 3?", "expected": "9"}\n')
    more = runner.invoke(app, ["run", "qa"])
    assert {("answer", "Completed", "1"), ("answer", "Cached", "3")} <= _rows(more.output)
