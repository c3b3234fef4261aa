"""latent.config stays light: no pandas/prefect/mlflow at import, local paths need no fsspec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import latent.config

SRC = str(Path(latent.config.__file__).resolve().parents[2])


def run_python(code: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_does_not_load_heavy_dependencies(tmp_path: Path) -> None:
    out = run_python(
        """
        import json, sys
        import latent.config
        heavy = ["pandas", "pyarrow", "numpy", "prefect", "mlflow", "fsspec"]
        print(json.dumps([m for m in heavy if m in sys.modules]))
        """,
        tmp_path,
    )
    assert json.loads(out) == []


def test_local_datasets_work_without_fsspec_or_pandas(tmp_path: Path) -> None:
    out = run_python(
        """
        import sys
        sys.modules["fsspec"] = None  # importing it now raises ImportError
        sys.modules["pandas"] = None
        from pathlib import Path
        from latent.config import DatasetError, Project, RunConfig, bind_run, params
        root = Path.cwd()
        (root / "config").mkdir()
        (root / "config" / "latent.toml").write_text("")
        (root / "config" / "catalog.yaml").write_text(
            "d: {type: json, filepath: data/d.json}\\n"
            "t: {type: csv, filepath: data/t.csv}\\n"
            "r: {type: json, filepath: 's3://bucket/r.json'}\\n"
        )
        run = RunConfig.load("adhoc", project=Project.discover())
        with bind_run(run):
            run.catalog.get("d").save({"ok": True})
            print(run.catalog.get("d").load())
            run.catalog.default_for("out", [1, 2]).save([1, 2])
            print(run.catalog.get("out").load())
        (root / "data" / "t.csv").write_text("a\\n1\\n")
        for name in ("t", "r"):
            try:
                run.catalog.get(name).load()
            except DatasetError as exc:
                print(name, "pip install" in str(exc))
        """,
        tmp_path,
    )
    assert out.splitlines() == ["{'ok': True}", "[1, 2]", "t True", "r True"]


def test_pandas_datasets_without_pandas_say_how_to_install(tmp_path: Path) -> None:
    out = run_python(
        """
        import sys
        sys.modules["pandas"] = None  # as if latent-prefect was installed without [pandas]
        sys.modules["pyarrow"] = None
        from pathlib import Path
        from latent.config import DatasetError, Project, RunConfig
        root = Path.cwd()
        (root / "config").mkdir()
        (root / "config" / "latent.toml").write_text("")
        (root / "config" / "catalog.yaml").write_text(
            "scores: {type: parquet, filepath: data/scores.parquet}\\n"
        )
        (root / "data").mkdir()
        (root / "data" / "scores.parquet").write_bytes(b"PAR1")
        dataset = RunConfig.load("adhoc", project=Project.discover()).catalog.get("scores")
        for action in (dataset.load, lambda: dataset.save([{"score": 1.0}])):
            try:
                action()
            except DatasetError as exc:
                print(exc)
        """,
        tmp_path,
    )
    lines = out.splitlines()
    assert len(lines) == 2, out
    for line in lines:
        assert "Dataset 'scores' (pandas.ParquetDataset) needs pandas" in line
        assert "pip install 'latent-prefect[pandas]'" in line and "catalog.yaml" in line
