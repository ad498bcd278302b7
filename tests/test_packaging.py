"""Packaging: the extras, the wheel's contents, a base install without the optional dependencies,
and the onnxruntime build check (`python -m onnx_snn.providers`)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import run_cli

from onnx_snn import providers

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
#: imported only inside functions (or by onnx_snn.models): a base install has none of them
OPTIONAL = (
    "torch",
    "tensorflow",
    "tf2onnx",
    "keras",
    "matplotlib",
    "sklearn",
    "onnxscript",
    "loguru",
    "spikingjelly",
    "ray",
)


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def _extra_requirements(extra: str, seen: frozenset[str] = frozenset()) -> list[str]:
    """The requirements of `extra`, with the project's own extras (onnx-snn[a,b]) expanded."""
    found = []
    for requirement in PROJECT["optional-dependencies"][extra]:
        if _name(requirement) == PROJECT["name"]:
            included = re.search(r"\[(.*?)\]", requirement).group(1)
            for other in (e.strip() for e in included.split(",")):
                assert other not in seen | {extra}, f"extra {extra} includes {other} in a cycle"
                found += _extra_requirements(other, seen | {extra})
        else:
            found.append(requirement)
    return found


def _package_folders() -> dict[str, Path]:
    """Each package of [tool.setuptools] packages -> its source folder, as setuptools maps it."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    package_dir = setuptools.get("package-dir", {})
    folders = {}
    for package in setuptools["packages"]:
        parts = package.split(".")
        cut = next(c for c in range(len(parts), -1, -1) if c == 0 or ".".join(parts[:c]) in package_dir)
        folders[package] = ROOT / package_dir.get(".".join(parts[:cut]), "") / Path(*parts[cut:])
    return folders


def _module_level_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of the imports that run when the module is imported: not those in functions
    or under `if TYPE_CHECKING:`."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(ast.Module(body=[other], type_ignores=[]))
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.lineno, child.module))
            visit(child)

    visit(tree)
    return found


# --- the onnxruntime build ---------------------------------------------------------------------


def test_active_build_reports_the_installed_build():
    build = providers.active_build()
    assert "CPUExecutionProvider" in build["available_providers"]
    assert build["version"] and build["distribution"] in build["distributions"]
    if not build["cuda_in_build"]:  # the CPU build (CI, this machine)
        assert build["distribution"] == "onnxruntime"
        assert build["cuda_usable"] is False and "not in this build" in build["cuda"]
        assert build["default_providers"] == ["CPUExecutionProvider"]
        assert build["warnings"] == []
    report = providers.report(build)
    assert f"onnxruntime {build['version']} from {build['distribution']}" in report
    assert "CPUExecutionProvider" in report


def test_both_distributions_installed_warn(monkeypatch, capsys):
    """onnxruntime and onnxruntime-gpu share the `onnxruntime` module: the check says to keep one."""
    monkeypatch.setattr(
        providers.metadata,
        "packages_distributions",
        lambda: {"onnxruntime": ["onnxruntime", "onnxruntime_gpu", "onnxruntime"]},
    )
    monkeypatch.setattr(providers.metadata, "version", lambda name: "1.32.0")
    build = providers.active_build()
    assert build["distributions"] == {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.32.0"}
    assert build["distribution"] == ("onnxruntime-gpu" if build["cuda_in_build"] else "onnxruntime")
    assert len(build["warnings"]) >= 1
    assert "onnxruntime and onnxruntime-gpu are installed together" in build["warnings"][0]
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in build["warnings"][0]
    result = run_cli("info")
    assert result.returncode == 1 and "warning: onnxruntime and onnxruntime-gpu" in result.stdout


def test_no_distribution_found_warns(monkeypatch):
    monkeypatch.setattr(providers.metadata, "packages_distributions", lambda: {})
    build = providers.active_build()
    assert build["distribution"] is None and build["distributions"] == {}
    assert "no installed distribution" in build["warnings"][0]


def test_info_prints_the_report():
    result = run_cli("info")
    build = providers.active_build()
    assert result.returncode == (1 if build["warnings"] else 0), result.stderr
    assert result.stdout.startswith(f"onnxruntime {build['version']} from ")
    assert "providers: " in result.stdout and "CPUExecutionProvider" in result.stdout
    as_json = run_cli("info", "--json")
    assert json.loads(as_json.stdout)["available_providers"] == build["available_providers"]


# --- the extras ----------------------------------------------------------------------------------


def test_base_install_is_the_cpu_runtime():
    names = {_name(r) for r in PROJECT["dependencies"]}
    assert names == {"onnx", "onnxruntime", "onnx-graphsurgeon", "numpy", "tqdm"}


def test_no_extra_installs_onnxruntime_gpu_beside_onnxruntime():
    """Both provide the `onnxruntime` module; the README says how to swap them."""
    assert "gpu" not in PROJECT["optional-dependencies"]
    for extra in PROJECT["optional-dependencies"]:
        assert "onnxruntime-gpu" not in {_name(r) for r in _extra_requirements(extra)}, extra


def test_test_extra_has_models_plot_lint_and_no_tensorflow():
    names = {_name(r) for r in _extra_requirements("test")}
    assert {"pytest", "torch", "onnxscript", "scikit-learn", "matplotlib", "ruff", "mypy"} <= names
    assert not {n for n in names if n.startswith(("tensorflow", "tf2onnx", "keras"))}, names
    assert {_name(r) for r in _extra_requirements("tf")} == {"tensorflow-cpu", "tf2onnx"}


def test_torch_is_a_lower_bound_not_a_pin():
    requirements = list(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"]:
        requirements += _extra_requirements(extra)
    torch = [r for r in requirements if _name(r) == "torch"]
    assert torch, "no extra installs torch"
    for requirement in torch:
        assert "==" not in requirement and "~=" not in requirement and ">=" in requirement, requirement


# --- the package ---------------------------------------------------------------------------------


def test_every_source_package_is_listed():
    """Each folder of the package's sources with an __init__.py is in [tool.setuptools] packages
    (the list is explicit: a package missing from it is missing from the wheel)."""
    folders = _package_folders()
    listed = {folder.resolve() for folder in folders.values()}
    missing = sorted(
        str(init.parent.relative_to(ROOT))
        for root in set(folders.values())
        for init in root.rglob("__init__.py")
        if init.parent.resolve() not in listed and "__pycache__" not in init.parts
    )
    assert not missing, f"add these to [tool.setuptools] packages: {missing}"


def test_no_module_level_optional_import_outside_models():
    """onnx_snn imports torch, tensorflow, matplotlib ... only inside functions, except
    onnx_snn.models (the `models` extra), so that a base install compiles and runs."""
    offenders = []
    for package, folder in _package_folders().items():
        if package == "onnx_snn.models" or package.startswith("onnx_snn.models."):
            continue
        for path in sorted(folder.glob("*.py")):
            for line, module in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
                if module.split(".")[0] in OPTIONAL:
                    offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offenders, offenders


def test_base_install_imports_without_optional_packages():
    """Every module outside onnx_snn.models imports with torch, tensorflow, matplotlib ... absent."""
    modules = []
    for package, folder in _package_folders().items():
        if package.startswith("onnx_snn.models"):
            continue
        modules += [package] + [
            f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem not in ("__init__", "__main__")
        ]
    script = (
        f"import importlib, sys\nfor name in {OPTIONAL!r}:\n    sys.modules[name] = None\n"
        f"for module in {modules!r}:\n    importlib.import_module(module)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_wheel_has_the_package_and_no_benchmarks(tmp_path):
    """`pip wheel --no-deps .` holds onnx_snn with its data and no benchmark harness. It builds a copy
    of the tree (benchmarks/ included, build outputs not), so that no stale build/ feeds the wheel."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path / "wheel"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("onnx_snn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("benchmarks/")]
    assert not [n for n in names if Path(n).name.lower().startswith("bench")]
    top = {n.split("/")[0] for n in names}
    assert top == {"onnx_snn", next(t for t in top if t.endswith(".dist-info"))}, top
    for package in _package_folders():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert any(n.startswith("onnx_snn/data/") and n.endswith(".onnx") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "onnx-snn = onnx_snn.cli:main" in entry_points
