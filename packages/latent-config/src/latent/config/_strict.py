"""Strict parameters: which keys a flow's ``config_schema`` accepts, and where a stray key was.

A typo such as ``n_estimator: 300`` for the field ``n_estimators`` would otherwise be dropped
silently by pydantic (its default is ``extra="ignore"``) while the run uses the default. So every
key a flow's own file or an override sets must name a field, nested models included. A model
opts out by saying so in its config: ``extra="allow"`` keeps unknown keys, an explicit
``extra="ignore"`` drops them quietly.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

KeyPath = tuple[str, ...]
Unknown = tuple[KeyPath, list[str]]  # the unknown key path, and the names allowed there


def _models_in(annotation: Any) -> list[type[BaseModel]] | None:
    """The pydantic models a field holds (``Model``, ``Model | None``, ``Annotated[Model, ...]``).

    None when the field holds anything that is not a model (a dict, ``Any``, a scalar): below
    such a field every key is the field's own business.
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        models: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            found = _models_in(arg)
            if found is None:
                return None
            models.extend(found)
        return models or None
    return None


def _is_open(model: type[BaseModel]) -> bool:
    """Whether the model itself says what to do with unknown keys (allow, or explicit ignore)."""
    extra = model.model_config.get("extra")
    return extra == "allow" or (extra == "ignore" and "extra" in _own_config(model))


def _own_config(model: type[BaseModel]) -> Mapping[str, Any]:
    # model_config merges the bases' settings; a user's explicit choice is in some class's dict.
    for klass in model.__mro__:
        if klass is BaseModel:
            break
        config = vars(klass).get("model_config")
        if isinstance(config, Mapping) and "extra" in config:
            return config
    return {}


def field_names(model: type[BaseModel]) -> dict[str, Any]:
    """Every name a key may use for each field (its name and string aliases) -> the field."""
    names: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        names[name] = info
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                names[alias] = info
    return names


def unknown_at(models: Sequence[type[BaseModel]], path: KeyPath) -> Unknown | None:
    """Where ``path`` leaves the schema: (the unknown prefix, the names allowed there), or None.

    None means some model in ``models`` accepts the whole path (as a field, below a field that is
    not a model, or through ``extra``).
    """
    best: Unknown | None = None
    for model in models:
        found = _unknown_in(model, path, ())
        if found is None:
            return None
        if best is None or len(found[0]) > len(best[0]):
            best = found
    return best


def _unknown_in(model: type[BaseModel], path: KeyPath, done: KeyPath) -> Unknown | None:
    if not path:
        return None
    names = field_names(model)
    info = names.get(path[0])
    if info is None:
        return None if _is_open(model) else ((*done, path[0]), sorted(model.model_fields))
    inner = _models_in(info.annotation)
    if inner is None or len(path) == 1:
        return None
    best: Unknown | None = None
    for sub in inner:
        found = _unknown_in(sub, path[1:], (*done, path[0]))
        if found is None:
            return None
        best = best or found
    return best


def declares(model: type[BaseModel], path: KeyPath) -> bool:
    """Whether the schema names ``path`` as a field (``extra`` aside): the key "exists" there."""
    names = field_names(model)
    info = names.get(path[0]) if path else None
    if info is None:
        return False
    if len(path) == 1:
        return True
    inner = _models_in(info.annotation)
    return inner is None or any(declares(sub, path[1:]) for sub in inner)


def leaf_paths(mapping: Mapping[str, Any], prefix: KeyPath = ()) -> Iterator[KeyPath]:
    """Every key path of a nested mapping, parents before children."""
    for key, value in mapping.items():
        path = (*prefix, str(key))
        yield path
        if isinstance(value, Mapping):
            yield from leaf_paths(value, path)


def key_line(path: Path, keys: KeyPath) -> int | None:
    """The 1-based line where the nested key ``keys`` is written in a YAML file, if it can tell.

    Parsed again with node positions only to word an error, so the common path pays nothing.
    """
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return line
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            return line
    return line


def describe(model: type[BaseModel], prefix: KeyPath = ()) -> Iterator[tuple[str, str, str]]:
    """``(dotted key, type, default)`` of every field, nested models flattened (for listings).

    The default reads ``required`` for a field without one.
    """
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        inner = _models_in(info.annotation)
        if inner is not None and len(inner) == 1 and info.annotation is inner[0]:
            yield from describe(inner[0], path)
            continue
        default = (
            "required"
            if info.is_required()
            else repr(info.get_default(call_default_factory=True, validated_data={}))
        )
        yield ".".join(path), _type_name(info.annotation), default


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    # `typing.Literal['a']`, `mymodule.Forest | None` -> `Literal['a']`, `Forest | None`
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", str(annotation))
