"""Cache keys: MD5 hex over framed ingredients; code is part of both keys."""

from __future__ import annotations

import pytest

from latent.cache import UnhashableError, file_cache_key, row_cache_key


def test_file_key_changes_with_inputs_signature_and_refs() -> None:
    base = file_cache_key(["h1", "h2"], "sig")
    assert len(base) == 32 and base == file_cache_key(["h1", "h2"], "sig")
    others = {
        file_cache_key(["h1", "h3"], "sig"),
        file_cache_key(["h2", "h1"], "sig"),
        file_cache_key(["h1", "h2"], "sig2"),
        file_cache_key(["h1", "h2"], "sig", ["other_flow.data"]),
        file_cache_key(["h1h2"], "sig"),
        file_cache_key(["h1"], "h2sig"),
    }
    assert base not in others and len(others) == 6


def test_row_key_changes_with_name_signature_and_each_argument() -> None:
    base = row_cache_key("process_row", [{"a": 1}], {"k": 2}, "sig")
    assert base == row_cache_key("process_row", [{"a": 1}], {"k": 2}, "sig")
    others = {
        row_cache_key("other_task", [{"a": 1}], {"k": 2}, "sig"),
        row_cache_key("process_row", [{"a": 1}], {"k": 2}, "sig2"),
        row_cache_key("process_row", [{"a": 2}], {"k": 2}, "sig"),
        row_cache_key("process_row", [{"a": 1}], {"k": 3}, "sig"),
        row_cache_key("process_row", [{"a": 1}, 2], {}, "sig"),
        row_cache_key("process_row", [{"a": 1}], {"j": 2}, "sig"),
    }
    assert base not in others and len(others) == 6


def test_kwargs_order_does_not_matter() -> None:
    assert row_cache_key("t", [], {"a": 1, "b": 2}, "s") == row_cache_key(
        "t", [], {"b": 2, "a": 1}, "s"
    )


class Client:
    pass


def test_unhashable_argument_names_its_position() -> None:
    with pytest.raises(UnhashableError) as info:
        row_cache_key("t", [1, Client()], {}, "s")
    assert info.value.path == "args[1]"
    with pytest.raises(UnhashableError) as info:
        row_cache_key("t", [], {"config": {"client": Client()}}, "s")
    assert info.value.path == "kwargs['config']['client']"
    assert "kwargs['config']['client']" in str(info.value)


def test_hash_once_hashes_a_shared_argument_once() -> None:
    from latent.cache import hash_once, register_hasher

    calls = []

    class Model:
        pass

    register_hasher(Model, lambda m: calls.append(1) or "model-v1")
    model = Model()
    with hash_once():
        keys = {row_cache_key("t", (model, i), {}, "sig") for i in range(50)}
    assert len(keys) == 50 and len(calls) == 1
    row_cache_key("t", (model, 0), {}, "sig")  # outside the block: hashed again
    assert len(calls) == 2
