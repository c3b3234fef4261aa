"""The project's saved pipeline registry: where it lives, and how a run updates it.

latent-observe's `TaskRegistry` draws this file in a process that ran no flow; it finds it
through the ``latent.registry`` entry point ``saved_registry`` (this module's
`saved_registry_file`), since latent-observe does not know where a project keeps its files.
"""

from __future__ import annotations

from pathlib import Path

from latent.config import Project
from latent.registry import TaskRegistry

__all__ = ["registry_file", "save_run", "saved_registry_file"]


def registry_file(project: Project) -> Path:
    """``<latent_dir>/registry.json``: what `latent registry` draws."""
    return project.latent_dir / "registry.json"


def saved_registry_file() -> Path | None:
    """The registry file of the project around the current directory, if it is a project."""
    project = Project.discover()
    return registry_file(project) if project.is_configured else None


def save_run(project: Project, flow: str) -> None:
    """Replace `flow`'s part (its subflows included) of the saved registry with this run's."""
    flows = TaskRegistry.to_dict()["flows"]
    ran = [flow]
    for name in ran:  # grows while it walks: children, then theirs
        ran.extend(c for c, e in flows.items() if e.get("parent") == name and c not in ran)
    TaskRegistry.save_flows(registry_file(project), ran)
