"""The spec's checkpointing examples, verbatim: "The Problem", "The Solution: @checkpoint",
"Development Mode Only" (latent.toml and LATENT_ENVIRONMENT), "Multiple Checkpointed Functions",
"Clearing Checkpoints" (clear_checkpoints() and rm -rf .latent/cache/), "Cache Location",
"Thread Safety and Parallel Execution" and its good/avoid pair.

Executions of the checkpointed inner functions are counted through the stand-ins they call
(one line per call in calls.log). Each follow-up call passes a longer list, so the task-level
cache misses and only the checkpoints decide what runs.
"""

from __future__ import annotations

import runpy
import shutil

import pytest
from spec_project import SpecProject

DEV_TOML = """\
environment = "dev"

[mlflow]
enabled = false
"""

# Stand-ins shared by the checkpoint examples.
CHECKPOINT_PRELUDE = """
import json
from latent.prefect import checkpoint, flow, task

ROOT = _Path(__file__).resolve().parents[2]


class _LLMClient:
    \"\"\"Upper-cases the prompt; fails once on the prompt named in data/fail_at.\"\"\"

    def complete(self, prompt):
        marker = ROOT / "data" / "fail_at"
        if marker.exists() and marker.read_text() == prompt:
            marker.unlink()
            record(prompt + "!")
            raise ConnectionError(f"network error on {prompt}")
        record(prompt)
        return prompt.upper()


llm_client = _LLMClient()


def load_documents():
    return json.loads((ROOT / "data" / "docs.json").read_text())
"""

DOCS_HARNESS = """
@flow("docs_flow")
def docs_flow():
    return process_documents(load_documents())
"""


def _docs(project: SpecProject, n: int, *, fail_at: str | None = None) -> None:
    docs = [{"id": i, "prompt": f"p{i}"} for i in range(n)]
    import json

    (project.root / "data/docs.json").write_text(json.dumps(docs))
    if fail_at is not None:
        (project.root / "data/fail_at").write_text(fail_at)


# ---------------------------------------------------------------------------------------------
# The Problem

THE_PROBLEM = """
@task("process_documents")
def process_documents(documents: list[dict]) -> list[dict]:
    results = []
    for doc in documents:  # 10,000 documents
        # Network call that might fail
        result = llm_client.complete(doc["prompt"])
        results.append(result)

    return results

# Problem: If this fails at document 7,500...
# On retry, it starts from scratch and reprocesses all 10,000 documents!
"""


def test_the_problem_retry_starts_from_scratch(project: SpecProject) -> None:
    project.settings(DEV_TOML)
    _docs(project, 10, fail_at="p7")
    project.flow_file("docs_flow", THE_PROBLEM, prelude=CHECKPOINT_PRELUDE, harness=DOCS_HARNESS)
    assert project.load("docs_flow")() == [f"P{i}" for i in range(10)]
    first_attempt = [f"p{i}" for i in range(7)] + ["p7!"]
    assert project.calls() == first_attempt + [f"p{i}" for i in range(10)]


# ---------------------------------------------------------------------------------------------
# The Solution: @checkpoint

THE_SOLUTION = """
from latent.prefect import task, checkpoint

@task("process_documents")
def process_documents(documents: list[dict]) -> list[dict]:

    @checkpoint  # Results persist to disk
    def expensive_llm_call(doc: dict) -> dict:
        response = llm_client.complete(doc["prompt"])
        return {"id": doc["id"], "response": response}

    results = []
    for doc in documents:
        # On retry, already-processed docs return instantly from cache
        result = expensive_llm_call(doc)
        results.append(result)

    return results

# On retry after failure at doc 7,500:
# - First 7,500 return instantly from checkpoint cache
# - Only remaining 2,500 are processed
"""

CLEAR_CHECKPOINTS = """
from latent.prefect import clear_checkpoints

# After successful completion
clear_checkpoints()
"""


def _responses(n: int) -> list[dict[str, object]]:
    return [{"id": i, "response": f"P{i}"} for i in range(n)]


