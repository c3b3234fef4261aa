"""The task cache: one protocol — look up, store, explain — for every way a task is called.

The direct call, `.submit`, the row engine under `.map` and a Prefect task run all ask this
module and nothing else. A key is latent-cache's: file-based when the task loads a catalog
`input` itself (content fingerprints of the dataset + code signature + cross-flow reference),
row-level otherwise (task name + code signature + stable hash of each argument). Two things
are added here because only a run knows them:

- the values of the `params` keys the task reads. Which keys a task reads is recorded per task
  and code version beside the results (so every machine sharing the storage agrees), as the
  union of what its calls read: a stored result is found only when every parameter any call
  of the task read has the value it had, so a hit is never stale;
- the output dataset. A record remembers the fingerprint of the `output` it wrote; a hit whose
  output file no longer holds that value (a run with other parameters overwrote it, or it was
  deleted or damaged) rewrites the file from the cached value, so downstream flows never read
  a value other than the one the summary says was used.

A miss is explained once per task and run (which function, dataset, parameter or argument
changed since the last stored result), logged, and kept for `latent cache why <task>`.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import cloudpickle

from latent.cache import (
    UnhashableError,
    file_cache_key,
    fingerprint_paths,
    signature_parts,
    stable_hash,
)
from latent.cache.keys import row_key_and_ingredients
from latent.config import DatasetError, DatasetNotFoundError, Project, current_run, params
from latent.observe import logger
from latent.prefect._claims import Claims
from latent.prefect._results import MISS, Header, ResultStore

if TYPE_CHECKING:
    from latent.prefect._task import TaskSpec

__all__ = ["MISS", "Probe", "TaskCache", "cache_for", "cache_session", "explanation_of"]


@dataclass(frozen=True)
class Probe:
    """One call's look-up: its key, what the key was made of, and the value when it hit."""

    key: str | None  # None: this call runs uncached (an argument cannot be hashed)
    base: str = ""
    signature: str = ""  # the code signature as the caller's process saw it
    reads: tuple[str, ...] = ()
    ingredients: Mapping[str, str] = field(default_factory=dict)
    value: Any = MISS
    header: Header | None = None

    @property
    def hit(self) -> bool:
        return self.value is not MISS


UNCACHED = Probe(key=None)


def _missed(probe: Probe) -> Probe:
    """The probe of a call whose stored value may not be served: a miss under the same key."""
    return replace(probe, value=MISS, header=None)


class _Session:
    """What one top-level flow run remembers about the cache (never shared between runs)."""

    def __init__(self) -> None:
        self.reads: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self.explained: set[tuple[str, str]] = set()
        self.lasts: set[tuple[str, str]] = set()
        self.warned: set[str] = set()
        self.lock = threading.Lock()


_session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar(
    "latent_cache_session", default=None
)


@contextmanager
def cache_session() -> Iterator[None]:
    """Scope the cache's per-run memory (params read, misses explained) to this block."""
    if _session.get() is not None:  # a subflow shares its parent's run
        yield
        return
    token = _session.set(_Session())
    try:
        yield
    finally:
        _session.reset(token)


