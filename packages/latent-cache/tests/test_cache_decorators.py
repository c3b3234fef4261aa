"""@cached and @checkpoint as a user sees them: hits, misses, code edits, environments."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from latent.cache import (
    CacheEntryWarning,
    CacheStore,
    UnhashableError,
    cached,
    checkpoint,
    checkpoints_enabled,
    clear_checkpoints,
    configure_checkpoints,
)

CALLS: list[object] = []


def test_cached_runs_once_per_argument_set_and_persists(tmp_path: Path) -> None:
    @cached(store=tmp_path)
    def double(x: int) -> int:
        CALLS.append(x)
        return x * 2

    CALLS.clear()
    assert [double(1), double(1), double(2), double(x=2)] == [2, 2, 4, 4]
    assert CALLS == [1, 2, 2]
    assert CacheStore(tmp_path).get(double.cache_key(1)) == 2
    assert double.cache_clear() == 3
    assert double(1) == 2 and CALLS == [1, 2, 2, 1]


def test_bare_cached_uses_dot_latent_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)

    @cached
    def ident(x: str) -> str:
        return x

    assert ident("a") == "a"
    entries = CacheStore(tmp_path / ".latent" / "cache").entries()
    assert [e.function for e in entries] == [f"{__name__}.{ident.__qualname__}"]
    assert entries[0].ingredients["kind"] == "cached"


def test_exceptions_are_never_cached(tmp_path: Path) -> None:
    attempts: list[int] = []

    @cached(store=tmp_path)
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise ConnectionError("rate limited")
        return x

    with pytest.raises(ConnectionError):
        flaky(5)
    assert flaky(5) == 5 and flaky(5) == 5
    assert attempts == [5, 5]


def test_unpicklable_result_is_returned_with_a_warning(tmp_path: Path) -> None:
    @cached(store=tmp_path)
    def make(x: int) -> object:
        return lambda: x

    with pytest.warns(CacheEntryWarning, match="cannot be pickled"):
        assert make(1)() == 1


def test_unhashable_argument_raises_naming_it(tmp_path: Path) -> None:
    @cached(store=tmp_path)
    def use(client: object) -> None:
        return None

    with pytest.raises(UnhashableError, match=r"args\[0\]"):
        use(object())


@dataclasses.dataclass(frozen=True)
class Scorer:
    weight: float

    @cached(expire=60)
    def score(self, x: float) -> float:
        CALLS.append(("score", self.weight, x))
        return self.weight * x


def test_cached_methods_hash_self(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    CALLS.clear()
    a, b = Scorer(2.0), Scorer(3.0)
    assert [a.score(1.0), a.score(1.0), b.score(1.0)] == [2.0, 2.0, 3.0]
    assert len(CALLS) == 2
    assert a.score.cache_key(1.0) == Scorer.score.cache_key(a, 1.0)
    assert a.score.cache_key(1.0) != b.score.cache_key(1.0)


def test_checkpoint_is_a_no_op_in_production(tmp_path: Path) -> None:
    runs: list[int] = []

    @checkpoint(directory=tmp_path / "ck")
    def step(x: int) -> int:
        runs.append(x)
        return x

    assert not checkpoints_enabled()
    step(1)
    step(1)
    assert runs == [1, 1]
    assert not (tmp_path / "ck").exists()


def test_checkpoint_in_dev_stores_and_reuses(tmp_path: Path, dev) -> None:
    runs: list[int] = []

    @checkpoint(directory=tmp_path / "ck")
    def step(x: int) -> int:
        runs.append(x)
        return x + 1

    assert [step(1), step(1), step(2)] == [2, 2, 3]
    assert runs == [1, 2]


def test_two_functions_with_same_arguments_do_not_share(tmp_path: Path, dev) -> None:
    @checkpoint(directory=tmp_path)
    def extract(item: dict) -> str:
        return "extract"

    @checkpoint(directory=tmp_path)
    def transform(item: dict) -> str:
        return "transform"

    item = {"id": 1}
    assert [extract(item), transform(item), extract(item), transform(item)] == [
        "extract",
        "transform",
        "extract",
        "transform",
    ]


@pytest.mark.parametrize("env", ["dev", "development", "DEV"])
def test_environment_from_latent_toml_found_upwards(tmp_path: Path, monkeypatch, env) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "latent.toml").write_text(f'environment = "{env}"\n')
    (tmp_path / "flows" / "f").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "flows" / "f")
    assert checkpoints_enabled()

    @checkpoint
    def step(x: int) -> int:
        return x

    step(1)
    entries = CacheStore(tmp_path / ".latent" / "cache").entries()
    assert len(entries) == 1 and entries[0].ingredients["kind"] == "checkpoint"


def test_variable_wins_over_file_and_configure_wins_over_both(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "latent.toml").write_text('environment = "dev"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LATENT_ENVIRONMENT", "production")
    assert not checkpoints_enabled()
    configure_checkpoints(environment="development", directory=tmp_path / "elsewhere")
    assert checkpoints_enabled()

    @checkpoint
    def step(x: int) -> int:
        return x

    step(3)
    assert len(CacheStore(tmp_path / "elsewhere").entries()) == 1


def test_clear_checkpoints_all_or_one_function_keeps_cached_entries(tmp_path: Path, dev) -> None:
    @checkpoint(directory=tmp_path)
    def first(x: int) -> int:
        return x

    @checkpoint(directory=tmp_path)
    def second(x: int) -> int:
        return x

    @cached(store=tmp_path)
    def memo(x: int) -> int:
        return x

    for i in range(3):
        first(i), second(i), memo(i)
    assert clear_checkpoints(tmp_path, function="first") == 3
    assert clear_checkpoints(tmp_path) == 3
    assert [e.ingredients["kind"] for e in CacheStore(tmp_path).entries()] == ["cached"] * 3


def test_editing_a_checkpointed_function_recomputes(tmp_path: Path, dev, load_module) -> None:
    source = f"""
        from latent.cache import checkpoint

        @checkpoint(directory={str(tmp_path)!r})
        def step(x):
            return helper(x)

        def helper(x):
            return x + 1
    """
    assert load_module(source).step(1) == 2
    assert load_module(source.replace("x + 1", "x + 100")).step(1) == 101
    assert load_module(source.replace("return helper(x)", "return helper(x)  # same")).step(1) == 2


def test_async_checkpoint_is_a_coroutine_function_and_caches(tmp_path, dev) -> None:
    import asyncio
    import inspect

    from latent.cache import checkpoint

    calls = []

    @checkpoint(directory=tmp_path)
    async def ask(prompt: str) -> str:
        calls.append(prompt)
        await asyncio.sleep(0)
        return prompt.upper()

    assert inspect.iscoroutinefunction(ask)

    async def main() -> list[str]:
        first = await asyncio.gather(*(ask(p) for p in ["a", "b", "a"]))
        second = await asyncio.gather(*(ask(p) for p in ["a", "b", "c"]))
        return first + second

    assert asyncio.run(main()) == ["A", "B", "A", "A", "B", "C"]
    assert sorted(calls) in (["a", "a", "b", "c"], ["a", "b", "c"])  # "a" twice only when raced
    assert ask.cache_key("a") != ask.cache_key("b")


def test_checkpoints_for_scopes_directory_and_environment_per_context(tmp_path) -> None:
    import threading

    from latent.cache import checkpoint, checkpoints_enabled, checkpoints_for

    @checkpoint
    def double(x: int) -> int:
        return x * 2

    seen: dict[str, bool] = {}

    def run(name: str, environment: str) -> None:
        with checkpoints_for(environment=environment, directory=tmp_path / name):
            seen[name] = checkpoints_enabled()
            double(21)

    threads = [
        threading.Thread(target=run, args=("a", "dev")),
        threading.Thread(target=run, args=("b", "production")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": True, "b": False}
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not checkpoints_enabled()  # outside any scope: production (the fixture's default)
