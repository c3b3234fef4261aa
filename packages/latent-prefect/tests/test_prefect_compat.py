"""Every private or unstable Prefect API Latent uses, pinned against the locked Prefect.

`latent.prefect._prefect_compat` is the one module that touches them; if a Prefect release moves
one, this file fails with the name of what moved, before users see anything else break.
"""

from __future__ import annotations

import importlib

import pytest

from latent.prefect import _prefect_compat
from latent.prefect._futures import RowFuture

USED = [
    ("prefect.utilities.callables", "expand_mapping_parameters"),
    ("prefect.utilities.callables", "get_call_parameters"),
    ("prefect.utilities.engine", "collect_task_run_inputs_sync"),
    ("prefect.utilities.engine", "resolve_inputs_sync"),
]


@pytest.mark.parametrize(("module", "name"), USED)
def test_the_private_symbols_latent_uses_exist(module: str, name: str) -> None:
    assert callable(getattr(importlib.import_module(module), name, None)), f"{module}.{name}"


def test_prefects_wait_and_as_completed_see_a_row_future_done() -> None:
    from prefect.futures import as_completed, wait

    done, pending = RowFuture[int]("t", 0), RowFuture[int]("t", 1)
    done.set_result(7)
    finished = wait([done, pending], timeout=0.1)
    assert finished.done == {done} and finished.not_done == {pending}
    pending.set_cached(8, "key")
    assert {f.result() for f in as_completed([done, pending], timeout=5)} == {7, 8}
    assert pending.state.name == "Cached" and done.state.is_completed()


def test_map_expansion_keeps_prefects_semantics() -> None:
    from prefect import unmapped

    def fn(x: int, model: str, *, scale: int = 1) -> int:
        return x

    calls, dependencies = _prefect_compat.expand_map(
        fn, _prefect_compat.call_parameters(fn, ([1, 2, 3], unmapped("m")), {"scale": 2})
    )
    assert calls == [{"x": i, "model": "m", "scale": 2} for i in (1, 2, 3)]
    assert set(dependencies) == {"x", "model", "scale"}


def test_with_options_keeps_the_latent_flow_class(tmp_path, monkeypatch) -> None:
    from latent.prefect import LatentFlow, flow

    @flow("copied")
    def copied() -> int:
        return 1

    assert isinstance(copied.with_options(name="other"), LatentFlow)
    assert copied.with_options(name="other").spec is copied.spec