class TaskCache:
    """The cache of one project's tasks (see the module docstring)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.storage = project.results_storage  # read once: a map asks for it per row
        self.store = ResultStore(self.storage)
        local = self.store.local_dir
        self.claims = Claims(local) if local is not None else None

    # -- one computer per key ------------------------------------------------------------------

    def claim(
        self, spec: TaskSpec, probe: Probe, parameters: Mapping[str, Any], catalog: Any
    ) -> Probe | None:
        """Hold a missed call's key for this caller to compute (None), or, when another run
        (or thread) computed it meanwhile, that hit. Waits while a live process holds it;
        `release` after storing or failing. See `_claims`."""
        if self.claims is None or probe.key is None:
            return None
        while not self.claims.hold(probe.key):
            self.claims.wait(probe.key)
            found = self.probe(spec, parameters, catalog)
            if found.hit:
                return found
        return self._stored_meanwhile(spec, probe, parameters, catalog)

    async def aclaim(
        self, spec: TaskSpec, probe: Probe, parameters: Mapping[str, Any], catalog: Any
    ) -> Probe | None:
        """`claim` for the event loop: waiting never blocks it."""
        if self.claims is None or probe.key is None:
            return None
        while not self.claims.hold(probe.key):
            await self.claims.await_release(probe.key)
            found = self.probe(spec, parameters, catalog)
            if found.hit:
                return found
        return self._stored_meanwhile(spec, probe, parameters, catalog)

    def _stored_meanwhile(
        self, spec: TaskSpec, probe: Probe, parameters: Mapping[str, Any], catalog: Any
    ) -> Probe | None:
        """Between the caller's look-up and its claim, another run may have stored the key."""
        assert probe.key is not None and self.claims is not None
        if not self.store.has(probe.key):
            return None
        found = self.probe(spec, parameters, catalog)
        if not found.hit:
            return None
        self.claims.release(probe.key)
        return found

    def release(self, probe: Probe) -> None:
        """Give up the claim `claim` took (after the result is stored, or the call failed)."""
        if self.claims is not None and probe.key is not None:
            self.claims.release(probe.key)

    # -- look up -------------------------------------------------------------------------------

    def probe(
        self, spec: TaskSpec, parameters: Mapping[str, Any], catalog: Any, *, look: bool = True
    ) -> Probe:
        """The key of a call and, when `look`, the stored value (`Probe.hit`) — only when it
        may be served: its output dataset then holds it (see `_output_state`)."""
        if not look:
            return self._key(spec, parameters, catalog)
        probe = self._stored(spec, parameters, catalog)
        if not probe.hit:
            return probe
        output = self._output_state(spec, probe, catalog)
        if output == "differs":
            self._rewrite_output(spec, probe, catalog)
        return probe if output != "missing" else _missed(probe)

    def peek(self, spec: TaskSpec, parameters: Mapping[str, Any], catalog: Any) -> Probe:
        """`probe` that writes nothing (a dry run): a hit whose output file holds another value
        is still a hit (a run would rewrite the file from it); a missing output is a miss."""
        probe = self._stored(spec, parameters, catalog)
        if probe.hit and self._output_state(spec, probe, catalog) == "missing":
            return _missed(probe)
        return probe

    def _key(self, spec: TaskSpec, parameters: Mapping[str, Any], catalog: Any) -> Probe:
        signature = spec.signature  # once per call: latent-cache re-checks the code each time
        made = self._base(spec, parameters, catalog, signature)
        if made is None:
            return UNCACHED
        base, ingredients = made
        reads = self._reads(spec.name, signature)
        return Probe(_with_reads(base, reads), base, signature, reads, ingredients)

    def _stored(self, spec: TaskSpec, parameters: Mapping[str, Any], catalog: Any) -> Probe:
        """The call's key and the stored value under it, whatever its output file holds."""
        probe = self._key(spec, parameters, catalog)
        if probe.key is None:
            return probe
        found = self.store.read(probe.key)
        if found is MISS:
            return probe
        header, payload = found
        try:
            value = cloudpickle.loads(payload)
        except Exception as exc:  # a class that no longer exists, a damaged pickle
            self.store.warn(probe.key, f"(unpickling failed: {type(exc).__name__}: {exc})")
            return probe
        return replace(probe, value=value, header=header)

    def _output_state(self, spec: TaskSpec, probe: Probe, catalog: Any) -> str:
        """Whether a hit may be served: "agrees" (or no output), "differs" or "missing".

        An output that is missing makes the task run again (its file is recreated by the run,
        as the docs promise); one that holds another value — another run's, or a damaged
        file — is rewritten from the cached value before it is served (see the module
        docstring).
        """
        if spec.output is None or probe.header is None:
            return "agrees"
        dataset = _output_dataset(spec, catalog, probe.value)
        written = (probe.header.output or {}).get(spec.output)
        try:
            if not dataset.exists():
                return "missing"
            if written is not None and self._agrees(dataset, written):
                return "agrees"
        except (DatasetError, DatasetNotFoundError, FileNotFoundError, OSError):
            return "missing"
        return "differs"

    def _rewrite_output(self, spec: TaskSpec, probe: Probe, catalog: Any) -> None:
        dataset = _output_dataset(spec, catalog, probe.value)
        dataset.save(probe.value)
        logger.info(
            f"Task '{spec.name}': output '{spec.output}' rewritten from the cached result "
            "(it held another run's value, or was damaged)"
        )

    # -- store ---------------------------------------------------------------------------------

    def store_result(
        self,
        spec: TaskSpec,
        probe: Probe,
        result: Any,
        read: tuple[str, ...],
        output: Mapping[str, str] | None,
    ) -> None:
        """Store a computed result under the key that covers the params it read (one write)."""
        if probe.key is None:
            return
        reads = probe.reads
        if not set(read) <= set(reads):
            reads = tuple(sorted(set(reads) | set(read)))
            self._remember_reads(spec.name, probe.signature, reads)
        key = _with_reads(probe.base, reads)
        try:
            payload = cloudpickle.dumps(result)
        except Exception as exc:
            kind = type(result).__name__
            _warn_once(
                f"pickle:{spec.name}",
                f"Task '{spec.name}' returned a '{kind}' that cannot be stored in the cache "
                f"({type(exc).__name__}: {exc}); the value is returned but the task runs "
                f"again next time. Return plain data, or pass cache=False to "
                f"@task('{spec.name}').",
            )
            return
        run = current_run()
        ingredients = dict(probe.ingredients)
        ingredients.update({f"param:{name}": _param_hash(name) for name in reads})
        header = Header(
            key=key,
            task=spec.name,
            flow=run.flow if run is not None else None,
            created=time.time(),
            expires=self._expires(spec),
            output=dict(output) if output else None,
        )
        self.store.write(header, payload)
        self._remember_last(spec, ingredients)

    def _agrees(self, dataset: Any, written: str) -> bool:
        return self.fingerprint(dataset.paths()) == written

    def output_fingerprint(self, spec: TaskSpec, dataset: Any) -> dict[str, str] | None:
        """{output name: fingerprint} of an output just saved, for the record to remember."""
        if spec.output is None:
            return None
        try:
            return {spec.output: self.fingerprint(dataset.paths())}
        except (DatasetError, FileNotFoundError, OSError):
            return None

    # -- explain -------------------------------------------------------------------------------

    def explain_miss(self, spec: TaskSpec, probe: Probe) -> list[str] | None:
        """Why this call missed, once per task and run (None when already explained)."""
        session = _session.get()
        if session is None or probe.key is None:
            return None
        with session.lock:
            if (self.storage, spec.name) in session.explained:
                return None
            session.explained.add((self.storage, spec.name))
        lines = self.why(spec, probe)
        payload = json.dumps({"task": spec.name, "at": time.time(), "why": lines}).encode()
        self._write_side(_side_key("why", spec.name), payload)
        return lines

    def why(self, spec: TaskSpec, probe: Probe) -> list[str]:
        """Why a call with this key misses: what changed since the task's last stored result
        (one line each, as `latent cache why` prints them). Records nothing."""
        found = self.store.read(_side_key("last", spec.name))
        if found is MISS:
            return ["never stored before: first run of this task (or its cache was cleared)"]
        last = json.loads(found[1])
        then: dict[str, str] = last.get("ingredients", {})
        now = dict(probe.ingredients)
        now.update({f"param:{name}": _param_hash(name) for name in probe.reads})
        lines = _code_changes(last.get("code", {}), signature_parts(spec.fn))
        for kind, label in (("data", "dataset"), ("param", "key"), ("arg", "argument")):
            names = sorted({k.split(":", 1)[1] for k in {*then, *now} if k.startswith(kind + ":")})
            for name in names:
                key = f"{kind}:{name}"
                if then.get(key) != now.get(key):
                    lines.append(f"{_KIND_TITLE[kind]}: {label} '{name}' changed")
        return lines or [
            "no change in code, data, params or arguments: the stored result expired, was "
            "cleared, or was stored for other argument values"
        ]

    def _remember_last(self, spec: TaskSpec, ingredients: dict[str, str]) -> None:
        """Keep what the latest stored result was made of, once per task and run."""
        session = _session.get()
        marker = (self.storage, spec.name)
        if session is not None:
            with session.lock:
                if marker in session.lasts:
                    return
                session.lasts.add(marker)
        payload = {"ingredients": ingredients, "code": signature_parts(spec.fn)}
        self._write_side(_side_key("last", spec.name), json.dumps(payload).encode())

    # -- params read ---------------------------------------------------------------------------

    def _reads(self, task: str, signature: str) -> tuple[str, ...]:
        session = _session.get()
        memo_key = (self.storage, task, signature)
        if session is not None and memo_key in session.reads:
            return session.reads[memo_key]
        found = self.store.read(_reads_key(task, signature))
        reads = tuple(json.loads(found[1])) if found is not MISS else ()
        if session is not None:
            session.reads[memo_key] = reads
        return reads

    def _remember_reads(self, task: str, signature: str, reads: tuple[str, ...]) -> None:
        session = _session.get()
        if session is not None:
            session.reads[(self.storage, task, signature)] = reads
        self._write_side(_reads_key(task, signature), json.dumps(list(reads)).encode())

    # -- pieces --------------------------------------------------------------------------------

    def _write_side(self, key: str, payload: bytes) -> None:
        self.store.write(Header(key=key, created=time.time()), payload)

    def _expires(self, spec: TaskSpec) -> float | None:
        expiration = spec.cache_expiration
        if expiration is DEFAULT_EXPIRATION:
            expiration = self.project.settings.cache.expiration
        if expiration is None:
            return None
        assert isinstance(expiration, timedelta)
        return time.time() + expiration.total_seconds()

    def _base(
        self, spec: TaskSpec, parameters: Mapping[str, Any], catalog: Any, signature: str
    ) -> tuple[str, dict[str, str]] | None:
        try:
            if spec.input and (
                spec.input_param is None or parameters.get(spec.input_param) is None
            ):
                return self._file_key(spec, parameters, catalog, signature)
            key, parts = row_key_and_ingredients(spec.name, (), parameters, signature)
        except UnhashableError as exc:
            _warn_unhashable(spec.name, exc)
            return None
        return key, _arg_ingredients(parts)

    def _file_key(
        self, spec: TaskSpec, parameters: Mapping[str, Any], catalog: Any, signature: str
    ) -> tuple[str, dict[str, str]] | None:
        assert spec.input is not None
        try:
            fingerprint = self.fingerprint(catalog.get(spec.input).paths())
        except (DatasetError, DatasetNotFoundError, FileNotFoundError):
            return None  # the task will run and report the missing input with its own error
        rest = {k: v for k, v in parameters.items() if k != spec.input_param}
        others, parts = row_key_and_ingredients(spec.name, (), rest, signature)
        refs = (spec.input,) if "." in spec.input else ()
        key = file_cache_key([fingerprint, others], signature, refs)
        ingredients = _arg_ingredients(parts)
        ingredients[f"data:{spec.input}"] = fingerprint
        return key, ingredients

    def fingerprint(self, paths: list[str]) -> str:
        """Content fingerprint of local files (latent-cache, with its stat index); for URLs,
        the filesystem's own checksum of every file (size + mtime or ETag, by backend)."""
        local = [p for p in paths if "://" not in p or p.startswith("file://")]
        remote = [p for p in paths if p not in local]
        parts = []
        if local:
            local = [p.removeprefix("file://") for p in local]
            parts.append(fingerprint_paths(local, index_dir=self.project.cache_dir))
        for url in sorted(remote):
            import fsspec

            fs, path = fsspec.core.url_to_fs(url)
            if not fs.exists(path):
                raise FileNotFoundError(url)
            files = sorted(fs.find(path)) if fs.isdir(path) else [path]
            parts.append(stable_hash([(f, str(fs.checksum(f))) for f in files]))
        return stable_hash(parts)


