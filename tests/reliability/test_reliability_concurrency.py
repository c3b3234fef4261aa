"""Issue 6.2: two processes run the same flow against one project at the same time.

Same task cache, same checkpoint store, same output datasets: both finish, the outputs are
complete, valid files (atomic rename, no stray temp files), no `database is locked` escapes and
no cache entry is lost (a third run executes nothing).
"""

from __future__ import annotations

import collections
import json

import pandas as pd
import pytest
from reliability_project import ProjectDir, no_traceback

N = 300

SHARED_FLOW = """
import pandas as pd
from latent.prefect import checkpoint, flow, task

@task("score_row")
def score_row(row: dict) -> dict:
    count("row-" + str(row["id"]))
    return {"id": row["id"], "score": len(row["text"])}

@task("annotate", cache=False)
def annotate(scores: list) -> list:
    @checkpoint
    def note(score: dict) -> str:
        count("note-" + str(score["id"]))
        return f"{score['id']}:{score['score']}"
    return [note(s) for s in scores]

@flow("shared", input=["rows"], output=["table", "notes"])
def shared(rows):
    scores = [f.result() for f in score_row.map(row=rows)]
    return pd.DataFrame(scores), annotate(scores)
"""


@pytest.mark.slow
def test_two_processes_share_one_project(project: ProjectDir, prefect_api_url: str) -> None:
    rows = [{"id": i, "text": "w" * (i % 13)} for i in range(N)]
    (project.root / "data/rows.json").write_text(json.dumps(rows))
    project.write("config/catalog.yaml", "rows:\n  type: json\n  filepath: data/rows.json\n")
    project.flow(
        "shared",
        SHARED_FLOW,
        catalog={
            "table": {"type": "parquet", "filepath": "data/shared/table.parquet"},
            "notes": {"type": "json", "filepath": "data/shared/notes.json"},
        },
    )
    project.script("run_shared.py", "shared")
    env = {"PREFECT_API_URL": prefect_api_url}
    procs = [project.popen("run_shared.py", log=f"p{i}", env=env) for i in range(2)]
    codes = [p.wait(timeout=300) for p in procs]
    for i, code in enumerate(codes):
        err = project.text(f"p{i}.err")
        assert code == 0, err
        assert no_traceback(err), err
        assert "database is locked" not in err + project.text(f"p{i}.out")

    expected_scores = [{"id": r["id"], "score": len(r["text"])} for r in rows]
    table = pd.read_parquet(project.root / "data/shared/table.parquet")
    assert table.to_dict(orient="records") == expected_scores
    notes = json.loads((project.root / "data/shared/notes.json").read_text())
    assert notes == [f"{s['id']}:{s['score']}" for s in expected_scores]
    assert not list((project.root / "data").rglob("*.tmp"))  # no half-written leftovers

    executed = collections.Counter(project.calls())
    for prefix in ("row-", "note-"):
        done = {k for k in executed if k.startswith(prefix)}
        assert len(done) == N  # every item ran, at most once per process
    assert max(executed.values()) <= 2

    # no entry lost: a third run, in-process, is answered entirely from the shared stores
    before = len(project.calls())
    frame, third_notes = project.load("shared")()
    assert frame.to_dict(orient="records") == expected_scores and third_notes == notes
    assert len(project.calls()) == before


FOUR_FLOW = """
import time
from latent.prefect import flow, task

@task("judge")
def judge(row: dict) -> int:
    count("row-" + str(row["id"]))
    time.sleep(0.05)  # a model call: long enough for the runs to overlap
    return row["id"] * 3

@task("total")
def total(values: list) -> int:
    count("total")
    time.sleep(0.5)
    return sum(values)

@flow("four")
def four():
    values = [f.result() for f in judge.map(row=[{"id": i} for i in range(80)])]
    return total(values)
"""


@pytest.mark.slow
def test_four_runs_at_once_compute_every_result_once(
    project: ProjectDir, prefect_api_url: str
) -> None:
    """Issue 16: four `latent run`s of one project started together: each row and each task
    call is computed by one of them; the others wait for its record and serve it as a hit."""
    import subprocess
    import sys
    from pathlib import Path

    from reliability_project import child_env

    project.flow("four", FOUR_FLOW)
    latent = str(Path(sys.executable).parent / "latent")
    env = {**child_env(), "COLUMNS": "200", "PREFECT_API_URL": prefect_api_url}
    procs = [
        subprocess.Popen(
            [latent, "run", "four"],
            cwd=project.root,
            stdout=open(project.root / f"r{i}.out", "wb"),  # noqa: SIM115
            stderr=open(project.root / f"r{i}.err", "wb"),  # noqa: SIM115
            env=env,
        )
        for i in range(4)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    for i, code in enumerate(codes):
        out = project.text(f"r{i}.out") + project.text(f"r{i}.err")
        assert code == 0, out
        assert no_traceback(out), out
        assert "database is locked" not in out
    executed = collections.Counter(project.calls())
    assert executed == collections.Counter([f"row-{i}" for i in range(80)] + ["total"])
    assert not list((project.root / ".latent/results.claims").iterdir())  # all released
