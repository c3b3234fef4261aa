"""Point 4: typed configuration through a Pydantic model."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from latent.config import ConfigValidationError, Project


class Model(BaseModel):
    name: str
    temperature: float = 0.0


class MyFlowConfig(BaseModel):
    batch_size: int = Field(gt=0)
    model_name: str
    learning_rate: float = 0.001
    max_iterations: int = Field(default=1000, le=10000)
    model: Model | None = None


def test_valid_parameters_give_a_typed_model_with_defaults(
    make_project: Callable[..., Path],
) -> None:
    root = make_project({"flows/my_flow/parameters.yaml": "batch_size: 32\nmodel_name: gpt-4\n"})
    project = Project(root)
    typed = project.validate("my_flow", project.parameters("my_flow"), MyFlowConfig)
    assert isinstance(typed, MyFlowConfig)
    assert typed.batch_size == 32
    assert typed.max_iterations == 1000


def test_failure_message_has_one_line_per_problem(make_project: Callable[..., Path]) -> None:
    root = make_project(
        {
            "flows/my_flow/parameters.yaml": """
            batch_size: 0
            max_iterations: 20000
            model:
              temperature: hot
            """
        }
    )
    project = Project(root)
    with pytest.raises(ValueError) as info:
        project.validate("my_flow", project.parameters("my_flow"), MyFlowConfig)
    error = info.value
    assert isinstance(error, ConfigValidationError)
    lines = str(error).splitlines()
    assert lines[0] == "Configuration validation failed for flow 'my_flow':"
    assert lines[1].startswith("  batch_size: Input should be greater than 0")
    assert "(type=greater_than)" in lines[1]
    assert lines[2].startswith("  model_name: Field required")
    assert lines[3].startswith("  max_iterations: Input should be less than or equal to 10000")
    assert lines[4].startswith("  model.name: Field required")
    assert lines[5].startswith("  model.temperature: Input should be a valid number")
    assert len(lines) == 6
    assert error.flow == "my_flow"
    assert [field for field, _ in error.errors] == [
        "batch_size",
        "model_name",
        "max_iterations",
        "model.name",
        "model.temperature",
    ]


def test_validation_error_survives_pickling() -> None:
    error = ConfigValidationError("f", [("a.b", "Field required (type=missing)")])
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert copy.errors == error.errors and copy.flow == "f"
