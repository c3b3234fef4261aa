"""Dataset types of the catalog and the registry that maps ``type:`` names to them.

``Dataset`` is a template (after Kedro's ``AbstractDataset``): the public ``load``/``save`` check,
wrap errors so they name the dataset, path and fix, and write atomically; a subclass only
writes ``_load`` and ``_save`` (and ``_accepts``/``_exists``/``_describe`` when the defaults do
not fit). pandas is imported only when a pandas dataset is loaded or saved.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import yaml

from latent.config import _storage
from latent.config.errors import DatasetError

__all__ = [
    "CSVDataset",
    "Dataset",
    "JSONDataset",
    "JSONLinesDataset",
    "PandasJSONDataset",
    "ParquetDataset",
    "PickleDataset",
    "TextDataset",
    "YAMLDataset",
    "dataset_type",
    "known_dataset_types",
    "register_dataset_type",
]


class Dataset(ABC):
    """One named piece of data that a flow loads or saves, stored at ``filepath``.

    ``filepath`` is an absolute local path or a URL (relative local paths are made absolute
    against the working directory; the catalog resolves them against the project root first).
    ``fs_args`` are fsspec storage options for URLs and are never shown by ``describe()``.
    """

    type_name: ClassVar[str] = ""
    requires_filepath: ClassVar[bool] = True
    #: What ``save`` accepts, for the error shown when given something else.
    saves: ClassVar[str] = "any value"
    default_load_args: ClassVar[Mapping[str, Any]] = {}
    default_save_args: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        name: str,
        filepath: str | os.PathLike[str] | None = None,
        load_args: Mapping[str, Any] | None = None,
        save_args: Mapping[str, Any] | None = None,
        fs_args: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.filepath = _normalise(filepath)
        self.load_args: dict[str, Any] = {**self.default_load_args, **(load_args or {})}
        self.save_args: dict[str, Any] = {**self.default_save_args, **(save_args or {})}
        self.fs_args: dict[str, Any] = dict(fs_args or {})
        #: The catalog file that declared this dataset (None for defaults and direct use).
        self.source: str | None = None

    # -- public template ---------------------------------------------------------------

    def load(self) -> Any:
        """Read the dataset; a missing file raises DatasetError saying how to produce it."""
        try:
            if not self._exists():
                raise DatasetError(self._missing_message())
            return self._load()
        except DatasetError:
            raise
        except FileNotFoundError as exc:
            raise DatasetError(self._missing_message()) from exc
        except Exception as exc:
            raise DatasetError(
                f"Could not load dataset {self.name!r} ({self._type()}) from {self.filepath}: "
                f"{type(exc).__name__}: {exc}. Check that the file holds data of this type, "
                f"or fix 'type'/'load_args' in {self._declared_in()}."
            ) from exc

    def save(self, value: Any) -> None:
        """Write ``value`` atomically (temp file + rename); wrong value types are refused."""
        if not self._accepts(value):
            raise DatasetError(
                f"Cannot save dataset {self.name!r}: type {self._type()} saves {self.saves}, "
                f"but the value is a {_type_of(value)}. Return {self.saves} from the task, or "
                f"give {self.name!r} a type that fits (e.g. 'pickle' or 'json') in "
                f"{self._declared_in()}."
            )
        try:
            self._save(value)
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(self._save_failure(value, exc)) from exc

    def _save_failure(self, value: Any, exc: Exception) -> str:
        """What went wrong, and the fix that matches it: the hint about types only for types."""
        where = f"Could not save dataset {self.name!r} ({self._type()}) to {self.filepath}"
        fault = _storage.write_fault(exc)
        if fault is not None:
            location = os.path.dirname(self.filepath or "") or self.filepath
            return (
                f"{where}: {fault} ({type(exc).__name__}: {exc}). Free space or make {location} "
                f"writable, or save it elsewhere: its 'filepath' in {self._declared_in()}, or "
                f"data_dir in the paths table of config/latent.toml ([paths] data_dir) for "
                f"datasets without one."
            )
        if isinstance(exc, _VALUE_ERRORS):
            return (
                f"{where}: value of type {_type_of(value)}: {type(exc).__name__}: {exc}. "
                f"Give it a type that can store this value in {self._declared_in()}."
            )
        return (
            f"{where}: {type(exc).__name__}: {exc}. Check that the location exists and can be "
            f"written, or change its 'filepath' in {self._declared_in()}."
        )

    def exists(self) -> bool:
        """Whether data is present (the file, directory or object exists)."""
        return self._exists()

    def describe(self) -> dict[str, Any]:
        """A plain-dict summary (type, filepath, args) for ``get_config()`` and logs."""
        return self._describe()

    def paths(self) -> list[str]:
        """Files or URLs backing the dataset, for fingerprinting; local paths are absolute."""
        return [self.filepath] if self.filepath else []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, filepath={self.filepath!r})"

    # -- what subclasses write ---------------------------------------------------------

    @abstractmethod
    def _load(self) -> Any:
        """Read and return the data (the file is known to exist)."""

    @abstractmethod
    def _save(self, value: Any) -> None:
        """Write ``value``; use ``self._write(fn)`` for an atomic write."""

    def _accepts(self, value: Any) -> bool:
        """Whether ``value`` is something this type can save."""
        return True

    def _exists(self) -> bool:
        return self.filepath is not None and _storage.exists(self.filepath, self.fs_args)

    def _describe(self) -> dict[str, Any]:
        return {
            "type": self._type(),
            "filepath": self.filepath,
            "load_args": dict(self.load_args),
            "save_args": dict(self.save_args),
        }

    # -- building blocks for subclasses ------------------------------------------------

    def _path(self) -> str:
        if self.filepath is None:
            raise DatasetError(
                f"Dataset {self.name!r} ({self._type()}) has no 'filepath'. "
                f"Add 'filepath:' to its entry in {self._declared_in()}."
            )
        return self.filepath

    def _read_bytes(self) -> bytes:
        with _storage.open_read(self._path(), self.fs_args) as fh:
            return fh.read()

    def _write(self, write: Any) -> None:
        """Atomically write the target: ``write`` receives a binary file object."""
        _storage.atomic_write(self._path(), write, self.fs_args)

    def _type(self) -> str:
        return self.type_name or type(self).__qualname__

    def _declared_in(self) -> str:
        return self.source or "the catalog (config/catalog.yaml or flows/<flow>/catalog.yaml)"

    def _missing_message(self) -> str:
        return (
            f"Dataset {self.name!r} ({self._type()}) has no data at {self.filepath}. "
            f"Create that file, run the flow/task that outputs {self.name!r} first, "
            f"or fix its 'filepath' in {self._declared_in()}."
        )


# Errors that mean "this value does not fit this format" (pyarrow's subclass these too).
_VALUE_ERRORS = (TypeError, ValueError, AttributeError, pickle.PicklingError, RecursionError)


def _normalise(filepath: str | os.PathLike[str] | None) -> str | None:
    if filepath is None:
        return None
    text = os.fspath(filepath)
    if _storage.is_url(text):
        return text
    return os.path.abspath(os.path.expanduser(text))


def _type_of(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return (
        cls.__qualname__ if module == "builtins" else f"{module.split('.')[0]}.{cls.__qualname__}"
    )


def is_dataframe(value: Any) -> bool:
    """True for a pandas DataFrame, without importing pandas (if unloaded, it cannot be one)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


