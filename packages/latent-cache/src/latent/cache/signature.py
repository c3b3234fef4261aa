"""Code signatures: a digest of what a function does, stable across edits that change nothing.

The signature hashes the function's normalised AST (no docstrings, comments, line numbers or
formatting, no decorators) with its qualified name, plus the signatures of the user functions it
calls, followed recursively with cycle protection. A user function is one of the same module, or
one whose source file is not part of Python or an installed library: ``helper(x)``,
``utils.helper(x)`` and ``pkg.utils.helper(x)`` are followed into the project's own modules,
``json.dumps`` and ``np.mean`` are not (their code changes with their version). So:
- editing a helper the function calls invalidates it, in the same file or another file of the
  project (Prefect, joblib, Hamilton and ZenML miss this: their users get stale results after
  fixing a bug in a helper);
- moving the function down the file or fixing a comment does not (joblib loses its cache on a
  shifted line);
- two functions with the same body but different names never share a signature.

Values of globals and closure variables (an LLM client, a retry flag) are data, not code, and are
not part of the signature: data enters cache keys only as arguments, so a checkpointed inner
function keeps hitting after a restart. When no source is available (exec'd code, a REPL), the
signature falls back to the bytecode, constants and names of the code object.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import site
import sysconfig
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import xxhash

__all__ = ["code_signature", "qualified_name", "set_module_namer"]

# id(code) -> (code, signature). The code object is kept so its id cannot be reused; keyed by
# code rather than function so a nested function re-created on every call hits too.
_CACHE: dict[int, tuple[types.CodeType, str]] = {}
_LOCK = threading.Lock()


ModuleNamer = Callable[[str], "str | None"]
_module_namer: ModuleNamer | None = None


def set_module_namer(namer: ModuleNamer | None) -> ModuleNamer | None:
    """Name the modules of user files by `namer(filename)` rather than by their import name.

    One file can be imported under several names: ``__main__`` when run as a script, a package
    path from a notebook, a synthetic name when a tool loads it from its path. Signatures and
    checkpoint keys that contain the import name would then differ and nothing would be
    shared between those runs. latent-prefect names a project's files by their path in the
    project (``flows/answer/flow.py`` -> ``flows.answer.flow``). `namer` returns None for
    files it does not name; files of Python and installed libraries are never passed to it.
    Returns the namer it replaces, so a caller can put it back.
    """
    global _module_namer
    previous, _module_namer = _module_namer, namer
    with _LOCK:
        _CACHE.clear()
    return previous


def module_name(func: types.FunctionType) -> str:
    """The module name that signatures and keys use for `func` (see `set_module_namer`)."""
    namer = _module_namer
    filename = _source_path(func.__code__.co_filename)
    if namer is not None and filename is not None and _is_user_file(filename):
        try:
            named = namer(filename)
        except Exception:  # a namer must never break a cached call
            named = None
        if named:
            return named
    return str(func.__module__)


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function, with the module named as in `module_name`."""
    try:
        return f"{module_name(_unwrap(fn))}.{fn.__qualname__}"
    except TypeError:  # not a Python function: its import name is all there is
        return f"{fn.__module__}.{fn.__qualname__}"


def code_signature(fn: Callable[..., Any]) -> str:
    """Return a 32-character hex digest of ``fn``'s code and the user helpers it calls.

    Computed once per code object per process (it sits on the hot path of every cached call).
    Accepts plain functions, lambdas, nested functions, methods (bound or not) and wrappers made
    with ``functools.wraps``.
    """
    func = _unwrap(fn)
    code = func.__code__
    hit = _CACHE.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    h = xxhash.xxh3_128()
    seen: set[int] = set()
    for part in _parts(func, seen):
        h.update(part)
    signature = h.hexdigest()
    with _LOCK:
        _CACHE[id(code)] = (code, signature)
    return signature


def _unwrap(fn: Callable[..., Any]) -> types.FunctionType:
    obj: Any = fn
    for _ in range(100):
        if isinstance(obj, types.FunctionType):
            return obj
        if isinstance(obj, (types.MethodType, classmethod, staticmethod)):
            obj = obj.__func__
        elif hasattr(obj, "__wrapped__"):
            obj = obj.__wrapped__
        elif isinstance(obj, type) or not hasattr(obj, "__call__"):  # noqa: B004
            break
        elif isinstance(getattr(obj, "__call__", None), types.MethodType):  # noqa: B004
            obj = obj.__call__
        else:
            break
    raise TypeError(
        f"code_signature needs a Python function, got {type(fn).__module__}."
        f"{type(fn).__qualname__}: pass the function itself (not a builtin or a class)."
    )