class _DefaultExpiration:
    def __repr__(self) -> str:
        return "the project's [cache] expiration"

    def __reduce__(self) -> str:
        return "DEFAULT_EXPIRATION"  # one instance in every process, so `is` holds in workers


#: `@task(cache_expiration=...)` not given: `[cache] expiration` of latent.toml (7 days unset).
DEFAULT_EXPIRATION: Any = _DefaultExpiration()

_caches: dict[str, TaskCache] = {}
_caches_lock = threading.Lock()


def cache_for(project: Project) -> TaskCache:
    """The task cache of `project` (one per result storage location and project object)."""
    key = f"{id(project)}:{project.results_storage}"
    found = _caches.get(key)
    if found is not None and found.project is project:
        return found
    with _caches_lock:
        found = _caches[key] = TaskCache(project)
    return found


def explanation_of(project: Project, task: str) -> dict[str, Any] | None:
    """The last recorded explanation of a miss of `task` (for `latent cache why`)."""
    found = ResultStore(project.results_storage).read(_side_key("why", task))
    if found is MISS:
        return None
    explanation: dict[str, Any] = json.loads(found[1])
    return explanation


SIDE_PREFIXES = ("reads-", "last-", "why-")


def _side_key(kind: str, task: str) -> str:
    return f"{kind}-{hashlib.md5(task.encode(), usedforsecurity=False).hexdigest()}"