#: The install command in errors: the extra of latent-prefect, which most users install, and
#: latent-config's own for those who use it alone (both bring pandas, pyarrow and fsspec).
_PANDAS_HINT = "pip install 'latent-prefect[pandas]' (or 'latent-config[pandas]')"


def _require(module: str, dataset: Dataset) -> Any:
    """Import `module` for `dataset`, or fail naming the dataset and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DatasetError(
            f"Dataset {dataset.name!r} ({dataset._type()}) needs {module}, which is not "
            f"installed: {_PANDAS_HINT}. Declared in {dataset._declared_in()}."
        ) from exc


# -- pandas types ------------------------------------------------------------------------


class _PandasDataset(Dataset):
    saves = "a pandas DataFrame"

    def _accepts(self, value: Any) -> bool:
        if is_dataframe(value):
            return True
        self._pandas()  # without pandas, the fix is to install it, not "return a DataFrame"
        return False

    def _pandas(self) -> Any:
        return _require("pandas", self)

    def _source_args(self) -> tuple[str, dict[str, Any]]:
        """Path and reader kwargs: URLs let pandas use fsspec with our storage options."""
        path = self._path()
        args = dict(self.load_args)
        if _storage.is_url(path) and self.fs_args:
            args.setdefault("storage_options", self.fs_args)
        return path, args


class CSVDataset(_PandasDataset):
    """A DataFrame stored as CSV (``index=False`` unless ``save_args`` says otherwise)."""

    type_name = "pandas.CSVDataset"
    default_save_args: ClassVar[Mapping[str, Any]] = {"index": False}

    def _load(self) -> Any:
        path, args = self._source_args()
        return self._pandas().read_csv(path, **args)

    def _save(self, value: Any) -> None:
        self._write(lambda fh: value.to_csv(fh, **self.save_args))


class ParquetDataset(_PandasDataset):
    """A DataFrame stored as Parquet; a partitioned directory loads as one frame."""

    type_name = "pandas.ParquetDataset"

    def _load(self) -> Any:
        path, args = self._source_args()
        pandas = self._pandas()
        _require("pyarrow", self)
        return pandas.read_parquet(path, **args)

    def _save(self, value: Any) -> None:
        _require("pyarrow", self)
        self._write(lambda fh: value.to_parquet(fh, **self.save_args))


class PandasJSONDataset(_PandasDataset):
    """A DataFrame stored with ``DataFrame.to_json`` / read with ``pandas.read_json``."""

    type_name = "pandas.JSONDataset"

    def _load(self) -> Any:
        path, args = self._source_args()
        return self._pandas().read_json(path, **args)

    def _save(self, value: Any) -> None:
        text = value.to_json(**self.save_args)
        self._write(lambda fh: fh.write(text.encode("utf-8")))


# -- plain Python types ------------------------------------------------------------------


class JSONDataset(Dataset):
    """Any JSON-serialisable value (dicts, lists, numbers, strings)."""

    type_name = "json.JSONDataset"
    saves = "a JSON-serialisable value (dict, list, str, number, bool, None)"
    default_save_args: ClassVar[Mapping[str, Any]] = {"indent": 2, "ensure_ascii": False}

    def _accepts(self, value: Any) -> bool:
        return not is_dataframe(value)

    def _load(self) -> Any:
        return json.loads(self._read_bytes().decode("utf-8"), **self.load_args)

    def _save(self, value: Any) -> None:
        data = json.dumps(value, **self.save_args).encode("utf-8")
        self._write(lambda fh: fh.write(data))


class JSONLinesDataset(Dataset):
    """A list of dicts, one JSON object per line (a common format for eval records)."""

    type_name = "jsonl"
    saves = "a list of dicts"
    default_save_args: ClassVar[Mapping[str, Any]] = {"ensure_ascii": False}

    def _accepts(self, value: Any) -> bool:
        return isinstance(value, list | tuple) and all(isinstance(r, Mapping) for r in value)

    def _load(self) -> Any:
        lines = self._read_bytes().decode("utf-8").splitlines()
        return [json.loads(line, **self.load_args) for line in lines if line.strip()]

    def _save(self, value: Any) -> None:
        text = "".join(json.dumps(dict(row), **self.save_args) + "\n" for row in value)
        self._write(lambda fh: fh.write(text.encode("utf-8")))


class YAMLDataset(Dataset):
    """A plain value (dict, list, scalar) stored as YAML, always read with the safe loader."""

    type_name = "yaml.YAMLDataset"
    saves = "plain data (dict, list, str, number, bool, None)"
    default_save_args: ClassVar[Mapping[str, Any]] = {"sort_keys": False, "allow_unicode": True}

    def _accepts(self, value: Any) -> bool:
        return not is_dataframe(value)

    def _load(self) -> Any:
        return yaml.safe_load(self._read_bytes().decode("utf-8"))

    def _save(self, value: Any) -> None:
        data = yaml.safe_dump(value, **self.save_args).encode("utf-8")
        self._write(lambda fh: fh.write(data))


class PickleDataset(Dataset):
    """Any picklable Python object; the default for task outputs no catalog declares."""

    type_name = "pickle.PickleDataset"
    saves = "a picklable object"
    default_save_args: ClassVar[Mapping[str, Any]] = {"protocol": pickle.HIGHEST_PROTOCOL}

    def _load(self) -> Any:
        with _storage.open_read(self._path(), self.fs_args) as fh:
            return pickle.load(fh, **self.load_args)

    def _save(self, value: Any) -> None:
        self._write(lambda fh: pickle.dump(value, fh, **self.save_args))


class TextDataset(Dataset):
    """A string stored as a text file (``encoding`` in load/save args, default UTF-8)."""

    type_name = "text.TextDataset"
    saves = "a str"

    def _accepts(self, value: Any) -> bool:
        return isinstance(value, str)

    def _load(self) -> Any:
        return self._read_bytes().decode(self.load_args.get("encoding", "utf-8"))

    def _save(self, value: Any) -> None:
        data = value.encode(self.save_args.get("encoding", "utf-8"))
        self._write(lambda fh: fh.write(data))


# -- registry ----------------------------------------------------------------------------

# Keys are lower-cased so Kedro's older spelling (pandas.CSVDataSet) resolves too.
_TYPES: dict[str, type[Dataset]] = {}
_DISPLAY: dict[str, str] = {}


def register_dataset_type(type_name: str, cls: type[Dataset]) -> None:
    """Make ``type: <type_name>`` in a catalog build ``cls`` (re-registering replaces it)."""
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise TypeError(
            f"register_dataset_type({type_name!r}, {cls!r}): the class must subclass "
            "latent.config.Dataset and implement _load and _save."
        )
    if not type_name or not isinstance(type_name, str):
        raise TypeError("register_dataset_type: type_name must be a non-empty string")
    if not cls.type_name:
        cls.type_name = type_name
    key = type_name.lower()
    _TYPES[key] = cls
    _DISPLAY[key] = type_name


def dataset_type(type_name: str) -> type[Dataset] | None:
    """The class registered for ``type_name`` (case-insensitive), or None."""
    key = type_name.lower().removeprefix("kedro_datasets.")
    return _TYPES.get(key)


def known_dataset_types() -> list[str]:
    """Every registered type name, as registered."""
    return sorted(_DISPLAY.values(), key=str.lower)


for _cls, _aliases in (
    (CSVDataset, ["csv"]),
    (ParquetDataset, ["parquet"]),
    (PandasJSONDataset, []),
    (JSONDataset, ["json"]),
    (JSONLinesDataset, []),
    (YAMLDataset, ["yaml"]),
    (PickleDataset, ["pickle"]),
    (TextDataset, ["text"]),
):
    for _name in [_cls.type_name, *_aliases]:
        register_dataset_type(_name, _cls)
