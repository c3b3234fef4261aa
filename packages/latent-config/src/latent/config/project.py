"""A Latent project on disk: where its root is, its settings, and each flow's parameters.

Layout (see DESIGN.md)::

    config/latent.toml   config/global.yaml   config/catalog.yaml
    flows/<flow>/parameters.yaml   flows/<flow>/catalog.yaml   data/   .latent/
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from latent.config import _storage, _strict
from latent.config._files import Stamp, file_stamp, read_yaml_mapping
from latent.config._parameters import apply_overrides, deep_merge, interpolate_env, parse_overrides
from latent.config._suggest import close_matches, did_you_mean, listing
from latent.config.errors import (
    ConfigValidationError,
    DatasetError,
    FlowNotFoundError,
    ParameterOverrideError,
    UnknownParameterError,
)
from latent.config.settings import Settings

if TYPE_CHECKING:
    from latent.config.catalog import Catalog

__all__ = ["Project"]

_SETTINGS_ENV = ("LATENT_ENVIRONMENT", "LATENT_MLFLOW_ENABLED")
_discovered: dict[Path, tuple[tuple[Any, ...], Project]] = {}
_discover_lock = threading.Lock()


class Project:
    """A project root with its settings; reads parameters and builds catalogs per flow."""

    root: Path
    settings: Settings
    is_configured: bool

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.settings_file = self.root / "config" / "latent.toml"
        self.is_configured = self.settings_file.is_file()
        self.settings = Settings.load(self.settings_file)
        self._other_flows: dict[str, tuple[tuple[Stamp | None, ...], dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"Project(root={str(self.root)!r})"

    @classmethod
    def discover(cls, cwd: Path | None = None, source_file: str | Path | None = None) -> Project:
        """Find the project root and return its (cached) Project.

        ``LATENT_PROJECT_ROOT`` wins; then the nearest ancestor of ``cwd`` holding
        ``config/latent.toml``; then the nearest such ancestor of ``source_file`` (the flow's
        source); then ``cwd`` itself. The cached Project is rebuilt when latent.toml changes.
        """
        root = _find_root(Path(cwd) if cwd is not None else Path.cwd(), source_file)
        key = (
            cls,
            file_stamp(root / "config" / "latent.toml"),
            *map(os.environ.get, _SETTINGS_ENV),
        )
        hit = _discovered.get(root)
        if hit is not None and hit[0] == key:
            return hit[1]
        project = cls(root)
        with _discover_lock:
            _discovered[root] = (key, project)
        return project

    # -- locations ---------------------------------------------------------------------

    @property
    def latent_dir(self) -> Path:
        """Latent's own state (caches, results, MLflow DB): ``[paths] latent_dir``."""
        return self._local(self.settings.paths.latent_dir)

    @property
    def data_dir(self) -> Path:
        """Default home of datasets: ``[paths] data_dir``."""
        return self._local(self.settings.paths.data_dir)

    @property
    def cache_dir(self) -> Path:
        """Where checkpoints and the disk cache live."""
        return self.latent_dir / "cache"

    @property
    def results_storage(self) -> str:
        """Where task results are persisted; a local path or an fsspec URL."""
        configured = self.settings.cache.result_storage
        if configured is None:
            return str(self.latent_dir / "results")
        return configured if _storage.is_url(configured) else str(self._local(configured))

    @property
    def tracking_uri(self) -> str:
        """MLflow URI: env MLFLOW_TRACKING_URI > [mlflow] tracking_uri > .latent/mlflow.db."""
        return (
            os.environ.get("MLFLOW_TRACKING_URI")
            or self.settings.mlflow.tracking_uri
            or f"sqlite:///{self.latent_dir}/mlflow.db"
        )

    @property
    def artifact_location(self) -> str | None:
        """``[mlflow] artifact_location`` resolved: a URL as it is, a path under the root."""
        configured = self.settings.mlflow.artifact_location
        if configured is None or _storage.is_url(configured):
            return configured
        return str(self._local(configured))

    def _local(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.root / candidate

    # -- flows -------------------------------------------------------------------------

    def flow_names(self) -> list[str]:
        """Flow directories under ``flows/`` (hidden and ``_private`` ones skipped), sorted."""
        flows = self.root / "flows"
        if not flows.is_dir():
            return []
        return sorted(
            p.name for p in flows.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
        )

    def flow_dir(self, flow: str) -> Path:
        """``flows/<flow>`` (whether or not it exists)."""
        return self.root / "flows" / flow

    def has_flow(self, flow: str) -> bool:
        """Whether ``flows/<flow>/`` exists."""
        return bool(flow) and "/" not in flow and "\\" not in flow and self.flow_dir(flow).is_dir()

    def require_flow(self, flow: str) -> Path | None:
        """The flow's directory; None for an ad-hoc flow in a project without flows.

        Raises FlowNotFoundError when the project is configured, has ``flows/`` and the flow's
        directory is missing: there a missing directory is almost always a typo. ``flow=""``
        means no flow: global parameters and the shared catalog only.
        """
        if not flow:
            return None
        if self.has_flow(flow):
            return self.flow_dir(flow)
        if self.is_configured and (self.root / "flows").is_dir():
            names = self.flow_names()
            raise FlowNotFoundError(
                f"Flow {flow!r} has no directory {self.flow_dir(flow)}. Flows in this project: "
                f"{listing(names)}.{did_you_mean(flow, names)} Fix the flow name (it must match "
                f"its directory under flows/) or create flows/{flow}/parameters.yaml."
            )
        return None

    # -- parameters --------------------------------------------------------------------

    def parameters(
        self, flow: str, overrides: Mapping[str, Any] | Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Merged parameters: global.yaml < flows/<flow>/parameters.yaml < overrides, then env.

        Overrides are a mapping (dotted keys allowed) or ``"a.b=value"`` strings; ``a.b``
        replaces that leaf only. ``${env:NAME}`` / ``${env:NAME,default}`` are then filled in.
        Returns fresh plain dicts the caller may mutate.
        """
        flow_dir = self.require_flow(flow)
        merged = deep_merge(
            read_yaml_mapping(self.root / "config" / "global.yaml"),
            read_yaml_mapping(flow_dir / "parameters.yaml") if flow_dir else {},
        )
        merged = apply_overrides(merged, parse_overrides(overrides))
        where = f"parameters of flow {flow!r} (config/global.yaml, flows/{flow}/parameters.yaml)"
        # interpolate_env rebuilds every dict and list, so the file cache is never shared out.
        result: dict[str, Any] = interpolate_env(merged, where)
        return result

    def other_flow_parameters(
        self, flow: str, overrides: Mapping[str, Any] | Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """Another flow's merged parameters, or None if it has no directory.

        ``overrides`` are the ones the same command gave that flow (see `scope_overrides`).
        Without them the result is cached per process and re-read when global.yaml or its
        parameters.yaml changes; the dict is shared: treat it as read-only.
        """
        if not self.has_flow(flow):
            return None
        if overrides:
            return self.parameters(flow, overrides)
        stamps = (
            file_stamp(self.root / "config" / "global.yaml"),
            file_stamp(self.flow_dir(flow) / "parameters.yaml"),
        )
        hit = self._other_flows.get(flow)
        if hit is not None and hit[0] == stamps:
            return hit[1]
        values = self.parameters(flow)
        self._other_flows[flow] = (stamps, values)
        return values

    def typed_parameters(
        self,
        flow: str,
        schema: type[BaseModel],
        overrides: Mapping[str, Any] | Sequence[str] | None = None,
        *,
        name: str | None = None,
    ) -> BaseModel:
        """The flow's parameters checked key by key against ``schema``, then validated.

        A key in flows/<flow>/parameters.yaml or an override that no field accepts raises
        UnknownParameterError (file and line, or the override, and the nearest field). A key of
        global.yaml the schema does not declare belongs to other flows and is left out, unless
        the schema keeps extra keys (``extra="allow"``). ``name`` labels errors when ``flow`` is
        ``""`` (a subflow without a directory of its own).
        """
        label = name or flow
        self.check_keys(flow, schema, overrides, name=label)
        merged = self.parameters(flow, overrides)
        own = set(self._flow_file_parameters(flow)) | {
            key.split(".")[0] for key, _ in parse_overrides(overrides)
        }
        if schema.model_config.get("extra") != "allow":
            names = _strict.field_names(schema)
            merged = {k: v for k, v in merged.items() if k in own or k in names}
        return self.validate(label, merged, schema)

    def check_keys(
        self,
        flow: str,
        schema: type[BaseModel],
        overrides: Mapping[str, Any] | Sequence[str] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        """Raise UnknownParameterError for every key ``schema`` does not accept (see above)."""
        problems: list[tuple[str, str]] = []
        seen: set[tuple[str, ...]] = set()
        names = _strict.field_names(schema)

        def check(path: tuple[str, ...], where: str) -> None:
            if any(path[:n] in seen for n in range(1, len(path) + 1)):
                return
            found = _strict.unknown_at([schema], path)
            if found is None:
                return
            bad, choices = found
            seen.add(bad)
            hint = did_you_mean(bad[-1], choices)
            problems.append((".".join(bad), f"unknown parameter, set {where}.{hint}"))

        own_file = f"flows/{flow}/parameters.yaml"
        own = self._flow_file_parameters(flow)
        for path in _strict.leaf_paths(own):
            check(path, self._where(own_file, path))
        shared = read_yaml_mapping(self.root / "config" / "global.yaml")
        for path in _strict.leaf_paths(shared):
            # Undeclared top-level keys belong to other flows; the flow's file reports its own.
            if path[0] in names and not _has_path(own, path):
                check(path, self._where("config/global.yaml", path))
        for key, value in parse_overrides(overrides):
            path = tuple(key.split("."))
            check(path, f"by the override '{key}={value}'")
            if isinstance(value, Mapping):
                for below in _strict.leaf_paths(value, path):
                    check(below, f"by the override '{key}={value}'")
        if problems:
            raise UnknownParameterError(name or flow, problems, schema.__name__)

    def own_parameter_keys(
        self, flow: str, overrides: Mapping[str, Any] | Sequence[str] | None = None
    ) -> list[str]:
        """Top-level keys the flow's own parameters.yaml and its overrides set (not global.yaml).

        These are the keys that must be for this flow; a flow without a schema is warned about
        the ones it never reads (a typo, usually).
        """
        keys = list(self._flow_file_parameters(flow))
        for key, _ in parse_overrides(overrides):
            top = key.split(".")[0]
            if top not in keys:
                keys.append(top)
        return keys

    def _flow_file_parameters(self, flow: str) -> dict[str, Any]:
        return read_yaml_mapping(self.flow_dir(flow) / "parameters.yaml") if flow else {}

    def _where(self, relative: str, path: tuple[str, ...]) -> str:
        line = _strict.key_line(self.root / relative, path)
        return f"in {relative}" + (f" line {line}" if line else "")

    def scope_overrides(
        self,
        overrides: Mapping[str, Any] | Sequence[str] | None,
        schemas: Mapping[str, type[BaseModel] | None],
    ) -> dict[str, dict[str, Any]]:
        """Give each override to the flows it is for: ``{flow: {dotted_key: value}}``.

        ``schemas`` are the flows of one command (name -> its ``config_schema`` or None), in
        order. ``flow.key=v`` targets that flow (also a flow not in the command, whose schema is
        not known here, so that a cross-flow ``params.get("flow.key")`` sees it); a plain
        ``key=v`` goes to every flow of the command where the key exists (a schema field, or a
        parameter of a flow without a schema). An override no flow accepts raises
        ParameterOverrideError naming the nearest key.
        """
        scoped: dict[str, dict[str, Any]] = {flow: {} for flow in schemas}
        for key, value in parse_overrides(overrides):
            for flow, rest in self._override_targets(key, value, schemas).items():
                scoped.setdefault(flow, {})[rest] = value
        return scoped

    def _override_targets(
        self, key: str, value: Any, schemas: Mapping[str, type[BaseModel] | None]
    ) -> dict[str, str]:
        head, dot, rest = key.partition(".")
        if dot and head in schemas:
            self._require_accepted(head, schemas[head], rest, key, value)
            return {head: rest}
        path = tuple(key.split("."))
        found = {flow: key for flow, schema in schemas.items() if self._has_key(flow, schema, path)}
        if found:
            return found
        if dot and self.has_flow(head):
            return {head: rest}  # not run here, so its schema is unknown: for cross-flow reads
        hints = "".join(self._nearest(flow, schema, path) for flow, schema in schemas.items())
        raise ParameterOverrideError(
            f"Override '{key}={value}': no flow in this run ({listing(schemas)}) has a parameter "
            f"{key!r}.{hints} Fix the name, or target one flow with '<flow>.{key}=...' (its "
            "schema must declare the key)."
        )

    def _require_accepted(
        self, flow: str, schema: type[BaseModel] | None, rest: str, key: str, value: Any
    ) -> None:
        if schema is None:
            return  # a flow without a schema takes new keys (unread ones are warned about)
        found = _strict.unknown_at([schema], tuple(rest.split(".")))
        if found is None:
            return
        bad, choices = found
        raise ParameterOverrideError(
            f"Override '{key}={value}': flow {flow!r} has no parameter {'.'.join(bad)!r} "
            f"({schema.__name__} declares {listing(choices)}).{did_you_mean(bad[-1], choices)} "
            "Fix the name, or let the schema keep extra keys: "
            'model_config = ConfigDict(extra="allow").'
        )

    def _has_key(self, flow: str, schema: type[BaseModel] | None, path: tuple[str, ...]) -> bool:
        if schema is not None and _strict.declares(schema, path):
            return True
        if schema is not None and _strict.unknown_at([schema], path) is not None:
            return False
        return _has_path(self.parameters(flow), path)

    def _nearest(self, flow: str, schema: type[BaseModel] | None, path: tuple[str, ...]) -> str:
        """`` In flow 'f': did you mean 'a.b'?`` for the closest key of one flow, else ``""``."""
        if schema is not None:
            found = _strict.unknown_at([schema], path)
            if found is None:
                return ""
            bad, choices = found
            keys = [".".join((*bad[:-1], choice)) for choice in choices]
            name = ".".join(bad)
        else:
            keys = [".".join(p) for p in _strict.leaf_paths(self.parameters(flow))]
            name = ".".join(path)
        matches = close_matches(name, keys)
        if not matches:
            return ""
        return f" In flow {flow!r}: did you mean {' or '.join(map(repr, matches))}?"

    def describe_parameters(
        self, flow: str, schema: type[BaseModel] | None = None
    ) -> list[tuple[str, str, str, str]]:
        """``(key, type, default, value)`` per parameter, for listings such as `latent flows`.

        With a schema: every field (nested models flattened to ``a.b``), its type and default,
        and the value the flow's files give it (``""`` when they leave the default). Without
        one: the merged file values, typed by what they are.
        """
        values = self.parameters(flow)
        if schema is None:
            return [
                (".".join(path), type(value).__name__, "", repr(value))
                for path in _strict.leaf_paths(values)
                if not isinstance(value := _value_at(values, path), Mapping)
            ]
        return [
            (
                key,
                kind,
                default,
                repr(_value_at(values, tuple(key.split("."))))
                if _has_path(values, tuple(key.split(".")))
                else "",
            )
            for key, kind, default in _strict.describe(schema)
        ]

    def validate(
        self, flow: str, parameters: Mapping[str, Any], schema: type[BaseModel]
    ) -> BaseModel:
        """Validate parameters against the flow's ``config_schema``.

        Raises ConfigValidationError (a ValueError) with one ``  field: message`` line per problem.
        """
        try:
            return schema.model_validate(dict(parameters))
        except ValidationError as exc:
            problems = [
                (
                    ".".join(str(part) for part in error["loc"]) or "(parameters)",
                    f"{error['msg']} (type={error['type']})"
                    + self._unknown_key_hint(flow, error, schema),
                )
                for error in exc.errors()
            ]
            raise ConfigValidationError(flow, problems) from exc

    def _unknown_key_hint(self, flow: str, error: Any, schema: type[BaseModel]) -> str:
        """For a key a strict schema forbids: which file sets it, and the field it may mean."""
        if error["type"] != "extra_forbidden" or not error["loc"]:
            return ""
        top = str(error["loc"][0])
        files = [f"flows/{flow}/parameters.yaml"] if flow else []
        files.append("config/global.yaml")
        where = next((f for f in files if top in read_yaml_mapping(self.root / f)), None)
        fields: Mapping[str, Any] = schema.model_fields
        for part in error["loc"][:-1]:  # walk into nested models for the suggestion
            annotation = getattr(fields.get(str(part)), "annotation", None)
            fields = getattr(annotation, "model_fields", {})
        hint = f" — set in {where}" if where else " — set by an override"
        return f"{hint}; remove it or fix its name.{did_you_mean(str(error['loc'][-1]), fields)}"

    # -- catalog -----------------------------------------------------------------------

    def catalog(self, flow: str) -> Catalog:
        """The flow's data catalog (config/catalog.yaml under flows/<flow>/catalog.yaml).

        ``flow=""`` gives the shared catalog alone, for code that runs outside any flow.
        """
        from latent.config.catalog import Catalog

        return Catalog(self, flow)

    def resolve_filepath(self, filepath: str, dataset: str, source: str) -> str:
        """A catalog filepath as an absolute local path (or the URL as given).

        Relative paths are relative to the root and may not leave it through ``..``.
        """
        if _storage.is_url(filepath):
            return filepath
        path = Path(filepath).expanduser()
        if path.is_absolute():
            return os.path.normpath(path)
        resolved = os.path.normpath(self.root / path)
        if not _inside(resolved, self.root):
            raise DatasetError(
                f"Dataset {dataset!r} in {source}: filepath {filepath!r} leaves the project root "
                f"{self.root} through '..'. Use a path inside the project, or an absolute path "
                "if the data really lives elsewhere."
            )
        return resolved

    def default_dataset_path(self, flow: str, name: str, extension: str) -> str:
        """``data/<flow>/<name>.<extension>``, refusing names that climb out through ``..``."""
        base = self.data_dir / flow
        resolved = os.path.normpath(base / f"{name}.{extension}")
        if not _inside(resolved, base):
            raise DatasetError(
                f"Dataset name {name!r} (flow {flow!r}) leaves {base} through '..'. Use a plain "
                "name, or declare the dataset with an explicit filepath in the catalog."
            )
        return resolved


def _value_at(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = values
    for part in path:
        node = node[part]
    return node


def _has_path(values: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = values
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _inside(path: str, root: Path) -> bool:
    root_text = os.path.normpath(root)
    return path == root_text or path.startswith(root_text.rstrip(os.sep) + os.sep)


def _find_root(cwd: Path, source_file: str | Path | None) -> Path:
    env_root = os.environ.get("LATENT_PROJECT_ROOT")
    if env_root:
        return (cwd / Path(env_root).expanduser()).resolve()
    cwd = cwd.resolve()
    found = _nearest_configured(cwd)
    if found is None and source_file is not None:
        source = Path(source_file).expanduser()
        source = (cwd / source).resolve()
        found = _nearest_configured(source if source.is_dir() else source.parent)
    return found or cwd


def find_project_root(start: str | Path) -> Path | None:
    """The nearest ancestor of `start` (a file or directory) holding ``config/latent.toml``."""
    path = Path(start).expanduser().resolve()
    return _nearest_configured(path if path.is_dir() else path.parent)


def _nearest_configured(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / "config" / "latent.toml").is_file():
            return directory
    return None
