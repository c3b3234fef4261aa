"""An evaluation flow's results where users look: read back with MlflowClient and Prefect's client.

The flow reads a catalog CSV, maps a task that logs through `mlflow.log_metric` (Prefect's
worker threads) and a coroutine that logs through `log_metric` and `mlflow.log_param`, and
returns numbers and a table. (Async Latent tasks come with the row engine; the coroutine runs
inside a sync task here.)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from project_dir import ProjectDir

MLFLOW_ON = """\
environment = "dev"

[mlflow]
enabled = true
"""

EVAL_FLOW = """
import asyncio

import mlflow
import pandas as pd

from latent.prefect import flow, log_metric, log_table, params, task


@task("judge", cache=False)
def judge(question: str) -> float:
    score = 1.0 if "capital" in question else 0.5
    mlflow.log_metric("judge_score", score)  # MLflow's own API, in a Prefect worker thread
    return score


async def _mean(scores: list) -> float:
    await asyncio.sleep(0)
    mean = sum(scores) / len(scores)
    log_metric("async_mean", mean)  # Latent's API, in a coroutine
    mlflow.log_param("averaged", len(scores))  # MLflow's, in the same coroutine
    return mean


@task("summarise", cache=False)
def summarise(scores: list) -> float:
    return asyncio.run(_mean(scores))


@flow("evaluate", input=["questions"], output=["report"])
def evaluate(questions: pd.DataFrame) -> dict:
    scores = [f.result() for f in judge.map(questions["question"].tolist())]
    mean = summarise(scores)
    per_row = questions.assign(score=scores)
    log_table(per_row, "per_row")
    return {"pass_rate": sum(s == 1.0 for s in scores) / len(scores), "mean_score": mean,
            "threshold": params.threshold}
