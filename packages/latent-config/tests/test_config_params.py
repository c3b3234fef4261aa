"""Point 5: the ``params`` proxy, per-run binding, read tracking, cross-flow get, get_config."""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from latent.config import (
    NoActiveFlowError,
    Project,
    RunConfig,
    bind_run,
    current_run,
    get_config,
    params,
    track_param_reads,
)

FILES = {
    "config/global.yaml": "shared: yes\nmodel_name: global-model\n",
    "flows/downstream/parameters.yaml": "batch_size: 32\nmodel_name: gpt-4\nnested: {a: 1}\n",
    "flows/upstream_flow/parameters.yaml": "model_name: up-model\nllm: {temperature: 0.3}\n",
    "flows/downstream/catalog.yaml": "raw: {type: csv, filepath: data/raw.csv}\n",
}


class Config(BaseModel):
    batch_size: int = Field(gt=0)
    model_name: str
    learning_rate: float = 0.001
    nested: dict[str, int] = {}

    @property
    def label(self) -> str:
        return f"{self.model_name}@{self.batch_size}"


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Project:
    return Project(make_project(FILES))


def run_for(project: Project, flow: str, **kwargs: object) -> RunConfig:
    return RunConfig.load(flow, project=project, **kwargs)  # type: ignore[arg-type]


def test_attribute_item_get_contains_iter(project: Project) -> None:
    with bind_run(run_for(project, "downstream")):
        assert params.batch_size == 32
        assert params["model_name"] == "gpt-4"
        assert params.nested == {"a": 1}
        assert params.get("timeout", 30) == 30
        assert params.get("batch_size", 1) == 32
        assert params.get("missing") is None
        assert "shared" in params and "timeout" not in params
        assert sorted(params) == ["batch_size", "model_name", "nested", "shared"]
        assert len(params) == 4
        assert params.to_dict() == {
            "shared": True,
            "model_name": "gpt-4",
            "batch_size": 32,
            "nested": {"a": 1},
        }
        assert "downstream" in repr(params) and "gpt-4" in repr(params)


def test_typed_values_include_defaults_and_properties(project: Project) -> None:
    with bind_run(run_for(project, "downstream", schema=Config)) as run:
        assert isinstance(run.typed, Config)
        assert params.learning_rate == 0.001
        assert params["learning_rate"] == 0.001
        assert params.label == "gpt-4@32"
        # A global key the schema does not declare belongs to other flows: not this run's.
        assert "shared" not in params and params.get("shared") is None
        assert run.parameters == {
            "batch_size": 32,
            "model_name": "gpt-4",
            "learning_rate": 0.001,
            "nested": {"a": 1},
        }
        assert params.to_dict()["learning_rate"] == 0.001
        assert "learning_rate" in params


def test_overrides_reach_params(project: Project) -> None:
    with bind_run(run_for(project, "downstream", overrides=["batch_size=64"])):
        assert params.batch_size == 64


def test_unknown_attribute_names_key_flow_existing_keys_and_match(project: Project) -> None:
    with bind_run(run_for(project, "downstream")), pytest.raises(AttributeError) as info:
        _ = params.batch_sise
    message = str(info.value)
    assert "'batch_sise'" in message
    assert "'downstream'" in message
    assert "'batch_size', 'model_name', 'nested', 'shared'" in message
    assert "Did you mean 'batch_size'?" in message


def test_dotted_keys_are_cross_flow_only_through_get(project: Project) -> None:
    with bind_run(run_for(project, "downstream")):
        assert params.get("upstream_flow.model_name") == "up-model"
        assert params.get("upstream_flow.shared") is True  # global merged under the flow
        assert params.get("upstream_flow.llm.temperature") == 0.3
        assert params.get("upstream_flow.temperature", default=0.7) == 0.7
        assert params.get("no_such_flow.key", default="d") == "d"
        assert params.get("downstream.batch_size") == 32
        with pytest.raises(KeyError) as info:
            _ = params["upstream_flow.model_name"]
        assert "params.get('other_flow.key', default)" in str(info.value)
        with pytest.raises(AttributeError, match=r"params\.get"):
            _ = params.upstream_flow


