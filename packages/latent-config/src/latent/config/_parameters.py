"""Merging parameter layers: global under flow, run-time overrides, ``${env:...}`` values.

An override of ``a.b`` replaces only that leaf and keeps ``a``'s other keys; merging is deep
for mappings and replaces everything else (lists included), the way users expect from YAML.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from latent.config.errors import ConfigFileError, ParameterOverrideError

_ENV = re.compile(r"\$\{env:([^},]+)(?:,([^}]*))?\}")


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``top``: nested mappings merge, anything else in top wins."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def parse_overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[tuple[str, Any]]:
    """Normalise overrides to ``(dotted_key, value)`` pairs.

    Strings look like ``a.b=value`` (as a command line passes them); the value is parsed as a
    YAML scalar so ``3`` is an int and ``true`` a bool, and falls back to the raw text.
    """
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [(str(k), v) for k, v in overrides.items()]
    if isinstance(overrides, str):
        overrides = [overrides]
    pairs = []
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise ParameterOverrideError(
                f"Override {item!r} is not of the form 'key=value' (or 'section.key=value'). "
                "Write it as e.g. 'batch_size=64' or 'model.temperature=0.2'."
            )
        pairs.append((key.strip(), _parse_scalar(raw)))
    return pairs


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def apply_overrides(params: dict[str, Any], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Set each dotted key's leaf in ``params`` (a fresh copy is returned)."""
    result = dict(params)
    for key, value in pairs:
        result = _set_leaf(result, key, value)
    return result


def _set_leaf(params: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    *parents, leaf = key.split(".")
    if any(not part for part in [*parents, leaf]):
        raise ParameterOverrideError(f"Override key {key!r} has an empty part; write 'a.b=value'.")
    root = dict(params)
    node = root
    for depth, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, Mapping):
            where = ".".join(parents[: depth + 1])
            raise ParameterOverrideError(
                f"Cannot apply override {key!r}: parameter {where!r} is "
                f"{child!r} ({type(child).__name__}), not a mapping. Override {where!r} "
                "itself, or make it a mapping in parameters.yaml."
            )
        node[part] = dict(child)
        node = node[part]
    below = node.get(leaf)
    if isinstance(value, Mapping) and isinstance(below, Mapping):
        node[leaf] = deep_merge(below, value)
    else:
        node[leaf] = value
    return root


def interpolate_env(value: Any, where: str, path: str = "") -> Any:
    """Replace ``${env:NAME}`` / ``${env:NAME,default}`` in every string, recursively.

    ``where`` names the source (flow or file) for the error raised when a variable is unset and
    has no default.
    """
    if isinstance(value, str):
        return _ENV.sub(lambda m: _env_value(m, where, path), value) if "${env:" in value else value
    if isinstance(value, Mapping):
        return {
            k: interpolate_env(v, where, f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate_env(v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _env_value(match: re.Match[str], where: str, path: str) -> str:
    name, default = match.group(1).strip(), match.group(2)
    found = os.environ.get(name)
    if found is not None:
        return found
    if default is not None:
        return default
    raise ConfigFileError(
        f"{where}: '{path}' refers to environment variable {name!r}, which is not set. "
        f"Set {name}, or give a default: '${{env:{name},default}}'."
    )
