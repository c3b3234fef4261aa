"""Issue 6.1: a flow SIGKILLed mid-run and rerun loses nothing and redoes only unfinished work.

Each run is a real `python` process that calls the flow the way a user script does; the test
kills it with SIGKILL (no cleanup, no atexit) at random points and at a point inside a large
checkpoint write, then reruns it to the end.
"""

from __future__ import annotations

import collections
import json
import random
from pathlib import Path

import pytest
from reliability_project import ProjectDir, kill_when, line_count, no_traceback

N_DOCS = 10_000
BIG = 7_000  # this item's result is 8 MB: the kill lands while it is pickled and written

DOCS_FLOW = f"""
from latent.prefect import checkpoint, flow, task

@task("process_documents")
def process_documents(n: int) -> list:
    @checkpoint
    def expensive_llm_call(i: int) -> dict:
        count(str(i))
        pad = b"x" * (8_000_000 if i == {BIG} else 40_000 if i % 500 == 0 else 10)
        return {{"id": i, "answer": i * 2, "pad": pad}}

    return [expensive_llm_call(i) for i in range(n)]

@flow("docs", output=["answers"])
def docs():
    return [{{"id": r["id"], "answer": r["answer"], "pad": len(r["pad"])}}
            for r in process_documents({N_DOCS})]
"""


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 64))
            tail = fh.read().decode()
    except FileNotFoundError:
        return ""
    lines = tail.splitlines()
    return lines[-1] if lines and tail.endswith("\n") else ""


@pytest.mark.slow
def test_checkpointed_loop_killed_three_times_resumes_exactly(
    project: ProjectDir, prefect_api_url: str
) -> None:
    project.flow(
        "docs", DOCS_FLOW, catalog={"answers": {"type": "json", "filepath": "data/answers.json"}}
    )
    project.script("run_docs.py", "docs")
    env = {"PREFECT_API_URL": prefect_api_url}
    log = project.root / "calls.log"
    rng = random.Random()
    first, third = rng.randint(300, 3_000), rng.randint(8_000, 9_700)
    kill_points = [
        ("random early", lambda: line_count(log) >= first),
        ("inside the 8 MB checkpoint write", lambda: _last_line(log) == str(BIG)),
        ("random late", lambda: line_count(log) >= third),
    ]
    in_flight: list[str] = []  # the item each killed process was working on
    for n, (label, ready) in enumerate(kill_points):
        proc = project.popen("run_docs.py", log=f"killed{n}", env=env)
        assert kill_when(proc, ready), f"run {n} ended before the kill point ({label})"
        in_flight.append(project.calls()[-1])

    before = len(project.calls())
    code, out, err = project.run("run_docs.py", log="final", env=env)
    assert code == 0, err
    assert no_traceback(err), err
    assert "RESULT-LEN 10000" in out

    # every item's result is present exactly once, and right
    answers = json.loads((project.root / "data/answers.json").read_text())
    assert [a["id"] for a in answers] == list(range(N_DOCS))
    assert all(a["answer"] == 2 * a["id"] for a in answers)
    assert answers[BIG]["pad"] == 8_000_000

    # only unfinished items ran again: an item ran twice only if a kill interrupted it
    calls = project.calls()
    executed = collections.Counter(calls)
    assert set(executed) == {str(i) for i in range(N_DOCS)}
    twice = {item for item, n in executed.items() if n > 1}
    assert max(executed.values()) <= 2
    assert twice <= set(in_flight), (twice, in_flight, first, third)
    # the final run started where the last kill stopped, not from the beginning
    assert calls[before:][:1] == [in_flight[-1]] or int(calls[before]) > int(in_flight[-1])


MAP_FLOW = """
import time
from latent.prefect import flow, task

@task("score_row")
def score_row(row: dict) -> dict:
    count(str(row["id"]))
    time.sleep(0.02)
    return {"id": row["id"], "score": len(row["text"]) * 10}

@flow("scoring", input=["rows"], output=["scores"])
def scoring(rows):
    return [f.result() for f in score_row.map(row=rows)]
"""

N_ROWS = 200
IN_FLIGHT = 4


@pytest.mark.slow
def test_mapped_row_cache_killed_mid_map_resumes(project: ProjectDir, prefect_api_url: str) -> None:
    toml = project.root / "config/latent.toml"
    toml.write_text(toml.read_text() + f"\n[prefect]\nmax_in_flight = {IN_FLIGHT}\n")
    rows = [{"id": i, "text": "t" * (i % 17)} for i in range(N_ROWS)]
    (project.root / "data/rows.json").write_text(json.dumps(rows))
    project.write("config/catalog.yaml", "rows:\n  type: json\n  filepath: data/rows.json\n")
    project.flow(
        "scoring", MAP_FLOW, catalog={"scores": {"type": "json", "filepath": "data/scores.json"}}
    )
    project.script("run_scoring.py", "scoring")
    env = {"PREFECT_API_URL": prefect_api_url}
    log = project.root / "calls.log"
    kill_at = random.randint(40, 140)
    proc = project.popen("run_scoring.py", log="killed", env=env)
    assert kill_when(proc, lambda: line_count(log) >= kill_at)
    ran_before = set(project.calls())
    assert not (project.root / "data/scores.json").exists()

    code, _, err = project.run("run_scoring.py", log="final", env=env)
    assert code == 0, err
    assert no_traceback(err), err
    scores = json.loads((project.root / "data/scores.json").read_text())
    assert scores == [{"id": r["id"], "score": len(r["text"]) * 10} for r in rows]

    executed = collections.Counter(project.calls())
    assert set(executed) == {str(i) for i in range(N_ROWS)}
    again = {row for row, n in executed.items() if n > 1}
    assert again <= ran_before
    # rows whose result was stored before the kill did not run again; only those in flight did
    assert len(again) <= IN_FLIGHT, (kill_at, sorted(again, key=int))
