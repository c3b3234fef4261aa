"""Drawings of a registry snapshot: the spec's ASCII tree, Mermaid and Graphviz DOT.

All three take the plain dict of `TaskRegistry.to_dict()`, so a later process can draw a
registry it loaded from disk. Dataset names are resolved per flow: ``raw_data`` in flow ``f`` is
``f.raw_data``; an input ``upstream.ds`` is flow ``upstream``'s dataset ``ds``, which is what
draws the cross-flow edges. A flow's own ``input``/``output`` datasets join the tasks that read or
write them; one that no task of the flow touches joins the flow's box as a whole, so no dataset
floats alone. Task-to-task data edges (an output passed as an argument) are dashed.
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


def _flow_edges(data: dict[str, Any]) -> Iterator[tuple[str, tuple[str, str], str]]:
    """(flow, dataset key, direction) for a flow input/output that no task of the flow touches."""
    for flow_name, flow in data["flows"].items():
        touched = {
            (key, direction)
            for owner, key, _, direction in _edges({"flows": {flow_name: flow}})
            if owner == flow_name
        }
        for name in flow.get("inputs", []):
            if (dataset_key(flow_name, name), "in") not in touched:
                yield flow_name, dataset_key(flow_name, name), "in"
        for name in flow.get("outputs", []):
            if (dataset_key(flow_name, name), "out") not in touched:
                yield flow_name, dataset_key(flow_name, name), "out"


def _task_edges(data: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(flow, from task, to task) for data passed as arguments, unless a dataset joins them."""
    for flow_name, flow in data["flows"].items():
        made = {
            t["name"]: {dataset_key(flow_name, n) for n in t.get("outputs", [])}
            for t in flow["tasks"]
        }
        read = {
            t["name"]: {dataset_key(flow_name, n) for n in t.get("inputs", [])}
            for t in flow["tasks"]
        }
        for edge in flow.get("edges", []):
            source, target = edge[0], edge[1]
            if not made.get(source, set()) & read.get(target, set()):
                yield flow_name, source, target


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
    """Every dataset drawn inside a flow's box, grouped by owning flow, in first-mention order.

    A flow's own input or output that none of its tasks touches is drawn outside every box
    (see `_loose_datasets`): an arrow from inside a box to that same box cannot be drawn.
    """
    loose = set(_loose_datasets(data))
    grouped: dict[str, list[str]] = {}
    mentioned = [key for _, key, _, _ in _edges(data)]
    for flow_name, flow in data["flows"].items():
        mentioned += [dataset_key(flow_name, n) for n in [*flow["inputs"], *flow["outputs"]]]
    for owner, name in mentioned:
        names = grouped.setdefault(owner, [])
        if name not in names and (owner, name) not in loose:
            names.append(name)
    return grouped


