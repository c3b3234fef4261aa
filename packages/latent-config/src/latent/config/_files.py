"""Reading YAML and TOML configuration files, with errors that name the file and line.

YAML is read with a safe loader that refuses duplicate keys: plain YAML loaders keep the last
value silently, so a parameter written twice would run with whichever a user did not mean.

Parsed files are cached per process and re-read when the file changes (its mtime, size or
inode differ), so a long-lived process sees edits without paying a parse on every access.
"""

from __future__ import annotations

import os
import threading
import tomllib
from pathlib import Path
from typing import Any

import yaml

from latent.config.errors import ConfigFileError

Stamp = tuple[int, int, int]

_cache: dict[tuple[str, Path], tuple[Stamp, dict[str, Any]]] = {}
_lock = threading.Lock()


def file_stamp(path: Path) -> Stamp | None:
    """Identify a file's current version cheaply; ``None`` when it does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file whose top level is a mapping; a missing or empty file gives ``{}``.

    The returned dict is shared with the cache: callers must copy before mutating.
    """
    return _cached("yaml", path, _parse_yaml)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file gives ``{}``. The result is shared with the cache."""
    return _cached("toml", path, _parse_toml)


def _cached(kind: str, path: Path, parse: Any) -> dict[str, Any]:
    stamp = file_stamp(path)
    if stamp is None:
        return {}
    key = (kind, path)
    hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    data: dict[str, Any] = parse(path)
    with _lock:
        _cache[key] = (stamp, data)
    return data


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice (first and second positions kept for the message)."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(problem=f"duplicate key {key!r}", problem_mark=second)
        self.key = key
        self.first = first


# libyaml's parser when PyYAML was built with it (the wheels are): a 10 MB parameters file
# parses in about a second instead of ten. Construction stays PyYAML's safe constructor.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """The safe loader (no arbitrary objects from configuration), refusing duplicate keys.

    Only a mapping's own keys are compared: values merged in with ``<<: *anchor`` may be
    overridden, which is what merge keys are for.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base loader reports it
                continue
            if first is not None:
                raise _DuplicateKeyError(key, first, key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def _parse_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        # A SafeLoader subclass: configuration can never construct arbitrary objects.
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKeyError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 0
        raise ConfigFileError(
            f"{path}:{line}: duplicate key {exc.key!r} (first on line {exc.first.line + 1}); "
            f"YAML would keep only the last value. Remove or rename one of them."
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigFileError(_yaml_message(path, exc)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 text ({exc}). Save the file as UTF-8.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{path}: the top level must be a mapping of 'key: value' lines, "
            f"got a {type(data).__name__}. Fix the file so each entry is 'name: value'."
        )
    return data


def _yaml_message(path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    line = f" (line {mark.line + 1})" if mark is not None else ""
    return f"{where}: invalid YAML: {detail}. Fix the syntax at that place in the file{line}."


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line N, column M)".
        raise ConfigFileError(
            f"{path}: invalid TOML: {exc}. Fix the syntax at that line "
            "(strings need quotes, tables are written [name])."
        ) from exc
