"""The registry is the pipeline (issue 14): each run replaces its flow's part, data edges between
tasks, flow inputs/outputs joined to the picture, and the saved file updated flow by flow.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from latent.registry import TaskRegistry


def _mermaid_edges() -> set[tuple[str, str, str]]:
    """(from label, arrow, to label) of every edge in `to_mermaid()`: ids are not the point."""
    text = TaskRegistry.to_mermaid()
    labels = dict(re.findall(r'^\s*(?:subgraph )?(\w+)\[\(?"([^"]*)"\)?\]$', text, re.M))
    return {
        (labels[a], arrow, labels[b])
        for a, arrow, b in re.findall(r"^\s*(\w+) (-->|-\.->) (\w+)$", text, re.M)
    }


def _flow_tasks(flow: str) -> list[str]:
    return [task["name"] for task in TaskRegistry.to_dict()["flows"][flow]["tasks"]]


def test_a_new_run_of_a_flow_replaces_its_tasks_datasets_and_subflows() -> None:
    TaskRegistry.start_flow("train", inputs=["prepare.train"], outputs=["old_model"])
    TaskRegistry.register_task("train", "fit", outputs=["model"])
    TaskRegistry.register_task("train", "old_step", inputs=["stale"])
    TaskRegistry.start_flow("tune", parent="train")
    TaskRegistry.register_task("tune", "search")
    TaskRegistry.start_flow("other")
    TaskRegistry.register_task("other", "kept")

    TaskRegistry.start_flow("train", inputs=["prepare.train"], outputs=["model"])
    TaskRegistry.register_task("train", "fit", outputs=["model"])

    flows = TaskRegistry.to_dict()["flows"]
    assert list(flows) == ["other", "train"]  # tune was train's subflow last time: gone too
    assert flows["train"]["outputs"] == ["model"]
    assert _flow_tasks("train") == ["fit"]
    assert "stale" not in TaskRegistry.to_mermaid()
    assert _flow_tasks("other") == ["kept"]


def test_register_edge_draws_a_dashed_data_edge_unless_a_dataset_joins_the_tasks() -> None:
    TaskRegistry.start_flow("answer")
    TaskRegistry.register_task("answer", "build_prompts")
    TaskRegistry.register_edge("answer", "build_prompts", "answer_question")
    TaskRegistry.register_edge("answer", "build_prompts", "answer_question")  # idempotent
    TaskRegistry.register_task("answer", "score", outputs=["scored"])
    TaskRegistry.register_task("answer", "report", inputs=["scored"])
    TaskRegistry.register_edge("answer", "score", "report")  # already joined by `scored`

    flow = TaskRegistry.to_dict()["flows"]["answer"]
    assert flow["edges"] == [["build_prompts", "answer_question"], ["score", "report"]]
    assert _flow_tasks("answer") == ["build_prompts", "answer_question", "score", "report"]
    assert _mermaid_edges() == {
        ("build_prompts", "-.->", "answer_question"),
        ("score", "-->", "scored"),
        ("scored", "-->", "report"),
    }
    dot = TaskRegistry.to_dot()
    assert "  t0 -> t1 [style=dashed];" in dot
    assert "t2 -> t3" not in dot
    # The ASCII tree keeps the spec's shape: data edges add no lines to it.
    assert TaskRegistry.render_ascii(emoji=False).splitlines()[2:] == [
        "Flow: answer",
        "  ├── build_prompts",
        "  ├── answer_question",
        "  ├── score",
        "  │    out: scored",
        "  ├── report",
        "  │    in: scored",
    ]


def test_flow_inputs_and_outputs_no_task_touches_join_the_flows_box() -> None:
    TaskRegistry.start_flow("answer", inputs=["questions"], outputs=["answers"])
    TaskRegistry.register_task("answer", "score", outputs=["scored"])
    TaskRegistry.start_flow("metrics", inputs=["answer.scored"], outputs=["summary"])
    TaskRegistry.register_task("metrics", "overall", outputs=["summary"])

    assert _mermaid_edges() == {
        # questions and answers: only the flow touches them; drawn outside its box, joined to it.
        ("answer.questions", "-->", "answer"),
        ("answer", "-->", "answer.answers"),
        # answer.scored: written by a task of answer, read by the metrics flow (by no task yet).
        ("score", "-->", "scored"),
        ("scored", "-->", "metrics"),
        # metrics.summary is written by a task of metrics: no box-level edge for it.
        ("overall", "-->", "summary"),
    }
    dot = TaskRegistry.to_dot()
    assert "  d0 -> f1 [lhead=cluster_f1];" in dot
    assert "  f0 -> d3 [ltail=cluster_f0];" in dot


def test_a_flow_input_a_task_reads_is_a_dataset_edge_to_that_task() -> None:
    TaskRegistry.start_flow("train", inputs=["prepare.train"])
    TaskRegistry.register_task("train", "fit", inputs=["prepare.train"])
    TaskRegistry.start_flow("prepare")
    TaskRegistry.register_task("prepare", "split", outputs=["train"])

    # prepare's split writes prepare.train, which train's fit reads: one path, no box edge.
    assert _mermaid_edges() == {("train", "-->", "fit"), ("split", "-->", "train")}


def test_save_flows_replaces_only_the_flows_that_ran(tmp_path: Path) -> None:
    path = tmp_path / ".latent" / "registry.json"
    TaskRegistry.start_flow("prepare")
    TaskRegistry.register_task("prepare", "split", outputs=["train"])
    TaskRegistry.start_flow("train")
    TaskRegistry.register_task("train", "fit")
    TaskRegistry.register_task("train", "removed_later")
    TaskRegistry.register_edge("train", "fit", "removed_later")
    TaskRegistry.save_flows(path, ["prepare", "train"])

    TaskRegistry.clear()  # another process: runs train only, which lost a task
    TaskRegistry.start_flow("train")
    TaskRegistry.register_task("train", "fit")
    TaskRegistry.save_flows(path, ["train"])

    saved = json.loads(path.read_text(encoding="utf-8"))["flows"]
    assert list(saved) == ["prepare", "train"]
    assert [t["name"] for t in saved["prepare"]["tasks"]] == ["split"]
    assert [t["name"] for t in saved["train"]["tasks"]] == ["fit"]
    assert saved["train"]["edges"] == []
    assert list(TaskRegistry.to_dict()["flows"]) == ["prepare", "train"]  # process holds it all
    assert not list(path.parent.glob("*.tmp"))


def test_save_flows_starts_afresh_from_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("{not json", encoding="utf-8")
    TaskRegistry.start_flow("train")
    TaskRegistry.register_task("train", "fit")
    TaskRegistry.save_flows(path, ["train"])
    assert list(json.loads(path.read_text(encoding="utf-8"))["flows"]) == ["train"]


def test_edges_survive_a_save_and_load(tmp_path: Path) -> None:
    TaskRegistry.start_flow("answer")
    TaskRegistry.register_edge("answer", "build_prompts", "answer_question")
    path = tmp_path / "registry.json"
    TaskRegistry.save(path)
    TaskRegistry.clear()
    TaskRegistry.load(path)
    assert TaskRegistry.to_dict()["flows"]["answer"]["edges"] == [
        ["build_prompts", "answer_question"]
    ]


SAVER = """
import sys
from latent.registry import TaskRegistry

path, flow = sys.argv[1], sys.argv[2]
for round in range(40):
    TaskRegistry.start_flow(flow)
    TaskRegistry.register_task(flow, f"step{round}")
    TaskRegistry.save_flows(path, [flow])
"""


def test_processes_saving_different_flows_at_once_keep_each_others(tmp_path: Path) -> None:
    path = tmp_path / ".latent" / "registry.json"
    savers = [
        subprocess.Popen([sys.executable, "-c", SAVER, str(path), flow])
        for flow in ("left", "right", "middle")
    ]
    assert [saver.wait(timeout=120) for saver in savers] == [0, 0, 0]

    saved = json.loads(path.read_text(encoding="utf-8"))["flows"]
    assert sorted(saved) == ["left", "middle", "right"]
    assert all(
        flow["tasks"] == [{"name": "step39", "inputs": [], "outputs": []}]
        for flow in saved.values()
    )
