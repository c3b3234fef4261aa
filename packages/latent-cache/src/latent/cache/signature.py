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

Methods of the project's classes are code too: a class the function names (``Model(...)``,
``Model.load(...)``) brings in all of its methods, and ``obj.method(...)`` on a value of unknown
type brings in every method of that name on the classes of the function's module.

A signature is memoized per code object together with what its names resolved to; a later
call re-checks those few lookups, so a helper defined below the task, or a module reloaded
with an edited helper, gives a new signature instead of a stale one.

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
import sys
import sysconfig
import textwrap
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeGuard

import xxhash

__all__ = ["code_signature", "qualified_name", "set_module_namer", "signature_parts"]

# What a name in a function's body resolved to when its signature was computed: the namespace
# it was looked up in (a module's globals, a class's live __dict__), the name, and what it was
# (see `_identity`).
_Dep = tuple[Mapping[str, Any], str, object]

# id(code) -> (code, signature, deps). The code object is kept so its id cannot be reused; keyed
# by code rather than function so a nested function re-created on every call hits too.
_CACHE: dict[int, tuple[types.CodeType, str, tuple[_Dep, ...]]] = {}
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

    Memoized per code object (it sits on the hot path of every cached call) and re-checked on
    each call against what the body's names resolve to now (see the module docstring).
    Accepts plain functions, lambdas, nested functions, methods (bound or not) and wrappers made
    with ``functools.wraps``.
    """
    func = _unwrap(fn)
    code = func.__code__
    hit = _CACHE.get(id(code))
    if hit is not None and hit[0] is code and _still_resolves(hit[2]):
        return hit[1]
    return _compute(func)


def signature_parts(fn: Callable[..., Any]) -> dict[str, str]:
    """``{qualified name: digest of its own code}`` for ``fn`` and every helper it follows.

    What an explanation of a cache miss compares, to say which function changed.
    """
    parts: dict[str, str] = {}
    for name, body in _walk(_unwrap(fn), set(), []):
        parts[name] = xxhash.xxh3_64_hexdigest(body)
    return parts


def _compute(func: types.FunctionType) -> str:
    h = xxhash.xxh3_128()
    deps: list[_Dep] = []
    for name, body in _walk(func, set(), deps):
        encoded = name.encode()
        h.update(b"%d:" % len(encoded) + encoded)
        h.update(b"%d:" % len(body) + body)
    signature = h.hexdigest()
    with _LOCK:
        _CACHE[id(func.__code__)] = (func.__code__, signature, tuple(deps))
    return signature


def _still_resolves(deps: tuple[_Dep, ...]) -> bool:
    return all(_identity(namespace.get(name)) is seen for namespace, name, seen in deps)


def _identity(value: Any) -> object:
    """What makes a name's value the same code: a function's code object, a class itself."""
    if value is None or isinstance(value, type):
        return value
    if isinstance(value, property):
        value = value.fget
    found = _function_of(value)
    return found.__code__ if found is not None else None


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


def _walk(
    func: types.FunctionType, seen: set[int], deps: list[_Dep]
) -> Iterator[tuple[str, bytes]]:
    """Yield (qualified name, normalised body) of ``func`` and then of each helper it calls."""
    code = func.__code__
    if id(code) in seen:
        return
    seen.add(id(code))
    name = f"{module_name(func)}.{func.__qualname__}"
    body, names, chains = _normalised(func)
    yield name, body
    for helper in _helpers(func, names, chains, deps):
        yield from _walk(helper, seen, deps)


def _helpers(
    func: types.FunctionType,
    names: set[str],
    chains: set[tuple[str, ...]],
    deps: list[_Dep],
) -> Iterator[types.FunctionType]:
    """The user functions and methods the body's names and dotted names refer to."""
    namespace = func.__globals__
    for name in sorted(names):
        value = namespace.get(name)
        helper = _user_function(func, value)
        deps.append((namespace, name, _identity(value)))
        if helper is not None:
            yield helper
        elif _is_user_class(value):
            yield from _methods(value)
    methods = {chain[-1] for chain in chains}
    for chain in sorted(chains):
        value = namespace.get(chain[0])
        if isinstance(value, types.ModuleType):
            helper = _attribute_function(func, value, chain[1:])
            if helper is not None:
                yield helper
            elif _is_user_class(found := _attribute(value, chain[1:-1])):
                yield from _methods(found, only={chain[-1]})
    # ``obj.method()`` on a value of unknown type: that method of the module's own classes.
    for value in list(namespace.values()) if methods else ():
        if _is_user_class(value) and value.__module__ == func.__module__:
            yield from _methods(value, only=methods)


