"""Issue 6.4: bad input fails early with an error that names the file, key or dataset and says
how to fix it, never a traceback from deep inside a library.

Each case is a project with one mistake a user makes, run the way a user runs it.
"""

from __future__ import annotations

import warnings

import pytest
from reliability_project import ProjectDir, no_traceback

from latent.config import (
    ConfigFileError,
    ConfigValidationError,
    DatasetError,
    DatasetNotFoundError,
    FlowNotFoundError,
    UnknownDatasetTypeError,
)

TRIVIAL = """
from latent.prefect import flow, params

@flow("{name}")
def f():
    return params.get("x")
"""


def test_malformed_yaml_names_file_and_line(project: ProjectDir) -> None:
    project.flow("yflow", TRIVIAL.format(name="yflow"))
    bad = project.write("flows/yflow/parameters.yaml", "x: 1\nmodel:\n  name: [gpt-4\n  t: 0.5\n")
    with pytest.raises(ConfigFileError) as info:
        project.load("yflow")()
    text = str(info.value)
    assert str(bad) in text
    assert "line 4" in text and "invalid YAML" in text and "Fix the syntax" in text


def test_malformed_catalog_yaml_names_file_and_line(project: ProjectDir) -> None:
    project.flow("cflow", TRIVIAL.format(name="cflow"))
    bad = project.write("config/catalog.yaml", "raw:\n  type: csv\n filepath: data/raw.csv\n")
    with pytest.raises(ConfigFileError) as info:
        project.load("cflow")()
    assert f"{bad}:3:" in str(info.value) and "line 3" in str(info.value)


def test_malformed_toml_from_the_command_line(project: ProjectDir) -> None:
    """`latent run` with a broken latent.toml: one line naming file and line, no traceback."""
    project.flow("tflow", TRIVIAL.format(name="tflow"))
    toml = project.root / "config/latent.toml"
    toml.write_text('environment = "dev"\n\n[mlflow\nenabled = false\n')
    proc = project.latent("run", "tflow", check=False)
    assert proc.returncode == 1
    assert no_traceback(proc.stderr), proc.stderr
    text = " ".join(proc.stderr.split())  # rich wraps long lines
    assert str(toml) in text and "line 3" in text and "invalid TOML" in text


def test_unknown_settings_key_suggests_the_right_one(project: ProjectDir) -> None:
    project.flow("sflow", TRIVIAL.format(name="sflow"))
    toml = project.root / "config/latent.toml"
    toml.write_text('environment = "dev"\n\n[cache]\nexpiry = "7d"\n')
    with pytest.raises(ConfigFileError) as info:
        project.load("sflow")
    text = str(info.value)
    assert str(toml) in text and "cache.expiry" in text and "'expiration'" in text


TYPED = """
from pydantic import BaseModel, ConfigDict, Field
from latent.prefect import flow, params, task

class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(gt=0)
    model_name: str

@task("work")
def work():
    count("work")

@flow("typed", config_schema=EvalConfig)
def typed():
    count("flow")
    work()
    return params.batch_size
"""


def test_wrong_type_in_typed_config_names_the_key(project: ProjectDir) -> None:
    project.flow("typed", TYPED, parameters={"batch_size": "thirty-two", "model_name": "gpt-4"})
    with pytest.raises(ConfigValidationError) as info:
        project.load("typed")()
    text = str(info.value)
    assert text.startswith("Configuration validation failed for flow 'typed':")
    assert "\n  batch_size: Input should be a valid integer" in text
    assert project.calls() == []  # nothing ran


def test_unknown_parameter_key_under_strict_schema_is_named(project: ProjectDir) -> None:
    project.flow(
        "typed", TYPED, parameters={"batch_size": 8, "batch_sise": 16, "model_name": "gpt-4"}
    )
    with pytest.raises(ConfigValidationError) as info:
        project.load("typed")()
    assert "\n  batch_sise: unknown parameter" in str(info.value)
    assert project.calls() == []


def test_unknown_parameter_key_says_where_and_suggests_the_field(project: ProjectDir) -> None:
    project.flow(
        "typed", TYPED, parameters={"batch_size": 8, "batch_sise": 16, "model_name": "gpt-4"}
    )
    with pytest.raises(ConfigValidationError) as info:
        project.load("typed")()
    text = str(info.value)
    assert "flows/typed/parameters.yaml" in text
    assert "batch_size" in text.split("batch_sise", 1)[1]  # a did-you-mean after the bad key