def test_the_solution_retry_resumes_and_clear_checkpoints(project: SpecProject) -> None:
    project.settings(DEV_TOML)
    _docs(project, 10, fail_at="p7")
    project.flow_file("docs_flow", THE_SOLUTION, prelude=CHECKPOINT_PRELUDE, harness=DOCS_HARNESS)
    docs_flow = project.load("docs_flow")

    # fails at p7, Prefect retries the task: p0-p6 come from the checkpoint, only p7-p9 run
    assert docs_flow() == _responses(10)
    first_attempt = [f"p{i}" for i in range(7)] + ["p7!"]
    assert project.calls() == [*first_attempt, "p7", "p8", "p9"]
    # "Cache Location": .latent/cache/ holds diskcache's SQLite database
    assert (project.root / ".latent/cache/cache.db").is_file()

    # one more document: the task runs again, the ten checkpointed calls do not
    _docs(project, 11)
    assert docs_flow() == _responses(11)
    assert project.calls()[len(first_attempt) + 3 :] == ["p10"]

    # the spec's "Clearing Checkpoints" snippet, run as a script
    script = project.write("clear_checkpoints_example.py", CLEAR_CHECKPOINTS)
    runpy.run_path(str(script))
    _docs(project, 12)
    done = len(project.calls())
    assert docs_flow() == _responses(12)
    assert project.calls()[done:] == [f"p{i}" for i in range(12)]  # everything ran again


@pytest.mark.slow
def test_checkpoints_persist_across_processes_and_rm_rf_cache(project: SpecProject) -> None:
    """ "Cache persists across process restarts"; `rm -rf .latent/cache/` starts over."""
    project.settings(DEV_TOML)
    project.flow_file("docs_flow", THE_SOLUTION, prelude=CHECKPOINT_PRELUDE)
    # checkpoints name code by its file in the project, not by the name it was imported under
    run = """
        import importlib.util, json
        spec = importlib.util.spec_from_file_location("other_name", "flows/docs_flow/flow.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(json.dumps(module.process_documents(module.load_documents())))
    """
    _docs(project, 3)
    module = project.module("docs_flow", module_name="docs_module")
    module.process_documents([{"id": 0, "prompt": "p0"}])
    assert project.calls() == ["p0"]
    project.python(run)  # a new process: p0 comes from the checkpoint
    assert project.calls() == ["p0", "p1", "p2"]

    shutil.rmtree(project.root / ".latent/cache")
    _docs(project, 4)
    project.python(run)
    assert project.calls()[3:] == ["p0", "p1", "p2", "p3"]


# ---------------------------------------------------------------------------------------------
# Development Mode Only

# The spec's two ways to turn checkpointing on: `export LATENT_ENVIRONMENT=dev`, or
# `environment = "dev"` in config/latent.toml (the latter is used by the tests above).


