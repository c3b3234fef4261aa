from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from latent.observe import redact, summarize


def test_dataframe_becomes_shape_columns_and_head() -> None:
    frame = pd.DataFrame({"id": range(1000), "text": ["x" * 10] * 1000})

    summary = summarize(frame)

    assert summary["type"] == "DataFrame"
    assert summary["shape"] == [1000, 2]
    assert summary["columns"] == ["id", "text"]
    assert summary["head"][:2] == [{"id": 0, "text": "xxxxxxxxxx"}, {"id": 1, "text": "xxxxxxxxxx"}]
    assert len(summary["head"]) == 5
    json.dumps(summary)  # JSON-able


def test_long_strings_are_truncated_with_the_count_cut() -> None:
    summary = summarize("a" * 1200, max_len=500)

    assert summary.startswith("a" * 500)
    assert summary.endswith("(+700 chars)")


def test_secret_keys_are_redacted_at_any_depth() -> None:
    value = {
        "api_key": "sk-123",
        "nested": {"Password": "hunter2", "rows": [{"access_token": "t"}]},
        "credentials": {"user": "u"},
        "max_tokens": 256,
        "batch_size": 32,
    }

    summary = summarize(value)

    assert summary == {
        "api_key": "***",
        "nested": {"Password": "***", "rows": [{"access_token": "***"}]},
        "credentials": "***",
        "max_tokens": 256,
        "batch_size": 32,
    }


def test_long_sequences_and_mappings_are_cut() -> None:
    summary = summarize({"items": list(range(100)), **{f"k{i}": i for i in range(30)}})

    assert summary["items"][:3] == [0, 1, 2]
    assert summary["items"][-1] == "… +80 more items"
    assert len(summary) == 21  # 20 keys + the marker
    assert summary["…"] == "+11 more keys"


def test_objects_become_bounded_reprs_and_dataclasses_fields() -> None:
    @dataclass
    class Row:
        id: int
        secret: str

    class Opaque:
        def __repr__(self) -> str:
            return "Opaque(" + "z" * 1000 + ")"

    assert summarize(Row(1, "s")) == {"type": "Row", "id": 1, "secret": "***"}
    assert len(summarize(Opaque(), max_len=50)) < 80
    assert summarize(b"\x00" * 10) == "<bytes len=10>"


def test_redact_keeps_values_whole_but_hides_secrets() -> None:
    params = {"model": "gpt-4", "llm": {"api_key": "sk", "prompt": "p" * 9000}, "tags": ["a"]}

    assert redact(params) == {
        "model": "gpt-4",
        "llm": {"api_key": "***", "prompt": "p" * 9000},
        "tags": ["a"],
    }
