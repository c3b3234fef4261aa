"""Drawings of a registry snapshot: the spec's ASCII tree, Mermaid and Graphviz DOT.

All three take the plain dict of `TaskRegistry.to_dict()`, so a later process can draw a
registry it loaded from disk. Dataset names are resolved per flow: ``raw_data`` in flow ``f`` is
``f.raw_data``; an input ``upstream.ds`` is flow ``upstream``'s dataset ``ds``, which is what
draws the cross-flow edges.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_TITLE = "=== {icon}Canopy Pipeline Topology ==="
_ICONS = {"title": "🌳 ", "flow": "📦 ", "task": "⚙️  ", "in": "⬇️  ", "out": "⬆️  "}
_NO_ICONS = dict.fromkeys(_ICONS, "")


def render_ascii(data: dict[str, Any], *, emoji: bool = True) -> str:
    """The "Canopy Pipeline Topology" tree, exactly in the spec's style (one line per fact)."""
    icons = _ICONS if emoji else _NO_ICONS
    lines = [_TITLE.format(icon=icons["title"])]
    for flow_name, flow in data["flows"].items():
        lines.append("")
        parent = f" (subflow of {flow['parent']})" if flow.get("parent") else ""
        lines.append(f"{icons['flow']}Flow: {flow_name}{parent}")
        lines.extend(f"  {icons['in']}in: {name}" for name in flow.get("inputs", []))
        lines.extend(f"  {icons['out']}out: {name}" for name in flow.get("outputs", []))
        for task in flow["tasks"]:
            lines.append(f"  ├── {icons['task']}{task['name']}")
            lines.extend(f"  │    {icons['in']}in: {name}" for name in task.get("inputs", []))
            lines.extend(f"  │    {icons['out']}out: {name}" for name in task.get("outputs", []))
    return "\n".join(lines) + "\n"


def dataset_key(flow_name: str, dataset: str) -> tuple[str, str]:
    """(flow, dataset) a name refers to from inside `flow_name` (``other.ds`` is cross-flow)."""
    if "." in dataset:
        owner, _, name = dataset.partition(".")
        return owner, name
    return flow_name, dataset


def _edges(data: dict[str, Any]) -> Iterator[tuple[str, tuple[str, str], str, str]]:
    """(flow, dataset key, task, direction) for every task input ("in") and output ("out")."""
    for flow_name, flow in data["flows"].items():
        for task in flow["tasks"]:
            for name in task.get("inputs", []):
                yield flow_name, dataset_key(flow_name, name), task["name"], "in"
            for name in task.get("outputs", []):
                yield flow_name, dataset_key(flow_name, name), task["name"], "out"


class _Ids:
    """Short, collision-free node ids (t0, d0, f0...) in first-seen order: deterministic output."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, ...], str] = {}

    def get(self, prefix: str, *key: str) -> str:
        full = (prefix, *key)
        if full not in self._ids:
            self._ids[full] = f"{prefix}{sum(k[0] == prefix for k in self._ids)}"
        return self._ids[full]


def _datasets_by_flow(data: dict[str, Any]) -> dict[str, list[str]]:
    """Every dataset mentioned, grouped by owning flow, in first-mention order."""
    grouped: dict[str, list[str]] = {}
    for _, (owner, name), _, _ in _edges(data):
        names = grouped.setdefault(owner, [])
        if name not in names:
            names.append(name)
    for flow_name, flow in data["flows"].items():
        for name in [*flow.get("inputs", []), *flow.get("outputs", [])]:
            owner, dataset = dataset_key(flow_name, name)
            names = grouped.setdefault(owner, [])
            if dataset not in names:
                names.append(dataset)
    return grouped


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_mermaid(data: dict[str, Any]) -> str:
    """A Mermaid ``flowchart LR``: one subgraph per flow, tasks as boxes, datasets as cylinders."""
    ids = _Ids()
    datasets = _datasets_by_flow(data)
    lines = ["flowchart LR"]
    for flow_name in _all_flows(data, datasets):
        lines.append(f'  subgraph {ids.get("f", flow_name)}["{_quote(flow_name)}"]')
        for task in data["flows"].get(flow_name, {}).get("tasks", []):
            lines.append(f'    {ids.get("t", flow_name, task["name"])}["{_quote(task["name"])}"]')
        for name in datasets.get(flow_name, []):
            lines.append(f'    {ids.get("d", flow_name, name)}[("{_quote(name)}")]')
        lines.append("  end")
    for flow_name, (owner, name), task, direction in _edges(data):
        dataset_id, task_id = ids.get("d", owner, name), ids.get("t", flow_name, task)
        edge = f"{dataset_id} --> {task_id}" if direction == "in" else f"{task_id} --> {dataset_id}"
        lines.append(f"  {edge}")
    for flow_name, flow in data["flows"].items():
        if flow.get("parent"):
            lines.append(
                f"  {ids.get('f', flow['parent'])} -.->|subflow| {ids.get('f', flow_name)}"
            )
    return "\n".join(lines) + "\n"


def render_dot(data: dict[str, Any]) -> str:
    """Graphviz DOT: one cluster per flow, tasks as boxes, datasets as cylinders."""
    ids = _Ids()
    datasets = _datasets_by_flow(data)
    lines = ["digraph latent {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    for flow_name in _all_flows(data, datasets):
        lines.append(f"  subgraph cluster_{ids.get('f', flow_name)} {{")
        lines.append(f'    label="{_quote(flow_name)}";')
        for task in data["flows"].get(flow_name, {}).get("tasks", []):
            task_id = ids.get("t", flow_name, task["name"])
            lines.append(f'    {task_id} [label="{_quote(task["name"])}", shape=box];')
        for name in datasets.get(flow_name, []):
            lines.append(
                f'    {ids.get("d", flow_name, name)} [label="{_quote(name)}", shape=cylinder];'
            )
        lines.append("  }")
    for flow_name, (owner, name), task, direction in _edges(data):
        dataset_id, task_id = ids.get("d", owner, name), ids.get("t", flow_name, task)
        edge = f"{dataset_id} -> {task_id}" if direction == "in" else f"{task_id} -> {dataset_id}"
        lines.append(f"  {edge};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _all_flows(data: dict[str, Any], datasets: dict[str, list[str]]) -> list[str]:
    """Registered flows, then flows only known as owners of referenced datasets."""
    flows = list(data["flows"])
    flows.extend(owner for owner in datasets if owner not in data["flows"])
    return flows
