"""The cache never serves a stale result: the cases users found, and `latent cache why`."""

from __future__ import annotations

import pickle
import sys
import threading
from pathlib import Path

import pytest
from project_dir import LATENT_TOML, ProjectDir


def test_a_helper_defined_below_its_task_is_part_of_the_key(project: ProjectDir) -> None:
    code = """
from latent.prefect import flow, task

@task("compute")
def compute(x):
    count("compute")
    return helper(x)

@flow("below")
def below():
    return compute(1)

def helper(x):
    return x + 1
"""
    project.flow("below", code)
    assert project.load("below")() == 2
    assert project.load("below")() == 2
    project.flow("below", code.replace("return x + 1", "return x + 10"))
    assert project.load("below")() == 11
    assert project.calls() == ["compute", "compute"]


def test_a_method_of_a_project_class_is_part_of_the_key(project: ProjectDir) -> None:
    project.write(
        "scoring.py",
        """
class Scorer:
    def __init__(self, scale):
        self.scale = scale

    def score(self, x):
        return x * self.scale
""",
    )
    code = """
from latent.prefect import flow, task
from scoring import Scorer

@task("grade")
def grade(x):
    count("grade")
    return Scorer(2).score(x)

@flow("graded")
def graded():
    return grade(3)
"""
    project.flow("graded", code)
    sys.path.insert(0, str(project.root))
    try:
        assert project.load("graded")() == 6
        assert project.load("graded")() == 6
        project.write(
            "scoring.py",
            """
class Scorer:
    def __init__(self, scale):
        self.scale = scale

    def score(self, x):
        return x * self.scale + 1
""",
        )
        sys.modules.pop("scoring", None)
        assert project.load("graded")() == 7
    finally:
        sys.path.remove(str(project.root))
        sys.modules.pop("scoring", None)
    assert project.calls() == ["grade", "grade"]


def test_cache_expiration_from_latent_toml_is_the_default(project: ProjectDir) -> None:
    code = """
from latent.prefect import flow, task

@task("tick")
def tick():
    count("tick")
    return 1

@flow("ticks")
def ticks():
    return tick()
"""
    project.flow("ticks", code)
    project.write("config/latent.toml", LATENT_TOML + "\n[cache]\nexpiration = 0.001\n")
    project.load("ticks")()
    project.load("ticks")()
    assert project.calls() == ["tick", "tick"]  # every record expired before the next run
    project.write("config/latent.toml", LATENT_TOML + '\n[cache]\nexpiration = "1d"\n')
    project.load("ticks")()
    project.load("ticks")()
    assert project.calls() == ["tick"] * 3


MODEL_FLOW = """
from latent.prefect import flow, params, task

@task("fit", output="model")
def fit():
    count("fit")
    return {"C": params.logreg["C"]}

@flow("train")
def train():
    return fit()
"""

SCORE_FLOW = """
from latent.prefect import flow, task

@flow("evaluate", input=["train.model"])
def evaluate(model):
    return model
"""


def test_a_hit_leaves_its_own_value_in_the_output_file(project: ProjectDir) -> None:
    """`--param C=0.25` then the default again: the cached C=1.0 model is what the file holds."""
    project.flow(
        "train",
        MODEL_FLOW,
        parameters={"logreg": {"C": 1.0}},
        catalog={"model": {"type": "pickle", "filepath": "data/train/model.pkl"}},
    )
    project.flow("evaluate", SCORE_FLOW)
    model_file = project.root / "data/train/model.pkl"
    project.latent("run", "train")
    project.latent("run", "train", "--param", "logreg.C=0.25")
    assert pickle.loads(model_file.read_bytes()) == {"C": 0.25}
    back = project.latent("run", "train")
    assert "Cached" in back.stdout
    assert project.calls() == ["fit", "fit"]  # the flip back ran nothing
    assert pickle.loads(model_file.read_bytes()) == {"C": 1.0}
    # a downstream flow in another process reads the model the summary says was used
    project.latent("run", "evaluate")
    assert pickle.loads(model_file.read_bytes()) == {"C": 1.0}