def _loose_datasets(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Datasets joined only to their own flow's box as a whole, in first-mention order."""
    touched = {key for _, key, _, _ in _edges(data)}
    loose: list[tuple[str, str]] = []
    for flow_name, key, _ in _flow_edges(data):
        if key[0] == flow_name and key not in touched and key not in loose:
            loose.append(key)
    return loose


def _quote(text: str) -> str:
    """A DOT string's contents: backslashes and double quotes escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _label(text: str) -> str:
    """A Mermaid label's contents: Mermaid has no backslash escapes, only ``#quot;`` entities."""
    return text.replace('"', "#quot;")


def render_mermaid(data: dict[str, Any]) -> str:
    """A Mermaid ``flowchart LR``: one subgraph per flow, tasks as boxes, datasets as cylinders."""
    ids = _Ids()
    datasets = _datasets_by_flow(data)
    lines = ["flowchart LR"]
    for flow_name in _all_flows(data, datasets):
        lines.append(f'  subgraph {ids.get("f", flow_name)}["{_label(flow_name)}"]')
        for task in data["flows"].get(flow_name, {}).get("tasks", []):
            lines.append(f'    {ids.get("t", flow_name, task["name"])}["{_label(task["name"])}"]')
        for name in datasets.get(flow_name, []):
            lines.append(f'    {ids.get("d", flow_name, name)}[("{_label(name)}")]')
        lines.append("  end")
    for owner, name in _loose_datasets(data):
        lines.append(f'  {ids.get("d", owner, name)}[("{_label(owner)}.{_label(name)}")]')
    for flow_name, (owner, name), task, direction in _edges(data):
        dataset_id, task_id = ids.get("d", owner, name), ids.get("t", flow_name, task)
        edge = f"{dataset_id} --> {task_id}" if direction == "in" else f"{task_id} --> {dataset_id}"
        lines.append(f"  {edge}")
    for flow_name, (owner, name), direction in _flow_edges(data):
        dataset_id, flow_id = ids.get("d", owner, name), ids.get("f", flow_name)
        edge = f"{dataset_id} --> {flow_id}" if direction == "in" else f"{flow_id} --> {dataset_id}"
        lines.append(f"  {edge}")
    for flow_name, source, target in _task_edges(data):
        lines.append(f"  {ids.get('t', flow_name, source)} -.-> {ids.get('t', flow_name, target)}")
    for flow_name, flow in data["flows"].items():
        if flow.get("parent"):
            lines.append(
                f"  {ids.get('f', flow['parent'])} -.->|subflow| {ids.get('f', flow_name)}"
            )
    return "\n".join(lines) + "\n"


def render_dot(data: dict[str, Any]) -> str:
    """Graphviz DOT: one cluster per flow, tasks as boxes, datasets as cylinders.

    Each cluster holds an invisible anchor node, so an edge can end at the cluster's border
    (``compound=true`` with ``lhead``/``ltail``): a flow input no task reads, a subflow.
    """
    ids = _Ids()
    datasets = _datasets_by_flow(data)
    lines = [
        "digraph latent {",
        "  rankdir=LR;",
        "  compound=true;",
        "  graph [fontname=Helvetica];",
        "  node [fontname=Helvetica];",
    ]
    for flow_name in _all_flows(data, datasets):
        flow_id = ids.get("f", flow_name)
        lines.append(f"  subgraph cluster_{flow_id} {{")
        lines.append(f'    label="{_quote(flow_name)}";')
        lines.append(f'    {flow_id} [shape=point, style=invis, width=0.01, label=""];')
        for task in data["flows"].get(flow_name, {}).get("tasks", []):
            task_id = ids.get("t", flow_name, task["name"])
            lines.append(f'    {task_id} [label="{_quote(task["name"])}", shape=box];')
        for name in datasets.get(flow_name, []):
            lines.append(
                f'    {ids.get("d", flow_name, name)} [label="{_quote(name)}", shape=cylinder];'
            )
        lines.append("  }")
    for owner, name in _loose_datasets(data):
        label = _quote(f"{owner}.{name}")
        lines.append(f'  {ids.get("d", owner, name)} [label="{label}", shape=cylinder];')
    for flow_name, (owner, name), task, direction in _edges(data):
        dataset_id, task_id = ids.get("d", owner, name), ids.get("t", flow_name, task)
        edge = f"{dataset_id} -> {task_id}" if direction == "in" else f"{task_id} -> {dataset_id}"
        lines.append(f"  {edge};")
    for flow_name, (owner, name), direction in _flow_edges(data):
        dataset_id, flow_id = ids.get("d", owner, name), ids.get("f", flow_name)
        if direction == "in":
            lines.append(f"  {dataset_id} -> {flow_id} [lhead=cluster_{flow_id}];")
        else:
            lines.append(f"  {flow_id} -> {dataset_id} [ltail=cluster_{flow_id}];")
    for flow_name, source, target in _task_edges(data):
        source_id, target_id = ids.get("t", flow_name, source), ids.get("t", flow_name, target)
        lines.append(f"  {source_id} -> {target_id} [style=dashed];")
    for flow_name, flow in data["flows"].items():
        if flow.get("parent"):
            parent_id, child_id = ids.get("f", flow["parent"]), ids.get("f", flow_name)
            lines.append(
                f"  {parent_id} -> {child_id} [style=dotted, label=subflow, "
                f"ltail=cluster_{parent_id}, lhead=cluster_{child_id}];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _all_flows(data: dict[str, Any], datasets: dict[str, list[str]]) -> list[str]:
    """Registered flows, then flows only known as owners of referenced datasets."""
    flows = list(data["flows"])
    flows.extend(owner for owner in datasets if owner not in data["flows"])
    return flows