"""


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow store: creating one costs seconds, copying it does not."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def evaluation(project: ProjectDir, template_store: Path) -> ProjectDir:
    project.write("config/latent.toml", MLFLOW_ON)
    (project.root / ".latent").mkdir(exist_ok=True)
    shutil.copyfile(template_store, project.root / ".latent" / "mlflow.db")
    project.write(
        "data/questions.csv",
        "id,question\n1,capital of France?\n2,largest ocean?\n3,capital of Japan?\n",
    )
    project.flow(
        "evaluate",
        EVAL_FLOW,
        parameters={"threshold": 0.5, "judge": {"model": "m1", "api_key": "sk-secret"}},
        catalog={
            "questions": {"type": "pandas.CSVDataset", "filepath": "data/questions.csv"},
            "report": {"type": "json.JSONDataset", "filepath": "data/report.json"},
        },
    )
    return project


def _client(project: ProjectDir) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project.root / '.latent' / 'mlflow.db'}")


def _run_of(client: Any, flow: str) -> Any:
    experiment = client.get_experiment_by_name(flow)
    (run,) = client.search_runs([experiment.experiment_id])
    return run


@pytest.mark.slow
def test_evaluation_results_in_mlflow_and_links_in_prefect(evaluation: ProjectDir) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from latent.cache import fingerprint_paths

    result = evaluation.load("evaluate")()
    assert result["pass_rate"] == pytest.approx(2 / 3)

    client = _client(evaluation)
    run = _run_of(client, "evaluate")
    metrics = run.data.metrics
    # what the flow returned, and what tasks logged from worker threads and a coroutine
    assert metrics["pass_rate"] == pytest.approx(2 / 3)
    assert metrics["mean_score"] == pytest.approx(2.5 / 3)
    assert metrics["threshold"] == 0.5
    assert metrics["async_mean"] == pytest.approx(2.5 / 3)
    assert run.data.params["averaged"] == "3"
    history = client.get_metric_history(run.info.run_id, "judge_score")
    assert sorted(m.value for m in history) == [0.5, 1.0, 1.0]
    assert client.search_runs([client.get_experiment_by_name("Default").experiment_id]) == []
    # the per-row table, and the catalog data the run read and wrote, with Latent's digests
    table = client.load_table(run.info.experiment_id, "per_row.json", run_ids=[run.info.run_id])
    assert table["score"].tolist() == [1.0, 0.5, 1.0]
    datasets = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    questions = datasets["questions"]
    expected = fingerprint_paths(
        [str(evaluation.root / "data" / "questions.csv")],
        index_dir=evaluation.root / ".latent" / "cache",
    )
    assert questions.dataset.digest == expected[:36]
    assert questions.tags[0].value == "input"
    assert datasets["report"].tags[0].value == "output"
    # where it came from, and the Prefect flow run it belongs to
    tags = run.data.tags
    assert tags["mlflow.source.name"] == str(evaluation.root / "flows" / "evaluate" / "flow.py")
    assert tags["mlflow.user"]
    flow_run_id = tags["prefect.flow_run.id"]
    assert tags["prefect.flow_run.url"].endswith(f"/runs/flow-run/{flow_run_id}")
    artifacts = Path(client.get_experiment(run.info.experiment_id).artifact_location)
    assert artifacts.is_relative_to(evaluation.root / ".latent")
    assert not (evaluation.root / "mlruns").exists()

    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(flow_run_id)
        (artifact,) = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
    assert artifact.type == "markdown" and artifact.key == "evaluate-run"
    markdown = str(artifact.data)
    assert f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in markdown
    (trace,) = client.search_traces(locations=[run.info.experiment_id])
    assert trace.info.trace_id in markdown
    assert "| `threshold` | 0.5 |" in markdown
    assert "| `judge.api_key` | *** |" in markdown and "sk-secret" not in markdown
    # the root span shows what the flow returned
    root = next(s for s in trace.data.spans if s.parent_id is None)
    assert root.outputs["pass_rate"] == pytest.approx(2 / 3, abs=1e-3)


@pytest.mark.slow
def test_latent_run_prints_where_to_look(evaluation: ProjectDir) -> None:
    out = evaluation.latent("run", "evaluate").stdout
    client = _client(evaluation)
    run = _run_of(client, "evaluate")
    assert f"/runs/{run.info.run_id}   (evaluate)" in out
    assert "MLflow UI:  latent ui" in out
    assert f"Prefect UI: {run.data.tags['prefect.flow_run.url']}" in out


def test_latent_ui_without_the_ui_extra_prints_the_install_hint(
    project: ProjectDir, tmp_path: Path
) -> None:
    # Flask cannot be uninstalled from the test environment: a module that fails to import
    # stands in for its absence.
    shadow = tmp_path / "no_flask"
    (shadow / "flask").mkdir(parents=True)
    (shadow / "flask" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    exe = Path(sys.executable).parent / "latent"
    proc = subprocess.run(
        [str(exe), "ui"], cwd=project.root, capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1
    assert "pip install 'latent-prefect[ui]'" in proc.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str) -> Any:
    import json

    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_latent_ui_serves_the_run_page_api(evaluation: ProjectDir) -> None:
    """What the MLflow UI's run page fetches: the run (metrics, tags) and its artifact list."""
    evaluation.latent("run", "evaluate")
    run = _run_of(_client(evaluation), "evaluate")
    port = _free_port()
    started = evaluation.latent("ui", "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        assert f"MLflow UI:  {url}" in started.stdout
        again = evaluation.latent("ui")  # found, not started twice
        assert f"MLflow UI:  {url}" in again.stdout
        api = f"{url}/ajax-api/2.0/mlflow"
        page = _get_json(f"{api}/runs/get?run_id={run.info.run_id}")["run"]
        metrics = {m["key"]: m["value"] for m in page["data"]["metrics"]}
        assert metrics["pass_rate"] == pytest.approx(2 / 3)
        assert metrics["async_mean"] == pytest.approx(2.5 / 3)
        names = [
            f["path"] for f in _get_json(f"{api}/artifacts/list?run_id={run.info.run_id}")["files"]
        ]
        assert names == ["per_row.json"]
        tags = {t["key"]: t["value"] for t in page["data"]["tags"]}
        assert tags["mlflow.loggedArtifacts"].count("per_row.json") == 1
    finally:
        evaluation.latent("ui", "--stop")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
        except OSError:
            break
        time.sleep(0.2)  # waiting for the stopped server to go away, bounded
    else:
        pytest.fail("the MLflow UI is still answering after latent ui --stop")


ROWS_FLOW = """
import pandas as pd

from latent.prefect import flow, task


@task("ask", span_type="LLM")
def ask(item: dict) -> dict:
    usage = {"prompt_tokens": 10, "completion_tokens": item["id"]}
    return {"id": item["id"], "answer": item["q"].upper(), "usage": usage}


@task("collect", output="answers")
def collect(answers: list) -> pd.DataFrame:
    return pd.DataFrame([{"id": a["id"], "answer": a["answer"]} for a in answers])


@flow("rows")
def rows() -> int:
    items = [{"id": i, "q": f"question {i}"} for i in (1, 2, 3)]
    answers = [f.result() for f in ask.map(items)]
    return len(collect(answers))
"""


@pytest.mark.slow
def test_task_spans_tell_rows_apart_and_cached_rows_show(
    project: ProjectDir, template_store: Path
) -> None:
    project.write("config/latent.toml", MLFLOW_ON)
    (project.root / ".latent").mkdir(exist_ok=True)
    shutil.copyfile(template_store, project.root / ".latent" / "mlflow.db")
    project.flow("rows", ROWS_FLOW)
    assert project.load("rows")() == 3
    assert project.load("rows")() == 3  # every row and task answered from the cache

    client = _client(project)
    experiment = client.get_experiment_by_name("rows")
    first, second = sorted(
        client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time
    )

    def spans(run: Any) -> dict[str, Any]:
        (trace,) = client.search_traces(
            locations=[experiment.experiment_id], run_id=run.info.run_id
        )
        return {s.name: s for s in trace.data.spans}

    ran = spans(first)
    row = ran["ask[1] 2"].attributes
    assert (row["latent.cache"], row["latent.row.index"], row["latent.row.id"]) == ("miss", 1, "2")
    assert row["latent.cache.id"] and row["prefect.task_run.id"] and row["latent.attempt"] == 1
    assert row["mlflow.chat.tokenUsage"]["total_tokens"] == 12
    table = client.load_table(experiment.experiment_id, "answers.json", run_ids=[first.info.run_id])
    assert table["answer"].tolist() == ["QUESTION 1", "QUESTION 2", "QUESTION 3"]
    outputs = {d.dataset.name: d.tags[0].value for d in first.inputs.dataset_inputs}
    assert outputs == {"answers": "output"}

    cached = spans(second)
    assert {"ask[0] 1", "ask[1] 2", "ask[2] 3", "collect"} <= set(cached)
    assert all(cached[name].attributes["latent.cache"] == "hit" for name in ("ask[2] 3", "collect"))


def test_artifact_location_in_latent_toml_moves_the_artifacts(project: ProjectDir) -> None:
    from mlflow import MlflowClient

    from latent.config import Project

    project.write(
        "config/latent.toml",
        'environment = "dev"\n\n[mlflow]\nartifact_location = "tracking/artifacts"\n',
    )
    project.flow(
        "tabled",
        """
from latent.prefect import flow, log_table

@flow("tabled")
def tabled():
    log_table([{"a": 1}, {"a": 2}], "rows")
    return {"total": 3.0}
""",
    )
    project.load("tabled")()
    client = MlflowClient(tracking_uri=Project.discover().tracking_uri)
    experiment = client.get_experiment_by_name("tabled")
    assert experiment is not None
    location = Path(experiment.artifact_location.removeprefix("file://"))
    assert location.is_relative_to(project.root / "tracking" / "artifacts")
    assert list((project.root / "tracking" / "artifacts").rglob("rows.json"))
