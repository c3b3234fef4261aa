"""The Mermaid and DOT drawings are valid for the tools that render them (issue 14).

DOT is parsed by pydot always, and rendered by Graphviz's `dot -Tsvg` when it is installed
(Debian: `apt-get install graphviz`). Mermaid is checked by a grammar of what we emit always, and
by Mermaid's own parser when `MERMAID_NODE_MODULES` names a node_modules holding `mermaid` and
`jsdom` (`npm install mermaid jsdom`) and `node` is on the PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pydot
import pytest

from latent.registry import TaskRegistry


def _rich_pipeline() -> None:
    """Every kind of node and edge, with names that need quoting."""
    TaskRegistry.start_flow("prepare", inputs=["raw data"], outputs=["train"])
    TaskRegistry.register_task("prepare", "split", outputs=["train"])
    TaskRegistry.start_flow("train", inputs=["prepare.train"], outputs=["model"])
    TaskRegistry.register_task("train", 'fit "forest"', inputs=["prepare.train"])
    TaskRegistry.register_task("train", "calibrate", outputs=["model"])
    TaskRegistry.register_edge("train", 'fit "forest"', "calibrate")
    TaskRegistry.start_flow("tune", parent="train")
    TaskRegistry.register_task("tune", "search", inputs=["train.model"])
    TaskRegistry.start_flow("report", inputs=["train.model"], outputs=["summary"])


# -- DOT -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydot's use of pyparsing
def test_dot_parses_with_pydot() -> None:
    _rich_pipeline()
    (graph,) = pydot.graph_from_dot_data(TaskRegistry.to_dot())
    assert graph.get_name() == "latent"
    clusters = [sub.get_name() for sub in graph.get_subgraphs()]
    assert clusters == ["cluster_f0", "cluster_f1", "cluster_f2", "cluster_f3"]
    labels = {
        node.get_label()
        for sub in graph.get_subgraphs()
        for node in sub.get_nodes()
        if node.get_label()
    }
    assert '"fit \\"forest\\""' in labels
    assert len(graph.get_edges()) == 9


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_dot_renders_with_graphviz(tmp_path: Path) -> None:
    _rich_pipeline()
    source = tmp_path / "pipeline.dot"
    source.write_text(TaskRegistry.to_dot(), encoding="utf-8")
    proc = subprocess.run(["dot", "-Tsvg", str(source)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no warnings either (e.g. an edge into its own cluster)
    assert "<svg" in proc.stdout and "calibrate" in proc.stdout


# -- Mermaid ---------------------------------------------------------------------------------

_ID = r"[A-Za-z][A-Za-z0-9_]*"
_LABEL = r'"[^"]*"'
_LINE = {
    "subgraph": re.compile(rf"^  subgraph ({_ID})\[{_LABEL}\]$"),
    "end": re.compile(r"^  end$"),
    "node": re.compile(rf"^ {{2,4}}({_ID})(?:\[{_LABEL}\]|\[\({_LABEL}\)\])$"),
    "edge": re.compile(rf"^  ({_ID}) (?:-->|-\.->|-\.->\|[A-Za-z ]+\|) ({_ID})$"),
}
_RESERVED = {"end", "subgraph", "graph", "flowchart", "style", "class", "click", "default"}


def check_mermaid(text: str) -> None:
    """Fail unless `text` is a flowchart in the subset of Mermaid we emit, consistently used."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    defined: set[str] = set()
    used: set[str] = set()
    depth = 0
    for number, line in enumerate(lines[1:], start=2):
        kind, match = next(
            ((k, m) for k, rx in _LINE.items() if (m := rx.match(line))), (None, None)
        )
        assert match is not None, f"line {number} is not Mermaid we emit: {line!r}"
        if kind == "subgraph":
            assert depth == 0, f"line {number}: nested subgraph"
            depth += 1
        elif kind == "end":
            assert depth == 1, f"line {number}: 'end' without 'subgraph'"
            depth -= 1
        elif kind == "edge":
            used.update(match.groups())
        if kind in ("subgraph", "node"):
            name = match.group(1)
            assert name not in defined, f"line {number}: {name} defined twice"
            assert name.lower() not in _RESERVED
            defined.add(name)
    assert depth == 0, "a subgraph is not closed"
    assert used <= defined, f"edges to undefined nodes: {used - defined}"


def test_mermaid_follows_the_grammar() -> None:
    _rich_pipeline()
    mermaid = TaskRegistry.to_mermaid()
    check_mermaid(mermaid)
    assert '["fit #quot;forest#quot;"]' in mermaid  # Mermaid's escape for a double quote


def test_the_grammar_check_rejects_broken_mermaid() -> None:
    with pytest.raises(AssertionError, match="undefined"):
        check_mermaid("flowchart LR\n  a --> b\n")
    with pytest.raises(AssertionError, match="not closed"):
        check_mermaid('flowchart LR\n  subgraph f0["x"]\n')
    with pytest.raises(AssertionError, match="not Mermaid we emit"):
        check_mermaid('flowchart LR\n  t0["say "hi""]\n')


_MERMAID_PARSE = """
import { JSDOM } from "jsdom";
import { readFileSync } from "node:fs";
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
try {
  await mermaid.parse(readFileSync(process.argv[2], "utf8"));
  console.log("ok");
} catch (error) {
  console.log(error.message);
  process.exit(1);
}
"""


def _mermaid_modules() -> Path | None:
    modules = os.environ.get("MERMAID_NODE_MODULES")
    if not modules or shutil.which("node") is None:
        return None
    path = Path(modules)
    return path if (path / "mermaid").is_dir() and (path / "jsdom").is_dir() else None


@pytest.mark.slow
@pytest.mark.skipif(
    _mermaid_modules() is None,
    reason="Mermaid's parser needs node and MERMAID_NODE_MODULES (npm install mermaid jsdom)",
)
def test_mermaid_parses_with_mermaid_itself(tmp_path: Path) -> None:
    modules = _mermaid_modules()
    assert modules is not None
    script = modules.parent / "latent-mermaid-parse.mjs"  # beside node_modules: imports resolve
    script.write_text(_MERMAID_PARSE, encoding="utf-8")
    _rich_pipeline()
    good = tmp_path / "pipeline.mmd"
    good.write_text(TaskRegistry.to_mermaid(), encoding="utf-8")
    bad = tmp_path / "broken.mmd"
    bad.write_text("flowchart LR\n  a -->\n", encoding="utf-8")

    def parse(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["node", str(script), str(path)], capture_output=True, text=True, timeout=120
        )

    accepted = parse(good)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert parse(bad).returncode == 1  # the check can fail
