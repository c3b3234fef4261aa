"""The example on Prefect's own `ProcessPoolTaskRunner`: scale-out with no extra package.

Same promise as for Dask and Ray: unchanged flow code, equal results, worker task runs in the
summary, their spans in the flow's trace and their metrics on the flow's run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import assert_worker_spans_in_the_flows_trace, load, run_flow, tracked_runs

pytestmark = pytest.mark.slow


def test_process_pool_runs_the_example_like_the_default_runner(
    example_copy: Any, tracked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.task_runners import ProcessPoolTaskRunner

    default_root, pool_root = example_copy("default"), example_copy("pool")
    monkeypatch.chdir(default_root)
    expected = load(default_root, "answer")()

    monkeypatch.chdir(pool_root)
    flow = load(pool_root, "answer").with_options(task_runner=ProcessPoolTaskRunner(max_workers=2))
    answers, table = run_flow(flow)

    pd.testing.assert_frame_equal(
        answers.sort_values("id", ignore_index=True), expected.sort_values("id", ignore_index=True)
    )
    assert table[("answer_question", "Completed")] == 8
    (run,) = tracked_runs(pool_root, "answer")
    assert_worker_spans_in_the_flows_trace(run, "answer", "answer_question", 8)
    assert run.metrics["task.answer_question.cache_misses"] == 8
