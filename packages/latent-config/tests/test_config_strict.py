"""Strict parameters and scoped overrides (issue 14), through latent-config's Python API.

A typo in parameters.yaml, global.yaml or an override is an error naming the file and line (or
the override), the key and the nearest field; `Project.scope_overrides` gives each override to
the flows that have the key, or to the one flow it names.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from latent.config import (
    ParameterOverrideError,
    Project,
    RunConfig,
    UnknownParameterError,
    bind_run,
    params,
)


class Forest(BaseModel):
    n_estimators: int = 100
    max_depth: int | None = None


class TrainConfig(BaseModel):
    seed: int = 0
    forest: Forest = Forest()
    logreg: dict[str, float] = Field(default_factory=lambda: {"C": 1.0})


class OpenConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    seed: int = 0


FILES = {
    "config/global.yaml": "seed: 7\nshared_only: 1\n",
    "flows/train/parameters.yaml": "forest:\n  max_depth: 4\n  n_estimator: 300\n",
    "flows/evaluate/parameters.yaml": "threshold: 0.5\n",
}


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Project:
    return Project(make_project(FILES))


def test_a_typo_in_the_flows_file_names_file_line_key_and_nearest_field(
    project: Project,
) -> None:
    with pytest.raises(UnknownParameterError) as info:
        RunConfig.load("train", project=project, schema=TrainConfig)
    message = str(info.value)
    assert "forest.n_estimator: unknown parameter" in message
    assert "flows/train/parameters.yaml line 3" in message
    assert "Did you mean 'n_estimators'?" in message
    assert 'ConfigDict(extra="allow")' in message
    assert isinstance(info.value, ValueError)  # still a ConfigValidationError
    assert str(pickle.loads(pickle.dumps(info.value))) == message


def test_a_typo_in_an_override_names_the_override(make_project: Callable[..., Path]) -> None:
    project = Project(make_project({"flows/train/parameters.yaml": "seed: 1\n"}))
    with pytest.raises(UnknownParameterError) as info:
        RunConfig.load(
            "train", project=project, schema=TrainConfig, overrides=["forest.n_estimator=50"]
        )
    message = str(info.value)
    assert "forest.n_estimator: unknown parameter, set by the override" in message
    assert "'forest.n_estimator=50'" in message and "Did you mean 'n_estimators'?" in message


def test_global_keys_of_other_flows_are_allowed_but_not_under_a_declared_field(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(
        {
            "config/global.yaml": "seed: 7\nshared_only: 1\n",
            "flows/train/parameters.yaml": "forest: {n_estimators: 300}\n",
        }
    )
    run = RunConfig.load("train", project=Project(root), schema=TrainConfig)
    # What the run used (and MLflow records): validated, defaults in, other flows' keys out.
    assert run.parameters == {
        "seed": 7,
        "forest": {"n_estimators": 300, "max_depth": None},
        "logreg": {"C": 1.0},
    }
    (root / "config/global.yaml").write_text("seed: 7\nforest:\n  n_estimatorz: 3\n")
    with pytest.raises(UnknownParameterError, match=r"config/global\.yaml line 3"):
        RunConfig.load("train", project=Project(root), schema=TrainConfig)


def test_a_schema_opts_out_with_extra_allow(make_project: Callable[..., Path]) -> None:
    root = make_project({"flows/open/parameters.yaml": "seed: 2\nanything: [1, 2]\n"})
    run = RunConfig.load("open", project=Project(root), schema=OpenConfig)
    with bind_run(run):
        assert params.anything == [1, 2]
    assert run.parameters == {"seed": 2, "anything": [1, 2]}


def test_keys_below_a_plain_dict_field_are_the_fields_business(project: Project) -> None:
    (project.root / "flows/train/parameters.yaml").write_text("logreg: {C: 0.5, penalty: 2}\n")
    run = RunConfig.load("train", project=project, schema=TrainConfig)
    assert run.parameters["logreg"] == {"C": 0.5, "penalty": 2}


# -- scoped overrides ------------------------------------------------------------------------


def test_a_plain_override_goes_only_to_the_flows_that_have_the_key(project: Project) -> None:
    (project.root / "flows/train/parameters.yaml").write_text("forest: {n_estimators: 10}\n")
    scoped = project.scope_overrides(
        ["logreg.C=0.5", "threshold=0.9", "seed=3"], {"train": TrainConfig, "evaluate": None}
    )
    assert scoped == {
        "train": {"logreg.C": 0.5, "seed": 3},
        "evaluate": {"threshold": 0.9, "seed": 3},  # seed: global.yaml gives evaluate one
    }


def test_a_flow_prefix_targets_one_flow_and_cross_flow_get_sees_it(project: Project) -> None:
    (project.root / "flows/train/parameters.yaml").write_text("forest: {n_estimators: 10}\n")
    scoped = project.scope_overrides(["train.seed=5"], {"train": TrainConfig, "evaluate": None})
    assert scoped == {"train": {"seed": 5}, "evaluate": {}}
    train = RunConfig.load("train", project=project, schema=TrainConfig, overrides=scoped["train"])
    assert train.parameters["seed"] == 5
    evaluate = RunConfig.load(
        "evaluate", project=project, overrides=scoped["evaluate"], overrides_by_flow=scoped
    )
    with bind_run(evaluate):
        assert params.seed == 7  # the override was for train only
        assert params.get("train.seed") == 5  # ...and evaluate's cross-flow read sees it
        assert params.get("train.forest.n_estimators") == 10


def test_a_flow_not_in_the_command_can_be_targeted_for_cross_flow_reads(
    project: Project,
) -> None:
    scoped = project.scope_overrides(["train.forest.max_depth=9"], {"evaluate": None})
    assert scoped == {"evaluate": {}, "train": {"forest.max_depth": 9}}
    with pytest.raises(ParameterOverrideError, match="no flow in this run"):
        project.scope_overrides(["nowhere.key=1"], {"evaluate": None})


def test_an_override_no_flow_accepts_is_an_error_with_the_nearest_key(project: Project) -> None:
    with pytest.raises(ParameterOverrideError) as info:
        project.scope_overrides(["forest.n_estimator=50"], {"train": TrainConfig, "evaluate": None})
    message = str(info.value)
    assert "'forest.n_estimator=50'" in message and "no flow in this run" in message
    assert "In flow 'train': did you mean 'forest.n_estimators'?" in message
    with pytest.raises(ParameterOverrideError, match="flow 'train' has no parameter 'sed'"):
        project.scope_overrides(["train.sed=1"], {"train": TrainConfig})
    with pytest.raises(ParameterOverrideError, match="did you mean 'threshold'"):
        project.scope_overrides(["threshhold=1"], {"evaluate": None})


def test_describe_parameters_lists_fields_types_defaults_and_file_values(
    project: Project,
) -> None:
    (project.root / "flows/train/parameters.yaml").write_text("forest: {n_estimators: 5}\n")
    assert project.describe_parameters("train", TrainConfig) == [
        ("seed", "int", "0", "7"),
        ("forest.n_estimators", "int", "100", "5"),
        ("forest.max_depth", "int | None", "None", ""),
        ("logreg", "dict[str, float]", "{'C': 1.0}", ""),
    ]
    assert project.describe_parameters("evaluate") == [
        ("seed", "int", "", "7"),
        ("shared_only", "int", "", "1"),
        ("threshold", "float", "", "0.5"),
    ]
