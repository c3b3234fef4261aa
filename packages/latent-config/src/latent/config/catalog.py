"""The data catalog of one flow: dataset names resolved to typed, path-bearing ``Dataset``s.

Entries come from ``config/catalog.yaml`` (shared) and ``flows/<flow>/catalog.yaml`` (the flow's
entry replaces a shared one of the same name). ``other_flow.name`` resolves through that flow's
catalog. A name no catalog declares falls back to ``data/<flow>/<name>.parquet`` or ``.pkl`` when
such a file exists, which is where ``default_for`` puts undeclared task outputs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latent.config._files import read_yaml_mapping
from latent.config._parameters import interpolate_env
from latent.config._suggest import did_you_mean, listing
from latent.config.datasets import (
    Dataset,
    ParquetDataset,
    PickleDataset,
    dataset_type,
    is_dataframe,
    known_dataset_types,
)
from latent.config.errors import (
    ConfigFileError,
    DatasetError,
    DatasetNotFoundError,
    FlowNotFoundError,
    UnknownDatasetTypeError,
)

if TYPE_CHECKING:
    from latent.config.project import Project

__all__ = ["Catalog"]

_STANDARD_KEYS = ("type", "filepath", "load_args", "save_args")
_DEFAULT_FILES = (("parquet", ParquetDataset), ("pkl", PickleDataset))


class Catalog:
    """Datasets of one flow, by name. Entries are validated when the catalog is built."""

    flow: str

    def __init__(self, project: Project, flow: str) -> None:
        self.project = project
        self.flow = flow
        # flow "" is the shared catalog alone (a task called outside any flow)
        flow_dir = project.require_flow(flow) if flow else None
        files = [project.root / "config" / "catalog.yaml"]
        if flow_dir is not None:
            files.append(flow_dir / "catalog.yaml")
        entries: dict[str, tuple[Any, Path]] = {}
        for file in files:
            for name, entry in read_yaml_mapping(file).items():
                if not str(name).startswith("_"):  # _name: YAML-anchor templates, as in Kedro
                    entries[str(name)] = (entry, file)
        self._datasets: dict[str, Dataset] = {
            name: _build(project, name, entry, file) for name, (entry, file) in entries.items()
        }
        self._declared = frozenset(self._datasets)
        self._others: dict[str, Catalog] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Catalog(flow={self.flow!r}, datasets={self.names()!r})"

    def get(self, name: str) -> Dataset:
        """The dataset called ``name``, or ``other_flow.name`` from that flow's catalog.

        Raises DatasetNotFoundError (with close matches) for an unknown name, and
        FlowNotFoundError for ``other_flow.name`` when ``other_flow`` does not exist.
        """
        found = self._datasets.get(name)
        if found is not None:
            return found
        flow, dot, rest = name.partition(".")
        if dot and flow == self.flow:
            return self.get(rest)
        if dot and self.project.has_flow(flow):
            return self._other(flow).get(rest)
        default = self._existing_default(name)
        if default is not None:
            return default
        if dot:
            names = self.project.flow_names()
            raise FlowNotFoundError(
                f"Dataset {name!r} (flow {self.flow!r}) refers to flow {flow!r}, which has no "
                f"directory under flows/. Flows: {listing(names)}.{did_you_mean(flow, names)} "
                "Fix the flow name, or drop the 'flow.' prefix for this flow's own datasets."
            )
        raise DatasetNotFoundError(self._not_found_message(name))

    def has(self, name: str) -> bool:
        """Whether ``get(name)`` would find a dataset."""
        try:
            self.get(name)
        except (DatasetNotFoundError, FlowNotFoundError):
            return False
        return True

    def names(self) -> list[str]:
        """Declared datasets plus defaults created so far, sorted."""
        return sorted(self._datasets)

    def default_for(self, name: str, value: Any) -> Dataset:
        """Where an output goes: its declared dataset, else ``data/<flow>/<name>.parquet``
        for a DataFrame or ``.pkl`` (pickle) for anything else. The default is remembered so
        ``get``/``to_dict`` show it, and another flow finds the file by the same rule.
        """
        if name in self._declared:
            return self._datasets[name]
        flow, dot, _ = name.partition(".")
        if dot and self.project.has_flow(flow):
            raise DatasetError(
                f"Output {name!r} of flow {self.flow!r} names another flow's dataset; a flow "
                f"saves only its own outputs. Rename the output, or declare {name!r} in "
                f"flows/{self.flow}/catalog.yaml."
            )
        extension, cls = _DEFAULT_FILES[0] if is_dataframe(value) else _DEFAULT_FILES[1]
        dataset = cls(name, self.project.default_dataset_path(self.flow, name, extension))
        with self._lock:
            self._datasets[name] = dataset
        return dataset

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``name -> describe()`` of every known dataset (for ``get_config()['catalog']``)."""
        return {name: self._datasets[name].describe() for name in self.names()}

    def _existing_default(self, name: str) -> Dataset | None:
        for extension, cls in _DEFAULT_FILES:
            path = self.project.default_dataset_path(self.flow, name, extension)
            if os.path.exists(path):
                dataset = cls(name, path)
                with self._lock:
                    self._datasets[name] = dataset
                return dataset
        return None

    def _other(self, flow: str) -> Catalog:
        other = self._others.get(flow)
        if other is None:
            other = Catalog(self.project, flow)
            with self._lock:
                self._others[flow] = other
        return other

    def _not_found_message(self, name: str) -> str:
        declared = sorted(self._declared)
        data = os.path.relpath(self.project.data_dir / self.flow / name, self.project.root)
        return (
            f"Dataset {name!r} is not in the catalog of flow {self.flow!r} "
            f"(config/catalog.yaml, flows/{self.flow}/catalog.yaml) and has no default file "
            f"{data}.parquet or .pkl. Declared datasets: {listing(declared)}."
            f"{did_you_mean(name, declared)} Declare it in flows/{self.flow}/catalog.yaml "
            "(type + filepath), or run the task that outputs it first."
        )