def test_a_cold_map_leaves_no_per_task_run_state_behind(project: ProjectDir) -> None:
    code = """
from latent.prefect import flow, task

@task("square")
def square(x):
    return x * x

@flow("squares")
def squares():
    return [f.result() for f in square.map(range(300))]
"""
    project.flow("squares", code)
    flow_obj = project.load("squares")

    def sizes() -> dict[str, int]:
        found = {}
        for name, module in list(sys.modules.items()):
            if not name.startswith("latent.prefect"):
                continue
            for attr, value in vars(module).items():
                if isinstance(value, (dict, set, list)):
                    found[f"{name}.{attr}"] = len(value)
        return found

    flow_obj()  # warm up imports and one-time state
    before = sizes()
    project.flow("squares", code.replace("range(300)", "range(300, 600)"))
    assert project.load("squares")() == [x * x for x in range(300, 600)]
    grown = {k: v - before.get(k, 0) for k, v in sizes().items() if v - before.get(k, 0) >= 100}
    assert grown == {}


def test_two_projects_in_one_process_keep_their_own_caches(
    tmp_path: Path, prefect_server: None
) -> None:
    code = """
from latent.prefect import checkpoint, flow, task

@checkpoint
def judge(x):
    return x + 1

@task("work")
def work(x):
    count("work")
    return judge(x)

@flow("main")
def main():
    return [f.result() for f in work.map(range(20))]
"""
    projects = []
    for name in ("a", "b"):
        root = tmp_path / name
        (root / "config").mkdir(parents=True)
        (root / "flows").mkdir()
        (root / "config/latent.toml").write_text(LATENT_TOML)
        (root / "config/global.yaml").write_text("")
        project = ProjectDir(root)
        project.flow("main", code)
        projects.append(project)

    from latent.config import Project
    from latent.prefect.cli import load_flow

    flows = [load_flow(Project(p.root), "main") for p in projects]
    results: dict[int, object] = {}

    def run(i: int) -> None:
        results[i] = flows[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {0: list(range(1, 21)), 1: list(range(1, 21))}
    for project in projects:
        assert len(project.calls()) == 20
        assert len(list((project.root / ".latent/results").iterdir())) >= 20
        assert (project.root / ".latent/cache").is_dir()  # its own checkpoints
    # and each hits its own cache afterwards
    for i, project in enumerate(projects):
        flows[i]()
        assert len(project.calls()) == 20


def test_cache_list_counts_each_result_once(project: ProjectDir) -> None:
    code = """
from latent.prefect import flow, params, task

@task("label")
def label(x):
    return params.prefix + str(x)

@flow("labels")
def labels():
    return [label(x) for x in range(3)]
"""
    project.flow("labels", code, parameters={"prefix": "n="})
    project.latent("run", "labels")
    listing = project.latent("cache", "list").stdout
    row = next(line for line in listing.splitlines() if "label" in line and "labels" in line)
    assert " 3 " in row


WHY_FLOW = """
import pandas as pd
from latent.prefect import flow, params, task

def helper(x):
    return x + 1

@task("summarise", input="raw")
def summarise(raw: pd.DataFrame, scale: int = 1) -> float:
    count("summarise")
    return helper(float(raw["value"].sum())) * scale * params.factor

@flow("why")
def why():
    return summarise(scale=2)
"""


def test_cache_why_names_each_changed_ingredient(project: ProjectDir) -> None:
    import pandas as pd

    pd.DataFrame({"value": [1, 2]}).to_csv(project.root / "data/raw.csv", index=False)
    project.write("config/catalog.yaml", "raw:\n  type: csv\n  filepath: data/raw.csv\n")
    project.flow("why", WHY_FLOW, parameters={"factor": 1})
    project.latent("run", "why")
    first = project.latent("cache", "why", "summarise").stdout
    assert "never stored before" in first

    def why_after(code: str, factor: int) -> str:
        project.flow("why", code, parameters={"factor": factor})
        project.latent("run", "why")
        return project.latent("cache", "why", "summarise").stdout

    assert "params: key 'factor' changed" in why_after(WHY_FLOW, 2)
    assert "code: function 'helper' changed" in why_after(WHY_FLOW.replace("x + 1", "x + 2"), 2)
    assert "args: argument 'scale' changed" in why_after(
        WHY_FLOW.replace("x + 1", "x + 2").replace("scale=2", "scale=3"), 2
    )
    pd.DataFrame({"value": [1, 5]}).to_csv(project.root / "data/raw.csv", index=False)
    changed_data = why_after(WHY_FLOW.replace("x + 1", "x + 2").replace("scale=2", "scale=3"), 2)
    assert "data: dataset 'raw' changed" in changed_data
    assert len(project.calls()) == 5
    missing = project.latent("cache", "why", "nope", check=False)
    assert missing.returncode == 1 and "No miss of task 'nope'" in missing.stdout


def test_an_unmapped_argument_is_hashed_once_per_map(project: ProjectDir) -> None:
    code = """
from latent.cache import register_hasher
from latent.prefect import flow, task, unmapped

class Model:
    pass

def hash_model(model):
    count("hash")
    return "model-v1"

register_hasher(Model, hash_model)

@task("predict")
def predict(model, x):
    return x * 2

@flow("predictions")
def predictions():
    model = Model()
    return [f.result() for f in predict.map(unmapped(model), range(200))]
"""
    project.flow("predictions", code)
    assert project.load("predictions")() == [x * 2 for x in range(200)]
    assert project.calls() == ["hash"]


def test_a_project_reads_its_own_store_while_another_store_takes_the_traces(
    tmp_path: Path,
) -> None:
    """Pointing MLflow's trace exporter at a store exports ``MLFLOW_TRACKING_URI`` for a moment
    (`mlflow.set_tracking_uri`); a second project's flow starting then read it as the user's
    choice and recorded its run into the first project's store (a CI failure of the test
    below). The switches and the reads here run at once, for real, on two threads."""
    import time

    from latent.config import Project
    from latent.observe._mlflow import Backend
    from latent.prefect._runtime import tracking_uri

    projects = []
    for name in ("a", "b"):
        (tmp_path / name / "config").mkdir(parents=True)
        (tmp_path / name / "config/latent.toml").write_text('environment = "dev"\n')
        (tmp_path / name / "config/global.yaml").write_text("")
        projects.append(Project(tmp_path / name))
    reader = projects[1]
    own = reader.tracking_uri
    stores = [Backend.for_uri(p.tracking_uri, 30.0) for p in projects]
    deadline = time.monotonic() + 1.5
    switches, seen = [0], []

    def switch() -> None:
        while time.monotonic() < deadline:
            for store in stores:
                store.use_for_traces()
                switches[0] += 1

    def read() -> None:
        while time.monotonic() < deadline:
            seen.append(tracking_uri(reader))

    threads = [threading.Thread(target=switch), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert switches[0] > 10 and len(seen) > 10
    assert set(seen) == {own}


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_two_projects_traced_at_once_never_record_into_each_others_store(
    tmp_path: Path, prefect_server: None, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow sends a process's traces to one store: with MLflow in the flows' process, a second
    project's flow running at the same time records its run and metrics in its own store and no
    spans, never the first's. With writer processes (one per store) both are traced, each in
    its own store."""
    import builtins

    monkeypatch.setenv("LATENT_MLFLOW_WRITER", writer)

    code = """
import builtins
from latent.observe import current_run
from latent.prefect import flow, task

@task("work", cache=False)
def work(x):
    return x + 1

@flow("main")
def main():
    out = [f.result() for f in work.map(range(20))]
    current_run().wait_ready()  # both runs open while both bodies run: they overlap
    builtins.LATENT_TEST_BARRIER.wait(timeout=120)
    return out
"""
    projects = []
    for name in ("a", "b"):
        root = tmp_path / name
        (root / "config").mkdir(parents=True)
        (root / "flows").mkdir()
        (root / "config/latent.toml").write_text('environment = "dev"\n')  # MLflow on
        (root / "config/global.yaml").write_text("")
        project = ProjectDir(root)
        project.flow("main", code)
        projects.append(project)

    from mlflow import MlflowClient

    from latent.config import Project
    from latent.observe import tracking_warnings
    from latent.observe._tracking import wait_for_tracking
    from latent.prefect.cli import load_flow

    flows = [load_flow(Project(p.root), "main") for p in projects]
    results: dict[int, object] = {}
    builtins.LATENT_TEST_BARRIER = threading.Barrier(2)  # type: ignore[attr-defined]
    try:
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, flows[i]()))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        del builtins.LATENT_TEST_BARRIER  # type: ignore[attr-defined]
    assert results == {0: list(range(1, 21)), 1: list(range(1, 21))}
    wait_for_tracking()

    traces_per_store = []
    for project in projects:
        client = MlflowClient(tracking_uri=Project(project.root).tracking_uri)
        experiment = client.get_experiment_by_name("main")
        assert experiment is not None
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED"  # each project's run in its own store
        traces = client.search_traces(locations=[experiment.experiment_id])
        for trace in traces:  # a trace here is this store's run's, never the other project's
            assert trace.info.request_metadata.get("mlflow.sourceRun") == run.info.run_id
            assert sum(s.name.startswith("work[") for s in trace.data.spans) == 20
        traces_per_store.append(len(traces))
    if writer == "process":
        assert traces_per_store == [1, 1]
        return
    assert sorted(traces_per_store) == [0, 1]
    assert any(
        "its spans are not recorded while a flow of another" in w for w in tracking_warnings()
    )