def test_development_mode_from_environment_variable(
    project: SpecProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENT_ENVIRONMENT", "dev")  # latent.toml sets no environment
    project.flow_file("docs_flow", THE_SOLUTION, prelude=CHECKPOINT_PRELUDE)
    process_documents = project.module("docs_flow").process_documents
    docs = [{"id": i, "prompt": f"p{i}"} for i in range(3)]
    assert process_documents(docs[:2]) == _responses(2)
    assert process_documents(docs) == _responses(3)
    assert project.calls() == ["p0", "p1", "p2"]


def test_production_checkpoint_is_a_no_op(project: SpecProject) -> None:
    project.flow_file("docs_flow", THE_SOLUTION, prelude=CHECKPOINT_PRELUDE)  # default: production
    process_documents = project.module("docs_flow").process_documents
    docs = [{"id": i, "prompt": f"p{i}"} for i in range(3)]
    assert process_documents(docs[:2]) == _responses(2)
    assert process_documents(docs) == _responses(3)
    assert project.calls() == ["p0", "p1", "p0", "p1", "p2"]  # fresh every time
    assert not (project.root / ".latent/cache/cache.db").exists()


# ---------------------------------------------------------------------------------------------
# Multiple Checkpointed Functions

MULTIPLE = """
@task("complex_pipeline")
def complex_pipeline(items: list[dict]) -> list[dict]:

    @checkpoint
    def step_1_extract(item: dict) -> dict:
        return extraction_model.run(item)

    @checkpoint
    def step_2_transform(extracted: dict) -> dict:
        return transformation_model.run(extracted)

    @checkpoint
    def step_3_validate(transformed: dict) -> dict:
        return validation_model.run(transformed)

    results = []
    for item in items:
        # Each step independently cached
        extracted = step_1_extract(item)
        transformed = step_2_transform(extracted)
        validated = step_3_validate(transformed)
        results.append(validated)

    return results
"""

MULTIPLE_PRELUDE = """
from latent.prefect import checkpoint, task


class _Model:
    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def run(self, value):
        record(f"{self.name}:{value['id']}")
        return self.fn(value)


extraction_model = _Model("extract", lambda item: {"id": item["id"], "text": item["text"]})
transformation_model = _Model("transform", lambda e: {"id": e["id"], "text": e["text"].upper()})
validation_model = _Model("validate", lambda t: {**t, "valid": t["text"].isupper()})
"""


def test_multiple_checkpointed_functions(project: SpecProject) -> None:
    project.settings(DEV_TOML)
    project.flow_file("pipeline", MULTIPLE, prelude=MULTIPLE_PRELUDE)
    complex_pipeline = project.module("pipeline").complex_pipeline
    items = [{"id": i, "text": f"item {i}"} for i in range(3)]
    expected = [{"id": i, "text": f"ITEM {i}", "valid": True} for i in range(3)]
    assert complex_pipeline(items[:2]) == expected[:2]
    steps = ["extract", "transform", "validate"]
    assert project.calls() == [f"{step}:{i}" for i in range(2) for step in steps]
    assert complex_pipeline(items) == expected
    assert project.calls()[6:] == [f"{step}:2" for step in steps]


# ---------------------------------------------------------------------------------------------
# Thread Safety and Parallel Execution

THREAD_POOL = """
@task("parallel_processing")
def parallel_processing(items: list[dict]) -> list[dict]:

    @checkpoint
    def process_item(item: dict) -> dict:
        return expensive_operation(item)

    # Safe to use with ThreadPoolExecutor
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=10) as executor:
        futures = [executor.submit(process_item, item) for item in items]
        results = [f.result() for f in futures]

    return results
"""


def test_checkpoint_with_thread_pool(project: SpecProject) -> None:
    project.settings(DEV_TOML)
    project.flow_file(
        "parallel",
        THREAD_POOL,
        prelude="""
        import time
        from latent.prefect import checkpoint, task

        def expensive_operation(item):
            record(str(item["id"]))
            time.sleep(0.005)
            return {"id": item["id"], "square": item["id"] ** 2}
        """,
    )
    parallel_processing = project.module("parallel").parallel_processing
    items = [{"id": i} for i in range(41)]
    expected = [{"id": i, "square": i * i} for i in range(41)]
    assert parallel_processing(items[:40]) == expected[:40]
    assert sorted(map(int, project.calls())) == list(range(40))  # each item exactly once
    assert parallel_processing(items) == expected
    assert project.calls()[40:] == ["40"]


CHECKPOINT_GOOD = """
# ✅ Good: Define checkpointed function once at task level
@task("process_batch")
def process_batch(items: list[dict]) -> list[dict]:

    @checkpoint
    def call_api(item: dict) -> dict:
        return api.process(item)

    # Use the same function for all items
    return [call_api(item) for item in items]
"""

CHECKPOINT_AVOID = """
# ❌ Avoid: Creating checkpointed functions inside parallel workers
@task("process_batch")
def process_batch(items: list[dict]) -> list[dict]:
    results = []
    for item in items:
        # Creating @checkpoint functions in a loop is inefficient
        @checkpoint
        def process_this_item(x: dict) -> dict:
            return api.process(x)

        results.append(process_this_item(item))
    return results
"""


@pytest.mark.parametrize("example", [CHECKPOINT_GOOD, CHECKPOINT_AVOID], ids=["good", "avoid"])
def test_checkpoint_good_and_avoid(project: SpecProject, example: str) -> None:
    # the two halves of one spec block define the same task name: one file each
    project.settings(DEV_TOML)
    project.flow_file(
        "batch",
        example,
        prelude="""
        from latent.prefect import checkpoint, task

        class _Api:
            def process(self, item):
                record(str(item["id"]))
                return {"id": item["id"], "ok": True}

        api = _Api()
        """,
    )
    process_batch = project.module("batch").process_batch
    items = [{"id": i} for i in range(4)]
    assert process_batch(items[:3]) == [{"id": i, "ok": True} for i in range(3)]
    assert process_batch(items) == [{"id": i, "ok": True} for i in range(4)]
    assert project.calls() == ["0", "1", "2", "3"]  # both work; "avoid" is only wasteful
