from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest

from latent.registry import RegistryFileError, TaskRegistry

# Copied from the spec's "Task Registry & Visualization" section, byte for byte.
SPEC_TREE = """=== \U0001f333 Canopy Pipeline Topology ===

\U0001f4e6 Flow: data_pipeline
  ├── ⚙\ufe0f  load
  │    ⬆\ufe0f  out: raw_data
  ├── ⚙\ufe0f  clean
  │    ⬇\ufe0f  in: raw_data
  │    ⬆\ufe0f  out: cleaned_data
  ├── ⚙\ufe0f  process
  │    ⬇\ufe0f  in: cleaned_data
  │    ⬆\ufe0f  out: processed_data
"""


def _data_pipeline() -> None:
    TaskRegistry.register_flow("data_pipeline")
    TaskRegistry.register_task("data_pipeline", "load", outputs=["raw_data"])
    TaskRegistry.register_task(
        "data_pipeline", "clean", inputs=["raw_data"], outputs=["cleaned_data"]
    )
    TaskRegistry.register_task("data_pipeline", "load", outputs=["raw_data"])  # second call: no-op
    TaskRegistry.register_task(
        "data_pipeline", "process", inputs=["cleaned_data"], outputs=["processed_data"]
    )


def test_ascii_tree_is_the_spec_text() -> None:
    _data_pipeline()
    out = io.StringIO()

    TaskRegistry.print_ascii(file=out)

    assert out.getvalue() == SPEC_TREE


def test_ascii_tree_matches_the_spec_file_when_it_is_beside_the_repo() -> None:
    spec = Path(__file__).resolve().parents[3].parent / "shared/spec/prefect-flows-and-tasks.md"
    if not spec.exists():
        pytest.skip("shared/spec is not beside this checkout")
    text = spec.read_text(encoding="utf-8")
    start = text.index("=== \U0001f333 Canopy")
    block = text[start : text.index("processed_data", start) + len("processed_data")] + "\n"
    _data_pipeline()

    assert TaskRegistry.render_ascii() == block


def test_ascii_without_emoji() -> None:
    _data_pipeline()

    lines = TaskRegistry.render_ascii(emoji=False).splitlines()

    assert lines[:5] == [
        "=== Canopy Pipeline Topology ===",
        "",
        "Flow: data_pipeline",
        "  ├── load",
        "  │    out: raw_data",
    ]
    assert all(line.isascii() or "├" in line or "│" in line for line in lines)


def _two_flows() -> None:
    _data_pipeline()
    TaskRegistry.register_flow(
        "downstream_flow", inputs=["data_pipeline.processed_data"], outputs=["report"]
    )
    TaskRegistry.register_task(
        "downstream_flow", "analyze", inputs=["data_pipeline.processed_data"], outputs=["report"]
    )
    TaskRegistry.register_flow("subflow", parent="downstream_flow")
    TaskRegistry.register_task("subflow", "score", inputs=["downstream_flow.report"])


def test_mermaid_draws_cross_flow_dataset_edges() -> None:
    _two_flows()

    mermaid = TaskRegistry.to_mermaid()

    assert mermaid.startswith("flowchart LR\n")
    assert mermaid.count("subgraph ") == 3
    # data_pipeline's processed_data (d2) is written by process (t2) and read by analyze (t3)
    assert '    d2[("processed_data")]' in mermaid
    assert "  t2 --> d2" in mermaid
    assert "  d2 --> t3" in mermaid
    assert "  f1 -.->|subflow| f2" in mermaid


def test_dot_draws_cross_flow_dataset_edges() -> None:
    _two_flows()

    dot = TaskRegistry.to_dot()

    assert dot.startswith("digraph latent {")
    assert dot.count("subgraph cluster_") == 3
    assert '    d2 [label="processed_data", shape=cylinder];' in dot
    assert "  t2 -> d2;" in dot
    assert "  d2 -> t3;" in dot


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    _two_flows()
    path = tmp_path / ".latent" / "registry.json"
    before = TaskRegistry.render_ascii()

    TaskRegistry.save(path)
    TaskRegistry.clear()
    assert TaskRegistry.to_dict()["flows"] == {}
    TaskRegistry.load(path)

    assert TaskRegistry.render_ascii() == before
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["registry.json"]  # no temp file left


