"""Point 3 (parameters: merge, overrides, env) and point 7's YAML errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from latent.config import (
    ConfigFileError,
    FlowNotFoundError,
    ParameterOverrideError,
    Project,
)

GLOBAL = """
model:
  name: gpt-4
  temperature: 0.7
  tags: [a, b]
batch_size: 16
seed: 1
"""
FLOW = """
model:
  temperature: 0.0
batch_size: 32
"""


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Project:
    root = make_project(
        {
            "config/global.yaml": GLOBAL,
            "flows/evaluate/parameters.yaml": FLOW,
            "flows/score/flow.py": "",
        }
    )
    return Project(root)


def test_flow_values_deep_merge_over_global(project: Project) -> None:
    assert project.parameters("evaluate") == {
        "model": {"name": "gpt-4", "temperature": 0.0, "tags": ["a", "b"]},
        "batch_size": 32,
        "seed": 1,
    }


def test_flow_without_parameters_file_gets_global(project: Project) -> None:
    assert project.parameters("score")["batch_size"] == 16


def test_string_override_replaces_only_the_leaf(project: Project) -> None:
    params = project.parameters("evaluate", ["model.temperature=0.2", "seed=7", "new.key=x"])
    assert params["model"] == {"name": "gpt-4", "temperature": 0.2, "tags": ["a", "b"]}
    assert params["seed"] == 7
    assert params["new"] == {"key": "x"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3", 3),
        ("0.5", 0.5),
        ("true", True),
        ("null", None),
        ("hello world", "hello world"),
        ("'42'", "42"),
        ("[1, 2]", [1, 2]),
        ("a: b: c", "a: b: c"),  # not valid YAML: kept as text
        ("", ""),
    ],
)
def test_string_override_values_are_yaml_scalars(
    project: Project, raw: str, expected: object
) -> None:
    assert project.parameters("evaluate", [f"value={raw}"])["value"] == expected


def test_mapping_override_with_dotted_and_nested_keys(project: Project) -> None:
    params = project.parameters(
        "evaluate", {"model.name": "claude", "batch_size": 8, "model": {"tags": ["z"]}}
    )
    assert params["model"] == {"name": "claude", "temperature": 0.0, "tags": ["z"]}
    assert params["batch_size"] == 8


def test_returned_dicts_are_fresh(project: Project) -> None:
    first = project.parameters("evaluate")
    first["model"]["name"] = "mutated"
    first["model"]["tags"].append("c")
    assert project.parameters("evaluate")["model"] == {
        "name": "gpt-4",
        "temperature": 0.0,
        "tags": ["a", "b"],
    }


def test_malformed_override_string(project: Project) -> None:
    with pytest.raises(ParameterOverrideError, match="'batch_size' is not of the form"):
        project.parameters("evaluate", ["batch_size"])


def test_override_through_a_scalar_is_refused(project: Project) -> None:
    with pytest.raises(ParameterOverrideError, match="'batch_size' is 32 \\(int\\), not a mapping"):
        project.parameters("evaluate", ["batch_size.x=1"])


def test_env_interpolation(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(
        {
            "flows/f/parameters.yaml": """
            endpoint: "${env:LATENT_TEST_URL}"
            key: "${env:LATENT_TEST_UNSET,none-given}"
            mixed: "http://${env:LATENT_TEST_HOST,localhost}:${env:LATENT_TEST_PORT,80}/v1"
            list: ["${env:LATENT_TEST_HOST,h}"]
            empty: "${env:LATENT_TEST_UNSET,}"
            """
        }
    )
    monkeypatch.setenv("LATENT_TEST_URL", "https://api")
    monkeypatch.setenv("LATENT_TEST_PORT", "8080")
    monkeypatch.delenv("LATENT_TEST_UNSET", raising=False)
    monkeypatch.delenv("LATENT_TEST_HOST", raising=False)
    params = Project(root).parameters("f", ["over=${env:LATENT_TEST_URL}"])
    assert params["endpoint"] == "https://api"
    assert params["key"] == "none-given"
    assert params["mixed"] == "http://localhost:8080/v1"
    assert params["list"] == ["h"]
    assert params["empty"] == ""
    assert params["over"] == "https://api"


def test_unset_env_without_default_names_variable_and_key(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project({"flows/f/parameters.yaml": "llm:\n  api_key: ${env:LATENT_TEST_KEY}\n"})
    monkeypatch.delenv("LATENT_TEST_KEY", raising=False)
    with pytest.raises(ConfigFileError) as info:
        Project(root).parameters("f")
    message = str(info.value)
    assert "'llm.api_key'" in message
    assert "LATENT_TEST_KEY" in message
    assert "${env:LATENT_TEST_KEY,default}" in message


def test_missing_flow_lists_existing_flows(project: Project) -> None:
    with pytest.raises(FlowNotFoundError) as info:
        project.parameters("evaluat")
    message = str(info.value)
    assert "'evaluat'" in message
    assert "'evaluate', 'score'" in message
    assert "Did you mean 'evaluate'?" in message


def test_ad_hoc_flow_without_flows_dir_gets_global(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/global.yaml": "a: 1\n"})
    assert Project(root).parameters("script") == {"a": 1}


def test_unconfigured_project_allows_ad_hoc_flows(
    tmp_path: Path, write_tree: Callable[..., Path]
) -> None:
    write_tree(tmp_path, {"config/global.yaml": "a: 1\n", "flows/x/parameters.yaml": "b: 2\n"})
    project = Project(tmp_path)
    assert project.parameters("adhoc") == {"a": 1}
    assert project.parameters("x") == {"a": 1, "b": 2}


def test_malformed_yaml_names_file_and_line(make_project: Callable[..., Path]) -> None:
    root = make_project({"flows/f/parameters.yaml": "a: 1\nb: [1, 2\nc: 3\n"})
    with pytest.raises(ConfigFileError) as info:
        Project(root).parameters("f")
    message = str(info.value)
    assert str(root / "flows" / "f" / "parameters.yaml") in message
    assert "invalid YAML" in message
    assert "line 3" in message


@pytest.mark.parametrize(
    ("relative", "text", "line", "first"),
    [
        ("flows/f/parameters.yaml", "a: 1\nb: 2\na: 3\n", 3, 1),
        ("config/global.yaml", "model:\n  name: x\n  temperature: 0\n  name: y\n", 4, 2),
    ],
)
def test_duplicate_yaml_key_names_file_and_line(
    make_project: Callable[..., Path], relative: str, text: str, line: int, first: int
) -> None:
    root = make_project({relative: text})
    with pytest.raises(ConfigFileError) as info:
        Project(root).parameters("f")
    message = str(info.value)
    assert f"{root / relative}:{line}: duplicate key" in message
    assert f"first on line {first}" in message


def test_yaml_merge_keys_may_still_override(make_project: Callable[..., Path]) -> None:
    text = "base: &b {x: 1, y: 2}\nflow:\n  <<: *b\n  y: 3\n"
    root = make_project({"flows/f/parameters.yaml": text})
    assert Project(root).parameters("f")["flow"] == {"x": 1, "y": 3}


def test_yaml_top_level_must_be_a_mapping(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/global.yaml": "- a\n- b\n"})
    with pytest.raises(ConfigFileError, match="top level must be a mapping"):
        Project(root).parameters("f")


def test_yaml_is_loaded_safely(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/global.yaml": "x: !!python/object/apply:os.getcwd []\n"})
    with pytest.raises(ConfigFileError, match="invalid YAML"):
        Project(root).parameters("f")


def test_edited_file_is_reread(make_project: Callable[..., Path]) -> None:
    root = make_project({"flows/f/parameters.yaml": "a: 1\n"})
    project = Project(root)
    assert project.parameters("f") == {"a": 1}
    (root / "flows" / "f" / "parameters.yaml").write_text("a: 22\n")
    assert project.parameters("f") == {"a": 22}
