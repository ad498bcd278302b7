"""The layering of ARCHITECTURE.md, checked by parsing every import of the package: a module may
import its own layer and the layers below it, never one above; the neuron families under passes/
never import each other; and no first-party import hides inside a function (a lazy import that
would hide a cycle), except the few listed in LAZY with their reason."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGE_DIRS = {
    "compiler": "onnx_snn",
    "passes": "onnx_snn.passes",
    "runtime": "onnx_snn.runtime",
    "models": "onnx_snn.models",
    "benchmarks": "benchmarks",
}
#: the layers, lowest first: (name, module prefixes); the longest matching prefix decides
LAYERS = [
    ("ir", ["onnx_snn.ir"]),
    (
        "core",
        [
            "onnx_snn.errors",
            "onnx_snn.logs",
            "onnx_snn.options",
            "onnx_snn.budget",
            "onnx_snn.outputs",
            "onnx_snn.validate",
            "onnx_snn.modelio",
            "onnx_snn.arrays",
            "onnx_snn.providers",
            "onnx_snn.probe",
            "onnx_snn.metadata",
        ],
    ),
    ("passes", ["onnx_snn.passes"]),
    ("runtime", ["onnx_snn.runtime"]),
    ("compiler", ["onnx_snn"]),
    ("models", ["onnx_snn.models"]),
    ("benchmarks", ["benchmarks"]),
]
#: neuron families: each may use the shared passes but not another family
FAMILIES = ["onnx_snn.passes.rate", "onnx_snn.passes.signgd", "onnx_snn.passes.ttfs"]
#: modules allowed first-party imports inside a function, and why (none of them dodges a cycle)
LAZY = {
    "benchmarks.gpu_bench": "a standalone script: on the GPU machine only onnxruntime is installed, so it "
    "imports onnx_snn only in `prepare`, which runs here",
}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def layer_of(module: str) -> int:
    """Index in LAYERS of `module`'s layer (longest matching prefix)."""
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer of ARCHITECTURE.md"
    return rank


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported first-party module, line, inside a function) of every import in `path`."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([child.module] if child.module else []))
                for alias in child.names:
                    target = f"{base}.{alias.name}"
                    found.append((target if target in MODULES else base, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return [(name, line, lazy) for name, line, lazy in found if name.split(".")[0] in ("onnx_snn", "benchmarks")]


def _edges():
    for module, path in MODULES.items():
        for target, line, lazy in _imports(module, path):
            yield module, path, target, line, lazy


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{path.relative_to(ROOT)}:{line} ({LAYERS[layer_of(module)][0]}) imports {target} "
        f"({LAYERS[layer_of(target)][0]})"
        for module, path, target, line, _ in _edges()
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_neuron_families_do_not_import_each_other():
    def family(module: str) -> str | None:
        return next((f for f in FAMILIES if module == f or module.startswith(f + ".")), None)

    crossing = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for module, path, target, line, _ in _edges()
        if family(module) and family(target) and family(module) != family(target)
    ]
    assert not crossing, "imports between neuron families:\n" + "\n".join(crossing)


def test_no_first_party_import_hides_in_a_function():
    lazy = [
        f"{path.relative_to(ROOT)}:{line} imports {target} inside a function"
        for module, path, target, line, is_lazy in _edges()
        if is_lazy and module not in LAZY
    ]
    assert not lazy, "\n".join(lazy)


@pytest.mark.parametrize(
    "module, target",
    [
        ("onnx_snn.passes.common.calibrate", "onnx_snn.runtime.session"),
        ("onnx_snn.ir.neurons", "onnx_snn.errors"),
        ("onnx_snn.passes.rate.spikify", "onnx_snn.passes.ttfs.graph"),
    ],
)
def test_the_checks_would_catch_a_violation(module, target):
    """The rules are not vacuous: these imports would each break one of them."""
    assert layer_of(target) > layer_of(module) or target.split(".")[2] != module.split(".")[2]