def _attribute(value: Any, path: tuple[str, ...]) -> Any:
    for attribute in path:
        if not isinstance(value, types.ModuleType):
            return None
        value = getattr(value, attribute, None)
    return value


def _attribute_function(
    func: types.FunctionType, module: types.ModuleType, path: tuple[str, ...]
) -> types.FunctionType | None:
    return _user_function(func, _attribute(module, path))


def _function_of(value: Any) -> types.FunctionType | None:
    if value is None:
        return None
    try:
        return _unwrap(value)
    except Exception:  # TypeError, or an object whose attribute lookup itself raises
        return None


def _user_function(func: types.FunctionType, value: Any) -> types.FunctionType | None:
    """`value` as a function of the same module or of a project file; None for anything else.

    A library's wrapper around a project function (a task object, a decorator made with
    ``functools.wraps``) leads to the project function it wraps.
    """
    if value is None or isinstance(value, type):
        return None
    found = _function_of(value)
    for _ in range(10):
        if found is None:
            return None
        if found.__module__ == func.__module__:
            return found
        filename = _source_path(found.__code__.co_filename)
        if filename is not None and _is_user_file(filename):
            return found
        found = _function_of(getattr(found, "__wrapped__", None))
    return None


def _is_user_class(value: Any) -> TypeGuard[type]:
    """A class defined in a user file: by its module's file, else by its methods' code."""
    if not isinstance(value, type):
        return False
    module = sys.modules.get(value.__module__)
    filename = getattr(module, "__file__", None)
    if filename is not None:
        return _is_user_file(os.path.abspath(filename))
    for member in list(vars(value).values()):
        found = _function_of(member.fget if isinstance(member, property) else member)
        path = _source_path(found.__code__.co_filename) if found is not None else None
        if path is not None:
            return _is_user_file(path)
    return False


def _methods(cls: type, only: set[str] | None = None) -> Iterator[types.FunctionType]:
    """The functions defined in ``cls`` and its user base classes (``only`` those names)."""
    for klass in cls.__mro__:
        if klass is object or not _is_user_class(klass):
            continue
        namespace = klass.__dict__
        for name in sorted(namespace):
            if only is not None and name not in only:
                continue
            value = namespace[name]
            if isinstance(value, property):
                value = value.fget
            # no dependency on the class's own entries: the class is checked by the name that
            # refers to it (a reloaded module gives a new class), and tools that ship classes
            # by value (cloudpickle, for Dask) re-set their methods on the same class
            found = _function_of(value) if value is not None else None
            if found is not None:
                yield found


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
    # Latent's own packages are library code too, also when installed from a checkout
    latent = sys.modules.get("latent")
    dirs += list(getattr(latent, "__path__", []))
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


def _normalised(func: types.FunctionType) -> tuple[bytes, set[str], set[tuple[str, ...]]]:
    """Normalised AST dump, the global names the body loads and the dotted names it reads
    (``utils.helper`` as ``("utils", "helper")``); bytecode and names when there is no source.
    """
    node = _source_node(func)
    if node is None:
        return _bytecode(func.__code__), _code_names(func.__code__), set()
    _strip(node)
    node = _Synchronous().visit(node)
    # names the function binds itself (parameters, assignments, loop targets) are local: a
    # global of the same name is not what the body calls
    bound = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
    bound |= {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    }
    names = {
        n.id
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in bound
    }
    chains = {chain for n in ast.walk(node) if (chain := _dotted(n)) is not None}
    chains = {c for c in chains if c[0] not in bound} | {
        (c[0], c[-1])
        for c in chains
        if c[0] in bound  # obj.method() on a local: the method
    }
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


class _Synchronous(ast.NodeTransformer):
    """``async def`` as ``def`` and ``await x`` as ``x``: the async version of the same code
    has the same signature, so moving a task to an async client keeps its cache."""

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        self.generic_visit(node)
        return ast.FunctionDef(**{f: getattr(node, f) for f in node._fields})

    def visit_Await(self, node: ast.Await) -> ast.AST:
        self.generic_visit(node)
        return node.value

    def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.AST:
        self.generic_visit(node)
        return ast.With(**{f: getattr(node, f) for f in node._fields})

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        self.generic_visit(node)
        return ast.For(**{f: getattr(node, f) for f in node._fields})


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