def _parts(func: types.FunctionType, seen: set[int]) -> Iterator[bytes]:
    """Yield the byte parts of ``func``'s signature and then of each helper it calls."""
    code = func.__code__
    if id(code) in seen:
        return
    seen.add(id(code))
    name = f"{module_name(func)}.{func.__qualname__}"
    body, names, chains = _normalised(func)
    yield b"%d:" % len(name.encode()) + name.encode()
    yield b"%d:" % len(body) + body
    helpers = [_helper(func, (n,)) for n in sorted(names)]
    helpers += [_helper(func, chain) for chain in sorted(chains)]
    for helper in helpers:
        if helper is not None:
            yield from _parts(helper, seen)


def _helper(func: types.FunctionType, path: tuple[str, ...]) -> types.FunctionType | None:
    """The user function that ``name`` or ``module.name`` in ``func``'s body refers to, if any."""
    value = func.__globals__.get(path[0])
    for attribute in path[1:]:
        if not isinstance(value, types.ModuleType):
            return None
        value = getattr(value, attribute, None)
    if value is None:
        return None
    try:
        value = _unwrap(value)
    except TypeError:
        return None
    if value.__module__ == func.__module__:
        return value
    filename = _source_path(value.__code__.co_filename)
    return value if filename is not None and _is_user_file(filename) else None


def _source_path(filename: str) -> str | None:
    """The absolute path of a code object's file (relative when imported by a relative path);
    None for code with no file ("<string>", "<stdin>", frozen modules)."""
    if not filename or filename.startswith("<"):
        return None
    return os.path.abspath(filename)


@functools.lru_cache(maxsize=4096)
def _is_user_file(filename: str) -> bool:
    """True for an (absolute) source file outside Python's and the installed libraries' dirs."""
    path = os.path.realpath(filename)
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(path.startswith(prefix) for prefix in _library_dirs())


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = [paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    dirs += getattr(site, "getsitepackages", list)()  # some virtualenvs' site module lacks it
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


def _normalised(func: types.FunctionType) -> tuple[bytes, set[str], set[tuple[str, ...]]]:
    """Normalised AST dump, the global names the body loads and the dotted names it reads
    (``utils.helper`` as ``("utils", "helper")``); bytecode and names when there is no source.
    """
    node = _source_node(func)
    if node is None:
        return _bytecode(func.__code__), _code_names(func.__code__), set()
    _strip(node)
    names = {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    chains = {chain for n in ast.walk(node) if (chain := _dotted(n)) is not None}
    return ast.dump(node, annotate_fields=False, include_attributes=False).encode(), names, chains


def _dotted(node: ast.AST) -> tuple[str, ...] | None:
    """``a.b.c`` read in the body as ("a", "b", "c"); None for anything else."""
    if not isinstance(node, ast.Attribute) or not isinstance(node.ctx, ast.Load):
        return None
    parts = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    if not isinstance(value, ast.Name):
        return None
    parts.append(value.id)
    return tuple(reversed(parts))


def _source_node(func: types.FunctionType) -> ast.AST | None:
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # A lambda in the middle of an expression: getsource returns the lines around it.
        try:
            tree = ast.parse("(\n" + source.strip().rstrip(",") + "\n)")
        except SyntaxError:
            return None
    want = func.__code__.co_name
    if want == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        # Several lambdas on the same lines cannot be told apart from source: use bytecode.
        return lambdas[0] if len(lambdas) == 1 else None
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == want:
            return n
    return None


def _strip(node: ast.AST) -> None:
    """Remove docstrings and decorators in place (they do not change what the body does)."""
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            n.decorator_list = []
            body = n.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                n.body = body[1:] or [ast.Pass()]


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _bytecode(code: types.CodeType) -> bytes:
    """Bytecode, constants and names: everything but line numbers and file names."""
    from latent.cache.hashing import stable_hash

    consts = [_const(c) for c in code.co_consts]
    fields = (
        code.co_qualname,
        code.co_code,
        consts,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_kwonlyargcount,
        code.co_flags,
    )
    return stable_hash(fields).encode()


def _const(value: object) -> object:
    if isinstance(value, types.CodeType):
        return ("<code>", _bytecode(value).decode())
    if value is Ellipsis:
        return ("<Ellipsis>",)
    return value
