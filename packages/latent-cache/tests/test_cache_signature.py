"""code_signature: follows code and same-module helpers, ignores formatting and data."""

from __future__ import annotations

import textwrap
from pathlib import Path

from latent.cache import code_signature

BASE = '''
import os

RETRIES = 3


def helper(x):
    return x * 2


def task(x):
    """Doubles x."""
    return helper(x) + 1
'''


def sig(load_module, source: str, name: str = "task") -> str:
    return code_signature(getattr(load_module(source), name))


def test_formatting_comments_docstrings_and_position_keep_the_signature(load_module) -> None:
    base = sig(load_module, BASE)
    reformatted = BASE.replace("return helper(x) + 1", "# add one\n    return (helper( x )\n + 1)")
    no_doc = BASE.replace('    """Doubles x."""\n', "")
    moved = "\n\n\ndef unrelated():\n    return 5\n" + BASE
    assert sig(load_module, reformatted) == base
    assert sig(load_module, no_doc) == base
    assert sig(load_module, moved) == base


def test_body_edit_and_helper_edit_change_the_signature(load_module) -> None:
    base = sig(load_module, BASE)
    assert sig(load_module, BASE.replace("+ 1", "+ 2")) != base
    assert sig(load_module, BASE.replace("x * 2", "x * 3")) != base


def test_helpers_of_helpers_are_followed_and_cycles_terminate(load_module) -> None:
    source = """
        def a(n):
            return b(n - 1) if n else 0

        def b(n):
            return a(n) + leaf(n)

        def leaf(n):
            return n
    """
    base = sig(load_module, source, "a")
    assert sig(load_module, source.replace("return n", "return -n"), "a") != base


def test_same_body_different_names_differ(load_module) -> None:
    mod = load_module("def one(x):\n    return x\n\ndef two(x):\n    return x\n")
    assert code_signature(mod.one) != code_signature(mod.two)


def test_global_and_closure_values_are_not_part_of_it(load_module) -> None:
    base = sig(load_module, BASE)
    assert sig(load_module, BASE.replace("RETRIES = 3", "RETRIES = 9")) == base
    source = """
        def make(client, crash):
            def call(doc):
                if crash:
                    raise RuntimeError
                return client(doc)
            return call
    """
    mod = load_module(source)
    assert code_signature(mod.make(len, True)) == code_signature(mod.make(str, False))


def test_other_modules_functions_are_not_followed(load_module) -> None:
    base = sig(load_module, BASE)
    assert sig(load_module, BASE.replace("import os", "import os, sys")) == base


FLOW = """
def task(x):
    return utils.normalize(x) + clean(x)
"""


def _flow_with(load_module, utils_source: str, clean_source: str, folder: Path | None = None):
    utils = load_module(utils_source, "utils")
    cleaning = load_module(clean_source, "cleaning")
    if folder is not None:  # the same helper module, installed as a library
        path = folder / "site-packages" / "utils.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(utils_source))
        utils = _import_file(path, "utils")
    flow = load_module(FLOW)
    flow.utils = utils  # `import utils` and `from cleaning import clean`, as the flow file has
    flow.clean = cleaning.clean
    return flow.task