def _reads_key(task: str, signature: str) -> str:
    """Per task and code version: the key of a call is computed where the map is (the flow's
    process) and its result stored where it ran (a worker), so both name it the same way."""
    return f"{_side_key('reads', task)}-{signature}"


def _with_reads(base: str, reads: tuple[str, ...]) -> str:
    """The base key extended by the current values of the params a task reads."""
    if not reads:
        return base
    digest = hashlib.md5(base.encode(), usedforsecurity=False)
    for name in sorted(reads):
        digest.update(b"\0" + name.encode() + b"=" + _param_hash(name).encode())
    return digest.hexdigest()


def _param_hash(name: str) -> str:
    value = params.get(name, None) if current_run() is not None else None
    try:
        return stable_hash(value)
    except TypeError:
        return "unhashable"


def _arg_ingredients(parts: Mapping[str, str]) -> dict[str, str]:
    """`args[0]` / `kwargs['x']` digests of latent-cache as `arg:<name>` ingredients."""
    out = {}
    for where, digest in parts.items():
        if where.startswith("kwargs["):
            out[f"arg:{where[8:-2]}"] = digest
        elif where.startswith("args["):
            out[f"arg:{where}"] = digest
    return out


_KIND_TITLE = {"data": "data", "param": "params", "arg": "args"}


