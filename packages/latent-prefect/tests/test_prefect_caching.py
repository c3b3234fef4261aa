"""Caching that stays correct: hits across processes, and misses exactly when they should."""

from __future__ import annotations

import time
import warnings

import pandas as pd
from project_dir import ProjectDir

CACHED_FLOW = """
import pandas as pd
from datetime import timedelta
from latent.prefect import flow, params, task

@task("clean", input="raw_data", output="cleaned")
def clean(raw_data: pd.DataFrame) -> pd.DataFrame:
    count("clean")
    return raw_data[raw_data["value"] > 0]

@task("scale")
def scale(df: pd.DataFrame) -> pd.DataFrame:
    count("scale")
    return df.assign(value=df["value"] * params.factor)

@task("label")
def label(df: pd.DataFrame) -> list:
    count("label")
    return [params.prefix + str(v) for v in df["value"]]

@task("stamp", cache=False)
def stamp() -> float:
    count("stamp")
    return 1.0

@flow("pipe")
def pipe():
    cleaned = clean()
    scaled = scale(cleaned)
    stamp()
    return label(scaled)
"""


def _pipe_project(project: ProjectDir) -> None:
    pd.DataFrame({"value": [1, -1, 2]}).to_csv(project.root / "data/raw.csv", index=False)
    project.write("config/catalog.yaml", "raw_data:\n  type: csv\n  filepath: data/raw.csv\n")
    project.flow(
        "pipe",
        CACHED_FLOW,
        parameters={"factor": 10, "prefix": "v=", "unused": 1},
        catalog={"cleaned": {"type": "parquet", "filepath": "data/pipe/cleaned.parquet"}},
    )


def test_second_process_hits_the_cache(project: ProjectDir) -> None:
    _pipe_project(project)
    project.latent("run", "pipe")
    assert sorted(project.calls()) == ["clean", "label", "scale", "stamp"]
    second = project.latent("run", "pipe")
    assert sorted(project.calls()) == ["clean", "label", "scale", "stamp", "stamp"]
    assert "Cached" in second.stdout


def test_invalidation_input_file_params_and_output(project: ProjectDir) -> None:
    _pipe_project(project)
    pipe = project.load("pipe")
    assert pipe() == ["v=10", "v=20"]
    assert pipe() == ["v=10", "v=20"]
    assert project.calls().count("clean") == 1

    # a parameter no task reads: nothing re-runs
    project.flow(
        "pipe",
        CACHED_FLOW,
        parameters={"factor": 10, "prefix": "v=", "unused": 2},
        catalog={"cleaned": {"type": "parquet", "filepath": "data/pipe/cleaned.parquet"}},
    )
    pipe = project.load("pipe")
    pipe()
    assert [project.calls().count(t) for t in ("clean", "scale", "label")] == [1, 1, 1]

    # a parameter that only `label` reads: exactly `label` re-runs
    project.flow(
        "pipe",
        CACHED_FLOW,
        parameters={"factor": 10, "prefix": "x=", "unused": 2},
        catalog={"cleaned": {"type": "parquet", "filepath": "data/pipe/cleaned.parquet"}},
    )
    pipe = project.load("pipe")
    assert pipe() == ["x=10", "x=20"]
    assert [project.calls().count(t) for t in ("clean", "scale", "label")] == [1, 1, 2]

    # the input file changes: the file-keyed task and what follows from new data re-run
    pd.DataFrame({"value": [1, -1, 3]}).to_csv(project.root / "data/raw.csv", index=False)
    assert pipe() == ["x=10", "x=30"]
    assert [project.calls().count(t) for t in ("clean", "scale", "label")] == [2, 2, 3]

    # the output dataset was deleted: the task runs again and writes it
    (project.root / "data/pipe/cleaned.parquet").unlink()
    pipe()
    assert project.calls().count("clean") == 3
    assert (project.root / "data/pipe/cleaned.parquet").exists()
    assert project.calls().count("stamp") == 6  # cache=False: every one of the 6 runs


def test_code_change_invalidates_and_cosmetic_edit_does_not(project: ProjectDir) -> None:
    code = """
from latent.prefect import flow, task

def helper(x):
    return x + 1

@task("compute")
def compute(x):
    count("compute")
    return helper(x)

@flow("code_flow")
def code_flow():
    return compute(1)
"""
    project.flow("code_flow", code)
    assert project.load("code_flow")() == 2
    # comments and formatting only
    project.flow("code_flow", code.replace("return helper(x)", "return helper( x )  # same"))
    assert project.load("code_flow")() == 2
    assert project.calls() == ["compute"]
    # the helper it calls changes
    project.flow("code_flow", code.replace("return x + 1", "return x + 2"))
    assert project.load("code_flow")() == 3
    assert project.calls() == ["compute", "compute"]


def test_expiry(project: ProjectDir) -> None:
    project.flow(
        "short",
        """
from datetime import timedelta
from latent.prefect import flow, task

@task("brief", cache_expiration=timedelta(seconds=1))
def brief():
    count("brief")
    return 1

@flow("short")
def short():
    return brief()
""",
    )
    short = project.load("short")
    short()
    short()
    assert project.calls() == ["brief"]
    time.sleep(1.2)
    short()
    assert project.calls() == ["brief", "brief"]


def test_map_over_1000_rows_row_level(project: ProjectDir) -> None:
    import json

    rows = [{"id": i, "text": f"row {i}"} for i in range(1000)]
    (project.root / "data/rows.json").write_text(json.dumps(rows))
    project.write("config/catalog.yaml", "rows:\n  type: json\n  filepath: data/rows.json\n")
    project.flow(
        "rows_flow",
        """
from latent.prefect import flow, task

@task("process_row")
def process_row(row_data: dict) -> dict:
    count(str(row_data["id"]))
    return {"id": row_data["id"], "n": len(row_data["text"])}

@flow("rows_flow", input=["rows"])
def rows_flow(rows):
    futures = process_row.map(row_data=rows)
    return [f.result() for f in futures]
""",
    )
    flow_obj = project.load("rows_flow")
    first = flow_obj()
    assert len(first) == 1000 and first[999] == {"id": 999, "n": 7}
    assert len(project.calls()) == 1000
    assert flow_obj() == first
    assert len(project.calls()) == 1000  # warm: zero bodies
    rows[500]["text"] = "changed!"
    (project.root / "data/rows.json").write_text(json.dumps(rows))
    third = flow_obj()
    assert third[500] == {"id": 500, "n": 8}
    assert project.calls()[1000:] == ["500"]  # exactly one body


def test_unhashable_argument_runs_uncached_with_one_warning(project: ProjectDir) -> None:
    project.flow(
        "locky",
        """
import threading
from latent.prefect import flow, task

@task("use_lock")
def use_lock(lock, x):
    count("use_lock")
    with lock:
        return x

@flow("locky")
def locky():
    lock = threading.Lock()
    return [use_lock(lock, 1), use_lock(lock, 2)]
""",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert project.load("locky")() == [1, 2]
        assert project.load("locky")() == [1, 2]
    assert project.calls() == ["use_lock"] * 4
    relevant = [w for w in caught if "use_lock" in str(w.message)]
    assert len(relevant) == 1
    text = str(relevant[0].message)
    assert "lock" in text and "register_hasher" in text and "cache=False" in text