def test_save_removes_temp_files_a_killed_save_left(tmp_path: Path) -> None:
    path = tmp_path / ".latent" / "registry.json"
    path.parent.mkdir()
    litter = path.parent / ".registry.json.0123abcd.tmp"
    litter.write_bytes(b"")  # what a SIGKILL between create and rename leaves
    os.utime(litter, (1_000_000_000, 1_000_000_000))
    unrelated = path.parent / ".other.json.0123abcd.tmp"
    unrelated.write_bytes(b"")
    os.utime(unrelated, (1_000_000_000, 1_000_000_000))
    _two_flows()
    TaskRegistry.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [unrelated.name, "registry.json"]


def test_from_dict_replaces_and_merge_dict_adds() -> None:
    _data_pipeline()
    snapshot = TaskRegistry.to_dict()
    TaskRegistry.clear()
    TaskRegistry.register_task("other", "t", inputs=["x"])

    TaskRegistry.merge_dict(snapshot)
    assert list(TaskRegistry.to_dict()["flows"]) == ["other", "data_pipeline"]

    TaskRegistry.from_dict(snapshot)
    assert list(TaskRegistry.to_dict()["flows"]) == ["data_pipeline"]


def test_loading_a_broken_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RegistryFileError, match=r"registry\.json is not valid JSON"):
        TaskRegistry.load(path)

    path.write_text('{"flows": {"f": {"tasks": [1]}}}', encoding="utf-8")
    with pytest.raises(RegistryFileError, match="flow 'f' has no list of named tasks"):
        TaskRegistry.load(path)


def test_concurrent_registration_keeps_every_task_once() -> None:
    def register(index: int) -> None:
        for task in range(50):
            TaskRegistry.register_task("mapped", f"t{task}", inputs=[f"in{index % 3}"])

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    tasks = TaskRegistry.to_dict()["flows"]["mapped"]["tasks"]
    assert [task["name"] for task in tasks] == [f"t{i}" for i in range(50)]
    assert all(sorted(task["inputs"]) == ["in0", "in1", "in2"] for task in tasks)


def test_runs_on_two_threads_register_apart_and_publish_when_they_end() -> None:
    """`TaskRegistry.run()`: what a run registers is its own until it ends (issue 10.5)."""
    both_registered = threading.Barrier(2, timeout=30)
    seen: dict[str, dict[str, object]] = {}

    def run(flow: str, task: str) -> None:
        with TaskRegistry.run():
            TaskRegistry.start_flow(flow)
            TaskRegistry.register_task(flow, task)
            both_registered.wait()
            seen[task] = TaskRegistry.to_dict()["flows"]

    threads = [
        threading.Thread(target=run, args=args) for args in (("same", "one"), ("same", "two"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [t["name"] for t in seen["one"]["same"]["tasks"]] == ["one"]  # type: ignore[index]
    assert [t["name"] for t in seen["two"]["same"]["tasks"]] == ["two"]  # type: ignore[index]
    # afterwards the process-wide registry holds the run that ended last
    tasks = [t["name"] for t in TaskRegistry.to_dict()["flows"]["same"]["tasks"]]
    assert tasks in (["one"], ["two"])


def test_a_run_replaces_its_flow_and_its_old_subflows_in_the_process_registry() -> None:
    TaskRegistry.start_flow("parent")
    TaskRegistry.register_task("parent", "old")
    TaskRegistry.start_flow("child", parent="parent")
    TaskRegistry.register_flow("elsewhere")
    with TaskRegistry.run():
        TaskRegistry.start_flow("parent")
        TaskRegistry.register_task("parent", "new")
        assert set(TaskRegistry.to_dict()["flows"]) == {"parent"}
    flows = TaskRegistry.to_dict()["flows"]
    assert list(flows) == ["elsewhere", "parent"]  # the child it no longer runs is gone
    assert [t["name"] for t in flows["parent"]["tasks"]] == ["new"]