def _build(project: Project, name: str, raw: Any, file: Path) -> Dataset:
    """Turn one catalog entry into a Dataset, with errors naming the file and entry."""
    where = f"{file}: catalog entry {name!r}"
    if not isinstance(raw, Mapping):
        raise ConfigFileError(
            f"{where} must be a mapping such as {{type: csv, filepath: data/{name}.csv}}, "
            f"got {raw!r}."
        )
    entry: dict[str, Any] = interpolate_env(dict(raw), f"{file} (entry {name!r})")
    type_name = entry.get("type")
    if not type_name or not isinstance(type_name, str):
        raise ConfigFileError(
            f"{where} has no 'type'. Add one, e.g. 'type: csv'. Known types: "
            f"{', '.join(known_dataset_types())}."
        )
    cls = dataset_type(type_name)
    if cls is None:
        known = known_dataset_types()
        raise UnknownDatasetTypeError(
            f"{where} has unknown type {type_name!r}.{did_you_mean(type_name, known)} Known "
            f"types: {', '.join(known)}. Use one of them, or register your own class with "
            "latent.config.register_dataset_type() before the catalog is read."
        )
    filepath = entry.get("filepath")
    if filepath is None and cls.requires_filepath:
        raise ConfigFileError(
            f"{where} has no 'filepath'. Add one, e.g. 'filepath: data/{name}.csv' "
            "(relative to the project root, or an s3://... URL)."
        )
    for key in ("load_args", "save_args", "fs_args"):
        if entry.get(key) is not None and not isinstance(entry[key], Mapping):
            raise ConfigFileError(f"{where}: '{key}' must be a mapping, got {entry[key]!r}.")
    resolved = (
        None if filepath is None else project.resolve_filepath(str(filepath), name, str(file))
    )
    extra = {k: v for k, v in entry.items() if k not in _STANDARD_KEYS}
    try:
        dataset = cls(
            name,
            filepath=resolved,
            load_args=entry.get("load_args"),
            save_args=entry.get("save_args"),
            **extra,
        )
    except TypeError as exc:
        raise ConfigFileError(
            f"{where} (type {type_name!r}) cannot be built: {exc}. Remove keys the type does "
            f"not take; every type accepts {', '.join(_STANDARD_KEYS)} and fs_args."
        ) from exc
    dataset.source = str(file)
    return dataset
