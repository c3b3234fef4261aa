"""Point 6 (the catalog and its dataset types) and point 7's catalog errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from latent.config import (
    Catalog,
    ConfigFileError,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    FlowNotFoundError,
    Project,
    UnknownDatasetTypeError,
    register_dataset_type,
)

SHARED = """
_csv: &csv
  type: pandas.CSVDataset
raw_data: {<<: *csv, filepath: data/raw.csv}
lookup: {type: json, filepath: data/shared/lookup.json}
"""
FLOW = """
lookup: {type: yaml, filepath: data/flow/lookup.yaml}
cleaned: {type: parquet, filepath: data/cleaned.parquet, save_args: {compression: gzip}}
records: {type: jsonl, filepath: data/records.jsonl}
"""


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Project:
    root = make_project(
        {
            "config/catalog.yaml": SHARED,
            "flows/clean/catalog.yaml": FLOW,
            "flows/clean/parameters.yaml": "",
            "flows/report/catalog.yaml": "summary: {type: text, filepath: data/summary.txt}\n",
        }
    )
    return Project(root)


def frame() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "value": [0.5, -1.0, 2.0], "name": ["a", "b", "c"]})


def test_flow_entries_replace_shared_ones(project: Project) -> None:
    catalog = project.catalog("clean")
    assert catalog.names() == ["cleaned", "lookup", "raw_data", "records"]  # _csv is a template
    assert catalog.get("lookup").describe()["type"] == "yaml.YAMLDataset"
    assert catalog.get("raw_data").describe() == {
        "type": "pandas.CSVDataset",
        "filepath": str(project.root / "data" / "raw.csv"),
        "load_args": {},
        "save_args": {"index": False},
    }
    assert catalog.to_dict()["cleaned"]["save_args"] == {"compression": "gzip"}
    assert catalog.has("raw_data") and not catalog.has("nope")
    assert catalog.get("raw_data") is catalog.get("raw_data")


@pytest.mark.parametrize(
    ("type_name", "filename", "value"),
    [
        ("pandas.CSVDataset", "x.csv", None),
        ("csv", "x.csv", None),
        ("pandas.ParquetDataset", "x.parquet", None),
        ("parquet", "x.parquet", None),
        ("pandas.JSONDataset", "x.json", None),
        ("pandas.CSVDataSet", "x.csv", None),  # Kedro's older spelling
        ("json.JSONDataset", "x.json", {"a": [1, 2], "b": "é"}),
        ("json", "x.json", [1, "two", None]),
        ("yaml.YAMLDataset", "x.yaml", {"a": {"b": [1, 2]}}),
        ("yaml", "x.yaml", {"z": 1, "a": 2}),
        ("pickle.PickleDataset", "x.pkl", {"set": {1, 2}, "tuple": (1, 2)}),
        ("pickle", "x.pkl", frame),
        ("text.TextDataset", "x.txt", "hello\nworld\n"),
        ("text", "x.txt", "ünïcode"),
        ("jsonl", "x.jsonl", [{"id": 1, "q": "a"}, {"id": 2, "q": "b"}]),
    ],
)
def test_every_type_round_trips(
    make_project: Callable[..., Path], type_name: str, filename: str, value: Any
) -> None:
    root = make_project(
        {"config/catalog.yaml": f"d: {{type: {type_name}, filepath: out/{filename}}}\n"}
    )
    dataset = Project(root).catalog("f").get("d")
    if value is None or value is frame:
        value = frame()
    assert not dataset.exists()
    dataset.save(value)
    assert dataset.exists()
    assert dataset.paths() == [str(root.resolve() / "out" / filename)]
    loaded = dataset.load()
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, value, check_dtype=False)
    else:
        assert loaded == value
    assert os.listdir(root / "out") == [filename]  # no temp file left behind


def test_csv_load_and_save_args(make_project: Callable[..., Path]) -> None:
    root = make_project(
        {
            "config/catalog.yaml": """
            d:
              type: csv
              filepath: data/d.csv
              load_args: {sep: ";"}
              save_args: {sep: ";", index: false}
            """
        }
    )
    dataset = Project(root).catalog("f").get("d")
    dataset.save(frame())
    assert (root / "data" / "d.csv").read_text().splitlines()[0] == "id;value;name"
    assert list(dataset.load().columns) == ["id", "value", "name"]


def test_partitioned_parquet_directory_loads(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/catalog.yaml": "d: {type: parquet, filepath: data/parts}\n"})
    (root / "data" / "parts").mkdir(parents=True)
    frame().iloc[:2].to_parquet(root / "data" / "parts" / "part-0.parquet")
    frame().iloc[2:].to_parquet(root / "data" / "parts" / "part-1.parquet")
    dataset = Project(root).catalog("f").get("d")
    assert dataset.exists()
    assert dataset.paths() == [str(root.resolve() / "data" / "parts")]
    assert sorted(dataset.load()["id"]) == [1, 2, 3]


def test_cross_flow_dataset_resolves_through_that_flows_catalog(project: Project) -> None:
    summary = project.catalog("report").get("summary")
    summary.save("all good")
    through_clean = project.catalog("clean").get("report.summary")
    assert through_clean.load() == "all good"
    assert through_clean.paths() == summary.paths()
    assert project.catalog("clean").has("report.summary")
    assert project.catalog("clean").get("clean.records").name == "records"


def test_cross_flow_to_a_missing_flow(project: Project) -> None:
    catalog = project.catalog("clean")
    with pytest.raises(FlowNotFoundError) as info:
        catalog.get("reprot.summary")
    assert "'reprot'" in str(info.value) and "Did you mean 'report'?" in str(info.value)
    assert not catalog.has("reprot.summary")


def test_undeclared_output_gets_a_default_entry_another_flow_can_read(project: Project) -> None:
    clean = project.catalog("clean")
    table = clean.default_for("scores", frame())
    assert table.paths() == [str(project.root / "data" / "clean" / "scores.parquet")]
    table.save(frame())
    blob = clean.default_for("state", {"step": 3})
    assert blob.paths() == [str(project.root / "data" / "clean" / "state.pkl")]
    blob.save({"step": 3})
    assert clean.to_dict()["scores"]["type"] == "pandas.ParquetDataset"
    assert clean.default_for("raw_data", frame()) is clean.get("raw_data")  # declared wins

    fresh = project.catalog("report")
    pd.testing.assert_frame_equal(fresh.get("clean.scores").load(), frame())
    assert fresh.get("clean.state").load() == {"step": 3}
    assert project.catalog("clean").get("state").load() == {"step": 3}


def test_output_into_another_flow_is_refused(project: Project) -> None:
    with pytest.raises(DatasetError, match="another flow's dataset"):
        project.catalog("clean").default_for("report.summary", "x")


def test_unknown_dataset_lists_close_matches(project: Project) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        project.catalog("clean").get("raw_dta")
    message = str(info.value)
    assert "'raw_dta'" in message and "flow 'clean'" in message
    assert "Did you mean 'raw_data'?" in message
    assert "data/clean/raw_dta.parquet" in message
    assert "Declare it in flows/clean/catalog.yaml" in message


def test_missing_file_on_load_names_dataset_path_and_fix(project: Project) -> None:
    with pytest.raises(DatasetError) as info:
        project.catalog("clean").get("raw_data").load()
    message = str(info.value)
    assert "'raw_data'" in message
    assert str(project.root / "data" / "raw.csv") in message
    assert "run the flow/task that outputs 'raw_data' first" in message
    assert str(project.root / "config" / "catalog.yaml") in message


def test_value_the_type_cannot_save(project: Project) -> None:
    dataset = project.catalog("clean").get("raw_data")
    with pytest.raises(DatasetError) as info:
        dataset.save({"a": 1})
    message = str(info.value)
    assert "'raw_data'" in message
    assert "pandas.CSVDataset saves a pandas DataFrame" in message
    assert "the value is a dict" in message
    assert not dataset.exists()


def test_unserialisable_value_names_dataset_and_value_type(project: Project) -> None:
    dataset = project.catalog("clean").get("cleaned")
    with pytest.raises(DatasetError, match=r"'cleaned'.*list"):
        dataset.save([1, 2])
    json_ds = project.catalog("report").get("lookup")
    with pytest.raises(DatasetError) as info:
        json_ds.save({"s": {1, 2}})
    assert "'lookup'" in str(info.value) and "not JSON serializable" in str(info.value)
    assert not json_ds.exists()


def test_failed_save_keeps_the_previous_file(project: Project) -> None:
    dataset = project.catalog("report").get("lookup")
    dataset.save({"version": 1})
    with pytest.raises(DatasetError):
        dataset.save({"version": object()})
    assert dataset.load() == {"version": 1}
    assert os.listdir(project.root / "data" / "shared") == ["lookup.json"]


def test_corrupt_file_on_load(project: Project) -> None:
    path = project.root / "data" / "shared" / "lookup.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(
        DatasetError, match=r"Could not load dataset 'lookup' \(json\.JSONDataset\)"
    ):
        project.catalog("report").get("lookup").load()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("d: {filepath: data/d.csv}", "catalog entry 'd' has no 'type'"),
        ("d: {type: csv}", "catalog entry 'd' has no 'filepath'"),
        ("d: data/d.csv", "catalog entry 'd' must be a mapping"),
        ("d: {type: csv, filepath: x.csv, load_args: [1]}", "'load_args' must be a mapping"),
        ("d: {type: csv, filepath: x.csv, colour: red}", "unexpected keyword argument 'colour'"),
    ],
)
def test_bad_catalog_entries_name_file_and_entry(
    make_project: Callable[..., Path], entry: str, expected: str
) -> None:
    root = make_project({"flows/f/catalog.yaml": entry + "\n"})
    with pytest.raises(ConfigFileError) as info:
        Project(root).catalog("f")
    assert expected in str(info.value)
    assert str(root / "flows" / "f" / "catalog.yaml") in str(info.value)


def test_unknown_type_lists_known_types(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/catalog.yaml": "d: {type: pandas.CSVDatset, filepath: d.csv}\n"})
    with pytest.raises(UnknownDatasetTypeError) as info:
        Project(root).catalog("f")
    message = str(info.value)
    assert "'pandas.CSVDatset'" in message
    assert "Did you mean 'pandas.CSVDataset'" in message
    for known in ("csv", "jsonl", "pickle.PickleDataset", "text.TextDataset", "yaml"):
        assert known in message
    assert "register_dataset_type" in message


def test_malformed_catalog_yaml_names_line(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/catalog.yaml": "a: {type: csv, filepath: a.csv}\nb: {type: csv\n"})
    with pytest.raises(ConfigFileError, match=r"catalog\.yaml:\d+:\d+: invalid YAML"):
        Project(root).catalog("f")


def test_filepath_escaping_the_root_is_refused(make_project: Callable[..., Path]) -> None:
    root = make_project({"config/catalog.yaml": "d: {type: csv, filepath: ../outside.csv}\n"})
    with pytest.raises(DatasetError) as info:
        Project(root).catalog("f")
    assert "'d'" in str(info.value) and "leaves the project root" in str(info.value)


def test_dataset_name_escaping_through_dotdot_is_refused(project: Project) -> None:
    catalog = project.catalog("clean")
    with pytest.raises(DatasetError, match="leaves"):
        catalog.default_for("../../secrets", {"a": 1})
    with pytest.raises(DatasetError, match="leaves"):
        catalog.get("../report/x")


def test_absolute_paths_and_urls_are_kept(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_project(
        {
            "config/catalog.yaml": f"""
            abs: {{type: json, filepath: {tmp_path / "abs.json"}}}
            remote: {{type: json, filepath: "s3://bucket/key.json"}}
            """
        }
    )
    catalog = Project(root).catalog("f")
    assert catalog.get("abs").paths() == [str(tmp_path / "abs.json")]
    assert catalog.get("remote").paths() == ["s3://bucket/key.json"]


def test_env_interpolation_in_catalog(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENT_TEST_BUCKET", "b1")
    root = make_project(
        {"config/catalog.yaml": "d: {type: json, filepath: 's3://${env:LATENT_TEST_BUCKET}/d'}\n"}
    )
    assert Project(root).catalog("f").get("d").paths() == ["s3://b1/d"]


def test_memory_urls_go_through_fsspec(make_project: Callable[..., Path]) -> None:
    root = make_project(
        {
            "config/catalog.yaml": """
            table: {type: parquet, filepath: "memory://latent-test/table.parquet"}
            notes: {type: csv, filepath: "memory://latent-test/notes.csv"}
            blob: {type: pickle, filepath: "memory://latent-test/sub/blob.pkl"}
            """
        }
    )
    catalog = Project(root).catalog("f")
    for name in ("table", "notes"):
        dataset = catalog.get(name)
        assert not dataset.exists()
        dataset.save(frame())
        pd.testing.assert_frame_equal(dataset.load(), frame())
    catalog.get("blob").save({"x": 1})
    assert catalog.get("blob").load() == {"x": 1}
    import fsspec

    listing = fsspec.filesystem("memory").ls("/latent-test", detail=False)
    assert sorted(p.rsplit("/", 1)[-1] for p in listing) == ["notes.csv", "sub", "table.parquet"]


class TSVLines(Dataset):
    """A user-defined type: a list of tuples as tab-separated lines."""

    saves = "a list of tuples"

    def _accepts(self, value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(row, tuple) for row in value)

    def _load(self) -> Any:
        text = self._read_bytes().decode()
        return [tuple(line.split("\t")) for line in text.splitlines()]

    def _save(self, value: Any) -> None:
        data = "".join("\t".join(row) + "\n" for row in value).encode()
        self._write(lambda fh: fh.write(data))


def test_user_registered_type(make_project: Callable[..., Path]) -> None:
    register_dataset_type("my.TSVLines", TSVLines)
    root = make_project({"config/catalog.yaml": "d: {type: my.TSVLines, filepath: data/d.tsv}\n"})
    dataset = Project(root).catalog("f").get("d")
    assert isinstance(dataset, TSVLines)
    dataset.save([("a", "b"), ("c", "d")])
    assert dataset.load() == [("a", "b"), ("c", "d")]
    assert dataset.describe()["type"] == "my.TSVLines"
    with pytest.raises(DatasetError, match="saves a list of tuples"):
        dataset.save("nope")


def test_register_rejects_non_datasets() -> None:
    with pytest.raises(TypeError, match="must subclass"):
        register_dataset_type("bad", dict)  # type: ignore[arg-type]


def test_catalog_of_a_missing_flow(project: Project) -> None:
    with pytest.raises(FlowNotFoundError, match="'clean', 'report'"):
        Catalog(project, "nope")
