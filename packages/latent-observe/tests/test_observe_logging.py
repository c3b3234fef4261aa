from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

import pytest

from latent.observe import (
    bind_names,
    current_names,
    get_flow_logger,
    logger,
    set_logger_provider,
)


def test_outside_any_flow_records_go_to_the_plain_latent_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="latent"):
        logger.info("hello %s", "world")

    (record,) = caplog.records
    assert record.name == "latent"
    assert record.getMessage() == "hello world"
    assert record.filename == "test_observe_logging.py"  # the caller, not the proxy


def test_inside_a_task_records_carry_flow_and_task_names(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="latent"), bind_names(flow="etl"):
        logger.debug("flow level")
        with bind_names(task="clean"):
            assert current_names() == ("etl", "clean")
            logger.warning("task level")
            get_flow_logger().error("direct")

    assert [(r.name, r.latent_flow, r.latent_task) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("latent.flow.etl", "etl", None),
        ("latent.flow.etl.clean", "etl", "clean"),
        ("latent.flow.etl.clean", "etl", "clean"),
    ]
    assert {r.funcName for r in caplog.records} == {
        "test_inside_a_task_records_carry_flow_and_task_names"
    }
    assert current_names() == (None, None)


def test_exception_keeps_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="latent"), bind_names(flow="f", task="t"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("Operation failed")

    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "RuntimeError: boom" in caplog.text


def test_provider_routes_records_to_the_run_logger_with_names_in_extra(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # not under "prefect": once Prefect configures logging, its loggers stop propagating
    base = logging.getLogger("latent_tests.run_logger")
    run_logger = logging.LoggerAdapter(base, {"flow_run_id": "r1"})
    set_logger_provider(lambda: run_logger)

    with caplog.at_level(logging.INFO), bind_names(flow="etl", task="load"):
        logger.info("into prefect", extra={"mine": 1})

    (record,) = caplog.records
    assert record.name == "latent_tests.run_logger"
    assert (record.latent_flow, record.latent_task, record.mine) == ("etl", "load", 1)  # type: ignore[attr-defined]


def test_provider_returning_none_or_raising_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> logging.Logger:
        raise RuntimeError("no prefect context")

    with caplog.at_level(logging.INFO, logger="latent"), bind_names(flow="etl"):
        set_logger_provider(lambda: None)
        logger.info("one")
        set_logger_provider(broken)
        logger.info("two")

    assert [r.name for r in caplog.records] == ["latent.flow.etl", "latent.flow.etl"]


def test_names_follow_copied_contexts_into_threads() -> None:
    with bind_names(flow="parallel_flow", task="process_item"):
        context = copy_context()
    with ThreadPoolExecutor(2) as pool:
        seen = pool.submit(context.run, current_names).result()
        plain = pool.submit(current_names).result()

    assert seen == ("parallel_flow", "process_item")
    assert plain == (None, None)


def test_subflow_binding_does_not_inherit_the_task() -> None:
    with bind_names(flow="main", task="t"), bind_names(flow="sub"):
        assert current_names() == ("sub", None)
