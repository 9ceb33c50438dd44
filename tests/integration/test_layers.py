"""pyrogen is layered without circles (docs/architecture.rst).

Every module belongs to one layer; a module imports only from its own layer
or the layers below, and the import graph (function-local imports included,
read from the source with ``ast``) has no cycle. A new module must be given
its layer here, which is the point: where it goes is a decision.
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import pyrogen

LAYERS = [
    (
        "foundation",
        [
            "pyrogen",
            "pyrogen.errors",
            "pyrogen.files",
            "pyrogen.distributed",
            "pyrogen.threads",
            "pyrogen.precision",
            "pyrogen.tracking",
            "pyrogen.checks",
            "pyrogen.settings",
            "pyrogen.random_streams",
        ],
    ),
    (
        "data, distributions and networks",
        ["pyrogen.data", "pyrogen.distributions", "pyrogen.networks", "pyrogen.optim"],
    ),
    ("models", ["pyrogen.models"]),
    ("infer", ["pyrogen.infer"]),
    ("configurations, run kinds and run directories", ["pyrogen.config", "pyrogen.kinds", "pyrogen.rundirs"]),
    ("evaluation", ["pyrogen.evaluation", "pyrogen.testing", "pyrogen.pytest_plugin"]),
    ("training", ["pyrogen.training", "pyrogen.lightning"]),
    ("plotting and report", ["pyrogen.plotting", "pyrogen.plotting_tables", "pyrogen.report"]),
    ("runs", ["pyrogen.runs"]),
    ("cli", ["pyrogen.cli", "pyrogen.__main__", "pyrogen._entry"]),
]
"""Lowest first: (name, module prefixes). A prefix covers a package and everything in it."""

ROOT = Path(pyrogen.__file__).resolve().parent


def _modules():
    """``{module name: source path}`` for every module of the package, itself included."""
    found = {"pyrogen": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], "pyrogen."):
        rel = Path(*info.name.split(".")[1:])
        found[info.name] = ROOT / rel / "__init__.py" if info.ispkg else ROOT / rel.with_suffix(".py")
    return found


MODULES = _modules()


def layer(module):
    """Index of the layer that owns ``module`` (its longest matching prefix)."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "pyrogen" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    if best is None:
        raise AssertionError(
            f"{module} belongs to no layer: add it to LAYERS in tests/integration/test_layers.py "
            "and to docs/architecture.rst"
        )
    return best[0]


def imports(module):
    """The pyrogen modules that ``module``'s source imports anywhere (top level or inside functions)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # "from pyrogen.x import y" imports the module pyrogen.x.y where there is one, else pyrogen.x
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # "import pyrogen.x.y" names a module; an attribute's owner
                name = name.rpartition(".")[0]
            if name.startswith("pyrogen") and name != module:
                found.add(name)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_imports():
    for module in MODULES:
        if module != "pyrogen.__main__":  # running it is the command line
            importlib.import_module(module)


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_from_its_layer_or_below(module):
    upward = sorted(m for m in GRAPH[module] if layer(m) > layer(module))
    assert not upward, f"{module} (layer {LAYERS[layer(module)][0]!r}) imports from higher layers: " + ", ".join(
        f"{m} ({LAYERS[layer(m)][0]!r})" for m in upward
    )


def test_import_graph_has_no_cycle():
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_checker_sees_function_local_imports():
    """The parser finds what the rules are about: imports inside functions and ``from pyrogen import x``."""
    assert "pyrogen.evaluation.features" in GRAPH["pyrogen.evaluation.sample_quality"]  # inside a function
    assert "pyrogen.rundirs" in GRAPH["pyrogen.evaluation.sample_quality"]  # inside a function
    assert "pyrogen.runs" in GRAPH["pyrogen.cli"]  # "from pyrogen import kinds, runs"
    assert layer("pyrogen.training.gan") > layer("pyrogen.evaluation.sample_quality")


def test_argument_parsing_lives_only_in_the_command_line():
    parsers = sorted(
        m
        for m, path in MODULES.items()
        if any(
            isinstance(node, (ast.Import, ast.ImportFrom))
            and "argparse" in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module])
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert parsers == ["pyrogen.cli"]
