"""Strict parameters and scoped `--param` overrides (issue 14), through `latent run` and flows
called from Python.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from project_dir import ProjectDir
from typer.testing import CliRunner

from latent.config import UnknownParameterError
from latent.prefect.cli import app

runner = CliRunner()

TRAIN = """
from pydantic import BaseModel
from latent.prefect import flow, params, task


class Forest(BaseModel):
    n_estimators: int = 100


class TrainConfig(BaseModel):
    forest: Forest = Forest()
    logreg: dict[str, float] = {"C": 1.0}


@task("fit", output="model")
def fit() -> dict:
    count("fit")
    return {"trees": params.forest.n_estimators, "C": params.logreg["C"]}


@flow("train", config_schema=TrainConfig)
def train():
    return fit()
"""

EVALUATE = """
from latent.prefect import flow, params, task


@task("score", output="report")
def score() -> dict:
    count("score")
    return {"threshold": params.threshold, "train_C": params.get("train.logreg.C")}


@flow("evaluate")
def evaluate():
    return score()
"""


def _pipeline(project: ProjectDir, train: dict | None = None) -> None:
    project.flow(
        "train",
        TRAIN,
        parameters=train if train is not None else {"forest": {"n_estimators": 300}},
        catalog={"model": {"type": "json", "filepath": "data/train/model.json"}},
    )
    project.flow(
        "evaluate",
        EVALUATE,
        parameters={"threshold": 0.5},
        catalog={"report": {"type": "json", "filepath": "data/evaluate/report.json"}},
    )


def _json(project: ProjectDir, relative: str) -> dict:
    return json.loads((project.root / relative).read_text())


def test_a_typo_in_parameters_yaml_stops_latent_run_before_any_flow_runs(
    project: ProjectDir,
) -> None:
    _pipeline(project, train={"forest": {"n_estimator": 300}})
    result = runner.invoke(app, ["run", "evaluate", "train"])
    assert result.exit_code == 1, result.output  # the project's file is wrong
    text = " ".join(result.output.split())
    assert "forest.n_estimator: unknown parameter" in text
    assert "flows/train/parameters.yaml line 2" in text
    assert "Did you mean 'n_estimators'?" in text
    assert project.calls() == []  # evaluate, first on the command line, did not run either


def test_a_typo_in_parameters_yaml_fails_the_flow_called_from_python(
    project: ProjectDir,
) -> None:
    _pipeline(project, train={"forest": {"n_estimator": 300}})
    with pytest.raises(UnknownParameterError, match="Did you mean 'n_estimators'"):
        project.load("train")()
    assert project.calls() == []


def test_a_typo_in_param_is_an_error_naming_the_override_and_nearest_key(
    project: ProjectDir,
) -> None:
    _pipeline(project)
    result = runner.invoke(app, ["run", "train", "--param", "forest.n_estimator=50"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "'forest.n_estimator=50'" in text
    assert "did you mean 'forest.n_estimators'?" in text
    targeted = runner.invoke(app, ["run", "train", "--param", "train.forest.n_estimator=50"])
    assert targeted.exit_code == 2, targeted.output
    assert "Did you mean 'n_estimators'?" in " ".join(targeted.output.split())
    assert project.calls() == []


def test_param_applies_only_where_the_key_exists_and_cross_flow_reads_see_it(
    project: ProjectDir,
) -> None:
    _pipeline(project)
    result = runner.invoke(
        app, ["run", "train", "evaluate", "--param", "logreg.C=0.5", "--param", "threshold=0.9"]
    )
    assert result.exit_code == 0, result.output
    assert _json(project, "data/train/model.json") == {"trees": 300, "C": 0.5}
    # threshold exists only in evaluate; evaluate's read of train.logreg.C sees the override.
    assert _json(project, "data/evaluate/report.json") == {"threshold": 0.9, "train_C": 0.5}


def test_flow_prefix_targets_one_flow_even_when_it_is_not_in_the_command(
    project: ProjectDir,
) -> None:
    _pipeline(project)
    result = runner.invoke(app, ["run", "evaluate", "--param", "train.logreg.C=0.25"])
    assert result.exit_code == 0, result.output
    assert _json(project, "data/evaluate/report.json") == {"threshold": 0.5, "train_C": 0.25}
    assert project.calls() == ["score"]  # train did not run: the override is for reading only


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def warnings_seen() -> Iterator[_Warnings]:
    """Warnings of Latent's and Prefect's run loggers while the block runs.

    Enter it after the flow is loaded: importing a flow configures Prefect's logging, which
    replaces the handlers of its loggers.
    """
    handler = _Warnings()
    loggers = [logging.getLogger(name) for name in ("latent", "prefect.flow_runs")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def test_a_flow_without_schema_warns_once_about_keys_nothing_read(project: ProjectDir) -> None:
    _pipeline(project)
    project.write("flows/evaluate/parameters.yaml", "threshold: 0.5\nthreshhold: 0.7\n")
    evaluate = project.load("evaluate")
    with warnings_seen() as seen:
        evaluate()
        evaluate()  # the second run reads from the cache: still nothing reads 'threshhold'
    unread = [m for m in seen.messages if "never read" in m]
    assert len(unread) == 1, seen.messages
    assert "'threshhold'" in unread[0] and "It read 'threshold'" in unread[0]
    assert "'threshold'," not in unread[0]  # the key it read is not reported


def test_latent_run_shows_the_unread_key_warning(project: ProjectDir) -> None:
    _pipeline(project)
    project.write("flows/evaluate/parameters.yaml", "threshold: 0.5\nthreshhold: 0.7\n")
    proc = project.latent("run", "evaluate")
    assert "never read parameter(s) 'threshhold'" in " ".join((proc.stdout + proc.stderr).split())


@pytest.mark.slow
def test_mlflow_records_the_validated_defaulted_values_the_run_used(project: ProjectDir) -> None:
    _pipeline(project, train={})
    project.write("config/latent.toml", 'environment = "dev"\n\n[mlflow]\nenabled = true\n')
    project.latent("run", "train", "--param", "forest.n_estimators=50")

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project.root}/.latent/mlflow.db")
    experiment = client.get_experiment_by_name("train")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params == {"forest.n_estimators": "50", "logreg.C": "1.0"}
    assert _json(project, "data/train/model.json") == {"trees": 50, "C": 1.0}


def test_latent_flows_shows_schema_types_defaults_and_file_values(project: ProjectDir) -> None:
    _pipeline(project)
    out = project.latent("flows").stdout
    rows = {
        tuple(cell.strip() for cell in line.split("│")[2:6])
        for line in out.splitlines()
        if line.count("│") >= 5
    }
    assert ("forest.n_estimators", "int", "100", "300") in rows  # typed: from TrainConfig
    assert ("logreg", "dict[str, float]", "{'C': 1.0}", "") in rows  # default left in place
    assert ("threshold", "float", "", "0.5") in rows  # evaluate has no schema: file values


OPEN = """
from pydantic import BaseModel, ConfigDict
from latent.prefect import flow, params, task


class OpenConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    seed: int = 0


@task("echo", output="seen")
def echo() -> dict:
    return {"seed": params.seed, "extra": params.anything}


@flow("open", config_schema=OpenConfig)
def open_flow():
    return echo()
"""


def test_a_schema_with_extra_allow_takes_unknown_keys_in_latent_run(project: ProjectDir) -> None:
    project.flow(
        "open",
        OPEN,
        parameters={"anything": [1, 2]},
        catalog={"seen": {"type": "json", "filepath": "data/open/seen.json"}},
    )
    result = runner.invoke(app, ["run", "open", "--param", "open.more=3"])
    assert result.exit_code == 0, result.output
    assert _json(project, "data/open/seen.json") == {"seed": 0, "extra": [1, 2]}
