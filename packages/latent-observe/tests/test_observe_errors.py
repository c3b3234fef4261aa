from __future__ import annotations

import pickle
import threading

import pytest

from latent.observe import TaskExecutionError


def _raise_wrapped() -> None:
    try:
        raise ValueError("Processing failed!")
    except ValueError as exc:
        raise TaskExecutionError(
            "process",
            exc,
            inputs={"data": list(range(100)), "api_key": "sk"},
            context={"input": "data", "row_index": None},
            attributes={"span.type": "CHAIN"},
        ) from exc


def test_str_is_exactly_the_spec_shape() -> None:
    with pytest.raises(TaskExecutionError) as info:
        _raise_wrapped()

    assert str(info.value) == (
        "Task 'process' failed.\n"
        "Original error: ValueError: Processing failed!\n"
        "Context: {'input': 'data', 'row_index': None}"
    )
    assert info.value.__cause__ is info.value.original


def test_carries_summarised_inputs_and_attributes() -> None:
    with pytest.raises(TaskExecutionError) as info:
        _raise_wrapped()
    error = info.value

    assert error.task_name == "process"
    assert isinstance(error.original, ValueError)
    assert error.inputs["api_key"] == "***"
    assert error.inputs["data"][-1] == "… +80 more items"
    assert error.attributes == {"span.type": "CHAIN"}


def test_pickle_round_trip_keeps_everything() -> None:
    with pytest.raises(TaskExecutionError) as info:
        _raise_wrapped()

    copy = pickle.loads(pickle.dumps(info.value))

    assert isinstance(copy, TaskExecutionError)
    assert str(copy) == str(info.value)
    assert copy.task_name == "process"
    assert type(copy.original) is ValueError
    assert copy.inputs == info.value.inputs
    assert copy.context == {"input": "data", "row_index": None}
    assert copy.attributes == {"span.type": "CHAIN"}


def test_unpicklable_original_still_pickles_with_its_type_and_message() -> None:
    class LockError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.lock = threading.Lock()

    error = TaskExecutionError("fetch", LockError("stuck"))

    copy = pickle.loads(pickle.dumps(error))

    assert str(copy) == "Task 'fetch' failed.\nOriginal error: LockError: stuck\nContext: {}"