def _code_changes(then: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    lines = []
    for name in sorted({*then, *now}):
        short = name.rsplit(".", 1)[-1]
        if name not in then:
            lines.append(f"code: function '{short}' is new ({name})")
        elif name not in now:
            lines.append(f"code: function '{short}' is no longer called ({name})")
        elif then[name] != now[name]:
            lines.append(f"code: function '{short}' changed ({name})")
    return lines


def _output_dataset(spec: TaskSpec, catalog: Any, value: Any) -> Any:
    assert spec.output is not None
    return (
        catalog.get(spec.output)
        if catalog.has(spec.output)
        else catalog.default_for(spec.output, value)
    )


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(topic: str, message: str) -> None:
    """Warn once per run (once per process outside any flow)."""
    session = _session.get()
    seen, lock = (session.warned, session.lock) if session is not None else (_warned, _warned_lock)
    with lock:
        if topic in seen:
            return
        seen.add(topic)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _warn_unhashable(task: str, exc: UnhashableError) -> None:
    """Once per process: the argument's type does not change between runs."""
    with _warned_lock:
        if f"unhashable:{task}" in _warned:
            return
        _warned.add(f"unhashable:{task}")
    where = exc.path or "an argument"
    short = exc.type_name.split(".")[-1]
    warnings.warn(
        f"Task '{task}' runs uncached: {where} of type '{exc.type_name}' cannot be hashed "
        f"stably. Register a hasher with latent.cache.register_hasher({short}, fn) "
        f"or pass cache=False to @task('{task}').",
        RuntimeWarning,
        stacklevel=4,
    )