def test_cross_flow_values_are_copies(project: Project) -> None:
    with bind_run(run_for(project, "downstream")):
        params.get("upstream_flow.llm")["temperature"] = 99
        assert params.get("upstream_flow.llm.temperature") == 0.3


def test_cross_flow_cache_is_invalidated_when_the_file_changes(project: Project) -> None:
    path = project.flow_dir("upstream_flow") / "parameters.yaml"
    with bind_run(run_for(project, "downstream")):
        first = project.other_flow_parameters("upstream_flow")
        assert project.other_flow_parameters("upstream_flow") is first  # cached
        path.write_text("model_name: changed-model\n")
        os.utime(path, ns=(1, 1))
        assert params.get("upstream_flow.model_name") == "changed-model"
        assert project.other_flow_parameters("no_such_flow") is None


def test_cross_flow_cache_sees_global_yaml_change(project: Project) -> None:
    with bind_run(run_for(project, "downstream")):
        assert params.get("upstream_flow.shared") is True
        glob = project.root / "config" / "global.yaml"
        glob.write_text("shared: no\n")
        os.utime(glob, ns=(1, 1))
        assert params.get("upstream_flow.shared") is False


def test_outside_a_run_params_says_no_flow_is_active() -> None:
    assert current_run() is None
    with pytest.raises(NoActiveFlowError) as info:
        _ = params.batch_size
    assert isinstance(info.value, RuntimeError)
    assert "no Latent flow is active" in str(info.value)
    assert "bind_run" in str(info.value)
    with pytest.raises(NoActiveFlowError):
        params.get("x", 1)
    with pytest.raises(NoActiveFlowError):
        get_config()
    assert repr(params) == "<params: no active flow>"


def test_params_is_read_only(project: Project) -> None:
    with bind_run(run_for(project, "downstream")), pytest.raises(AttributeError, match="read-only"):
        params.batch_size = 1  # type: ignore[misc]


def test_nested_binds_restore_the_outer_run(project: Project) -> None:
    with bind_run(run_for(project, "downstream")):
        with bind_run(run_for(project, "upstream_flow")):
            assert params.model_name == "up-model"
        assert params.model_name == "gpt-4"
    assert current_run() is None


def test_two_threads_two_flows_see_their_own_params(project: Project) -> None:
    runs = {"downstream": "gpt-4", "upstream_flow": "up-model"}
    barrier = threading.Barrier(2)
    seen: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(flow: str) -> None:
        try:
            with bind_run(run_for(project, flow)):
                values = []
                for _ in range(50):
                    barrier.wait()  # both threads are inside their runs at the same moment
                    values.append(params.model_name)
                seen[flow] = values
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(flow,)) for flow in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for flow, expected in runs.items():
        assert seen[flow] == [expected] * 50


def test_track_param_reads_collects_keys_in_nested_scopes(project: Project) -> None:
    with bind_run(run_for(project, "downstream")), track_param_reads() as outer:
        _ = params.batch_size
        with track_param_reads() as inner:
            _ = params["model_name"]
            params.get("timeout", 3)
            params.get("upstream_flow.model_name")
            _ = "shared" in params
        _ = params.nested
    assert inner == {"model_name", "timeout", "upstream_flow.model_name", "shared"}
    assert outer == inner | {"batch_size", "nested"}


def test_reads_outside_a_scope_are_not_tracked(project: Project) -> None:
    with track_param_reads() as reads:
        pass
    with bind_run(run_for(project, "downstream")):
        _ = params.batch_size
    assert reads == set()


def test_get_config_returns_parameters_and_catalog(project: Project) -> None:
    with bind_run(run_for(project, "downstream")):
        config = get_config()
    assert config["parameters"]["batch_size"] == 32
    assert config["catalog"]["raw"]["type"] == "pandas.CSVDataset"
    assert config["catalog"]["raw"]["filepath"] == str(project.root / "data" / "raw.csv")


def test_params_pickles_to_the_same_proxy() -> None:
    assert pickle.loads(pickle.dumps(params)) is params