def _import_file(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UTILS = "def normalize(x):\n    return x.strip().lower()\n"
CLEAN = "def clean(x):\n    return x.replace('  ', ' ')\n"


def test_helpers_in_other_project_modules_are_followed(load_module) -> None:
    """A bug fixed in utils.py, called as `utils.normalize` or imported by name, re-runs it."""
    base = code_signature(_flow_with(load_module, UTILS, CLEAN))
    assert code_signature(_flow_with(load_module, UTILS, CLEAN)) == base
    fixed_utils = UTILS.replace(".lower()", ".casefold()")
    assert code_signature(_flow_with(load_module, fixed_utils, CLEAN)) != base
    fixed_clean = CLEAN.replace("' ')", "' ').strip()")
    assert code_signature(_flow_with(load_module, UTILS, fixed_clean)) != base


def test_installed_libraries_are_not_followed(load_module, tmp_path: Path) -> None:
    """Code under site-packages changes with its version, not with the user's edits."""
    first = code_signature(_flow_with(load_module, UTILS, CLEAN, tmp_path / "a"))
    edited = UTILS.replace(".lower()", ".casefold()")
    assert code_signature(_flow_with(load_module, edited, CLEAN, tmp_path / "b")) == first


def test_lambdas_nested_functions_and_methods(load_module) -> None:
    source = """
        square = lambda x: x * x
        cube = lambda x: x * x * x

        def outer():
            def inner(y):
                return y + 1
            return inner

        class Scorer:
            def score(self, x):
                return x * 10

            def other(self, x):
                return x * 10
    """
    mod = load_module(source)
    sigs = {
        code_signature(mod.square),
        code_signature(mod.cube),
        code_signature(mod.outer()),
        code_signature(mod.Scorer.score),
        code_signature(mod.Scorer().score),
        code_signature(mod.Scorer.other),
    }
    assert len(sigs) == 5  # bound and unbound score agree
    again = load_module(source.replace("y + 1", "y + 2"))
    assert code_signature(again.outer()) != code_signature(mod.outer())
    assert code_signature(mod.outer()) == code_signature(mod.outer())


def test_bytecode_fallback_without_source() -> None:
    def build(body: str) -> object:
        namespace: dict[str, object] = {"__name__": "generated"}
        exec(textwrap.dedent(f"def gen(x):\n    return {body}\n"), namespace)
        return namespace["gen"]

    assert code_signature(build("x + 1")) == code_signature(build("x + 1"))  # type: ignore[arg-type]
    assert code_signature(build("x + 1")) != code_signature(build("x + 2"))  # type: ignore[arg-type]


def test_edits_are_seen_across_processes(tmp_path: Path, run_python) -> None:
    module = tmp_path / "flowmod.py"
    code = (
        "from latent.cache import code_signature\n"
        "import flowmod\n"
        "print(code_signature(flowmod.task))"
    )
    module.write_text(BASE)
    first = run_python(code, PYTHONPATH=str(tmp_path)).stdout
    assert run_python(code, PYTHONPATH=str(tmp_path)).stdout == first
    module.write_text(BASE.replace("x * 2", "x * 4"))
    assert run_python(code, PYTHONPATH=str(tmp_path)).stdout != first


def test_a_module_namer_makes_import_names_irrelevant(load_module) -> None:
    from latent.cache import qualified_name, set_module_namer

    as_script = load_module(BASE, "run_as_script")
    as_tool = load_module(BASE, "tool_loaded_flow")
    assert code_signature(as_script.task) != code_signature(as_tool.task)
    asked: list[str] = []

    def namer(filename: str) -> str:
        asked.append(filename)
        return "flows.demo.flow"

    previous = set_module_namer(namer)  # latent-prefect's, when the whole suite runs
    try:
        assert code_signature(as_script.task) == code_signature(as_tool.task)
        assert qualified_name(as_tool.task) == "flows.demo.flow.task"
        assert qualified_name(textwrap.dedent) == "textwrap.dedent"  # a library: not asked
        assert all("textwrap" not in f for f in asked)
        set_module_namer(None)
        assert code_signature(as_script.task) != code_signature(as_tool.task)
    finally:
        set_module_namer(previous)


def test_a_helper_defined_below_the_function_is_followed(load_module) -> None:
    below = """
        def task(x):
            return helper(x)

        def helper(x):
            return x * 2
    """
    base = sig(load_module, below)
    assert sig(load_module, below.replace("x * 2", "x * 3")) != base


def test_signature_computed_before_a_helper_exists_is_not_kept(load_module) -> None:
    """A signature taken while the module was half-executed (at decoration time) is redone."""
    module = load_module("def task(x):\n    return helper(x)\n")
    early = code_signature(module.task)
    exec("def helper(x):\n    return x * 2\n", module.__dict__)
    with_helper = code_signature(module.task)
    exec("def helper(x):\n    return x * 3\n", module.__dict__)
    assert len({early, with_helper, code_signature(module.task)}) == 3


def test_methods_of_project_classes_are_followed(load_module) -> None:
    source = """
        class Scorer:
            def __init__(self, scale):
                self.scale = scale

            def score(self, x):
                return x * self.scale

            @staticmethod
            def make():
                return Scorer(2)

        def by_class(x):
            return Scorer.make().score(x)

        def by_instance(scorer, x):
            return scorer.score(x)
    """
    for name in ("by_class", "by_instance"):
        base = sig(load_module, source, name)
        assert sig(load_module, source.replace("x * self.scale", "x + self.scale"), name) != base
        assert (
            sig(
                load_module,
                source.replace("self.scale = scale", "self.scale = scale  # kept"),
                name,
            )
            == base
        )


def test_library_classes_and_functions_stay_out(load_module) -> None:
    source = """
        import json
        from collections import OrderedDict

        def task(x):
            return json.dumps(OrderedDict(x=x))
    """
    module = load_module(source)
    from latent.cache.signature import signature_parts

    assert list(signature_parts(module.task)) == ["userflow.task"]


def test_the_async_version_of_the_same_code_has_the_same_signature(load_module) -> None:
    sync = """
        def ask(client, q):
            with client.session() as s:
                return s.complete(q).upper()
    """
    asynchronous = """
        async def ask(client, q):
            async with client.session() as s:
                return (await s.complete(q)).upper()
    """
    assert sig(load_module, sync, "ask") == sig(load_module, asynchronous, "ask")
    assert sig(load_module, sync, "ask") != sig(load_module, sync.replace("upper", "lower"), "ask")
