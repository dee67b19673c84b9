"""The package's import graph: layered, without cycles, and light to import.

Every module of ``npmdn`` has a layer below; a module may import (at the top
or inside a function) only modules of a lower layer. That rules out cycles
and keeps each backend's code below the switch that loads it. A new module
must be given its layer here, which is the point: say where it sits.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

import npmdn

PKG = pathlib.Path(npmdn.__file__).parent

LAYERS = [
    # 0: no npmdn imports at all
    ["npmdn._version", "npmdn.config", "npmdn._arrays", "npmdn._io", "npmdn.philox",
     "npmdn.nn", "npmdn.optim", "npmdn._numba", "npmdn._cuda", "npmdn._numba.vmath",
     "npmdn._numba.transpose", "npmdn._numba.compiling", "npmdn._numba.permute",
     "npmdn._numba.memory",
     "npmdn.progress",
     "npmdn.standardization"],
    # the full-covariance factor's reference (only array helpers below it)
    ["npmdn.fullcov"],
    # 1: input checks, the special functions, the mixture reference, kernels' parts
    ["npmdn._checks", "npmdn.normal", "npmdn.mixture", "npmdn._numba.head",
     "npmdn._numba.sample", "npmdn._cuda.sources", "npmdn.persistence"],
    # the full-covariance head kernel, built on the head kernel's layout
    ["npmdn._numba.full"],
    # 2: built on the reference: the distribution, the backends' faces, data sets
    ["npmdn.distribution", "npmdn.conditional", "npmdn._numba.kernels",
     "npmdn._numba.regularization", "npmdn._cuda.plan", "npmdn.datasets", "npmdn._blocks",
     "npmdn.architecture", "npmdn.regularization"],
    # 3: the fused training epoch (with the noise and floor of layer 2), the CUDA launcher
    ["npmdn._numba.train", "npmdn._cuda.kernels"],
    # the numba backend's first-run background compile, around the fused epoch
    ["npmdn._numba.warm"],
    # 4: the switch, which loads the backends
    ["npmdn.backend"],
    # 5: the raw-parameter API, scores, training
    ["npmdn.functional", "npmdn.metrics", "npmdn.training"],
    # 6: the predicted distribution as an object
    ["npmdn.predictive"],
    # 7: models on Dask rows (the model's methods send Dask inputs there, so it sits
    # below the model and knows a model only by its methods)
    ["npmdn.dask"],
    # 8: what a model answers, as a mixin of the model
    ["npmdn.queries"],
    # 9: the model
    ["npmdn.model"],
    # 9: what uses models: figures, the demo, the ecosystem adapters
    ["npmdn.plot", "npmdn.sklearn"],
    ["npmdn.demo"],
    # the command
    ["npmdn.cli.files"],
    ["npmdn.cli.readers"],
    ["npmdn.cli.data", "npmdn.cli.runner"],
    ["npmdn.cli.commands"],
    ["npmdn.cli.main"],
    # 13: entry points
    ["npmdn", "npmdn.__main__", "npmdn.cli"],
]
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = pathlib.Path(*name.split("."))
    return (PKG.parent / rel).with_suffix(".py").is_file() or \
        (PKG.parent / rel / "__init__.py").is_file()


def _imports(path: pathlib.Path) -> set[str]:
    """Every npmdn module ``path`` imports, at the top or inside a function."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("npmdn"):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if _is_module(sub) else mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("npmdn"))
    out.discard(name)
    return out


GRAPH = {_module_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


def test_every_module_has_a_layer():
    missing = sorted(set(GRAPH) - set(LAYER))
    assert not missing, f"give these modules a layer in LAYERS: {missing}"
    gone = sorted(set(LAYER) - set(GRAPH))
    assert not gone, f"LAYERS names modules that no longer exist: {gone}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    up = sorted(d for d in GRAPH[module] if LAYER.get(d, -1) >= LAYER[module])
    assert not up, f"{module} (layer {LAYER[module]}) imports {up}, not below it"


def test_no_module_imports_the_package_init():
    offenders = sorted(m for m, deps in GRAPH.items() if "npmdn" in deps and m != "npmdn")
    assert not offenders


def test_no_cycles():
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for d in GRAPH.get(m, ()):
            if state.get(d) == "open":
                raise AssertionError(" -> ".join(stack + [m, d]))
            if d not in state:
                visit(d, stack + [m])
        state[m] = "done"

    for m in GRAPH:
        if m not in state:
            visit(m, [])


def test_import_npmdn_loads_no_optional_extra():
    code = ("import sys, npmdn; print([m for m in ('numba', 'sklearn', 'dask', 'cupy', "
            "'matplotlib', 'scipy', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
