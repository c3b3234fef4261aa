"""`latent cache` and `latent checkpoints`: inspect and clear what is stored."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from latent.prefect.cli._app import (
    YesOption,
    cache_app,
    checkpoints_app,
    confirm_or_exit,
    console,
    project_or_exit,
)


@cache_app.command("list")
def cache_list(
    flow: Annotated[str | None, typer.Option(help="Only this flow's tasks.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
) -> None:
    """List cached task results and checkpoint entries."""
    from latent.prefect import _cache_admin

    project = project_or_exit()
    table = Table(title=f"Task cache in {project.results_storage}")
    for column in ("flow", "task", "entries", "size"):
        table.add_column(column)
    for row in _cache_admin.task_entries(project, flow=flow, task=task):
        table.add_row(row.flow or "-", row.task, str(row.count), _size(row.size))
    console.print(table)
    table = Table(title=f"Checkpoints in {project.cache_dir}")
    for column in ("function", "entries", "size"):
        table.add_column(column)
    for function, count, size in _cache_admin.checkpoint_entries(project):
        table.add_row(function, str(count), _size(size))
    console.print(table)


@cache_app.command("clear")
def cache_clear(
    flow: Annotated[str | None, typer.Option(help="Only this flow's tasks.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    yes: YesOption = False,
) -> None:
    """Delete cached task results (all, or one flow's, or one task's); asks first."""
    from latent.prefect import _cache_admin

    project = project_or_exit()
    scope = " and ".join(
        part for part in (flow and f"flow {flow!r}", task and f"task {task!r}") if part
    )
    confirm_or_exit(
        f"Delete the cached task results of {scope or 'every task'} in {project.root}?", yes=yes
    )
    removed = _cache_admin.clear_tasks(project, flow=flow, task=task)
    console.print(f"Removed {removed} cached task result(s).")


@cache_app.command("why")
def cache_why(task: Annotated[str, typer.Argument(help="The task's name.")]) -> None:
    """Why a task ran last time instead of hitting the cache: what changed, one line each."""
    from latent.prefect import _cache_admin

    explanation = _cache_admin.why(project_or_exit(), task)
    if explanation is None:
        console.print(
            f"No miss of task '{task}' recorded yet: it has not run, or every call since the "
            "cache was cleared hit.",
            highlight=False,
        )
        raise typer.Exit(1)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(explanation["at"]))
    console.print(f"Task '{task}' last ran at {when} because:", highlight=False)
    for line in explanation["why"]:
        console.print(f"  {line}", highlight=False, markup=False)


@cache_app.command("prune")
def cache_prune() -> None:
    """Delete expired task results and checkpoint entries."""
    from latent.prefect import _cache_admin

    tasks, checkpoints = _cache_admin.prune(project_or_exit())
    console.print(f"Pruned {tasks} expired task result(s) and {checkpoints} checkpoint(s).")


@checkpoints_app.command("clear")
def checkpoints_clear(
    function: Annotated[str | None, typer.Option(help="Only this function's entries.")] = None,
    yes: YesOption = False,
) -> None:
    """Delete @checkpoint results (all, or one function's); asks first."""
    from latent.cache import clear_checkpoints

    project = project_or_exit()
    which = f"function {function!r}" if function else "every function"
    confirm_or_exit(f"Delete the checkpoints of {which} in {project.root}?", yes=yes)
    removed = clear_checkpoints(project.cache_dir, function=function)
    console.print(f"Removed {removed} checkpoint entr{'y' if removed == 1 else 'ies'}.")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"