def test_unknown_dataset_lists_close_matches(project: ProjectDir) -> None:
    project.write("config/catalog.yaml", "raw_data:\n  type: json\n  filepath: data/raw.json\n")
    project.flow(
        "uflow",
        """
        from latent.prefect import flow

        @flow("uflow", input=["raw_dta"])
        def uflow(raw):
            return raw
        """,
    )
    with pytest.raises(DatasetNotFoundError) as info:
        project.load("uflow")()
    text = str(info.value)
    assert "'raw_dta'" in text and "'uflow'" in text
    assert "raw_data" in text and "flows/uflow/catalog.yaml" in text
    assert "Declare it" in text


def test_unknown_dataset_type_names_entry_and_known_types(project: ProjectDir) -> None:
    catalog = project.write(
        "config/catalog.yaml", "raw:\n  type: parquett\n  filepath: data/raw.parquet\n"
    )
    project.flow("tyflow", TRIVIAL.format(name="tyflow"))
    with pytest.raises(UnknownDatasetTypeError) as info:
        project.load("tyflow")()
    text = str(info.value)
    assert str(catalog) in text and "'raw'" in text and "'parquett'" in text
    assert "parquet" in text.split("'parquett'", 1)[1] and "register_dataset_type" in text


def test_cross_flow_reference_to_missing_flow(project: ProjectDir) -> None:
    project.flow("upstream_flow", TRIVIAL.format(name="upstream_flow"))
    project.flow(
        "down",
        """
        from latent.prefect import flow

        @flow("down", input=["upstream_flwo.results"])
        def down(results):
            return results
        """,
    )
    with pytest.raises(FlowNotFoundError) as info:
        project.load("down")()
    text = str(info.value)
    assert "'upstream_flwo.results'" in text and "upstream_flow" in text
    assert "Fix the flow name" in text


def test_task_returning_dict_to_csv_output(project: ProjectDir) -> None:
    project.flow(
        "report",
        """
        from latent.prefect import flow, task

        @task("summarise", output="summary", retry=False)
        def summarise():
            return {"accuracy": 0.9}

        @flow("report")
        def report():
            return summarise()
        """,
        catalog={"summary": {"type": "csv", "filepath": "data/summary.csv"}},
    )
    with pytest.raises(DatasetError) as info:
        project.load("report")()
    text = str(info.value)
    assert "'summary'" in text and "CSVDataset" in text and "dict" in text
    assert "flows/report/catalog.yaml" in text and "'json'" in text
    assert not (project.root / "data/summary.csv").exists()


def test_non_hashable_argument_runs_uncached_with_one_warning(project: ProjectDir) -> None:
    project.flow(
        "streamy",
        """
        from latent.prefect import flow, task

        @task("consume")
        def consume(stream, scale):
            count("consume")
            return sum(stream) * scale

        @flow("streamy")
        def streamy():
            return [consume((x for x in range(4)), s) for s in (1, 2)]
        """,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert project.load("streamy")() == [6, 12]
    assert project.calls() == ["consume", "consume"]
    texts = [str(w.message) for w in caught if "consume" in str(w.message)]
    assert len(texts) == 1, texts
    assert "generator" in texts[0] and "register_hasher" in texts[0] and "cache=False" in texts[0]


def test_dotdot_path_escape_is_refused(project: ProjectDir) -> None:
    catalog = project.write(
        "config/catalog.yaml", "leak:\n  type: text\n  filepath: ../../outside.txt\n"
    )
    project.flow("esc", TRIVIAL.format(name="esc"))
    with pytest.raises(DatasetError) as info:
        project.load("esc")()
    text = str(info.value)
    assert "'leak'" in text and str(catalog) in text and "'..'" in text
    assert "inside the project" in text
    assert not (project.root.parent.parent / "outside.txt").exists()


UNPICKLABLE = """
import threading
from latent.prefect import flow, task

class Client:
    def __init__(self):
        self.lock = threading.Lock()
        self.answer = 42

@task("connect", retry=False)
def connect():
    count("connect")
    return Client()

@flow("unpick")
def unpick():
    return connect().answer
"""


def test_unpicklable_return_with_caching_warns_and_returns(project: ProjectDir) -> None:
    """The value the user waited for is returned; one warning per run names the type and fix."""
    project.flow("unpick", UNPICKLABLE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert project.load("unpick")() == 42
        assert project.load("unpick")() == 42
    assert project.calls() == ["connect", "connect"]  # never served from a broken cache entry
    texts = [str(w.message) for w in caught if "cannot be stored" in str(w.message)]
    assert len(texts) == 2, texts  # one per run
    assert "'Client'" in texts[0] and "cache=False" in texts[0]
