"""Reading and writing NIR files (HDF5, through the optional `nir` package) with one-line errors.

The `nir` package is imported here only, inside the functions that need it, so that onnx-snn
runs without the `nir` extra; a command that needs it says how to install it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from onnx_snn.errors import SnnError
from onnx_snn.outputs import atomic_write

#: the NIR node types import-nir reads (graph nodes and neurons); any other is refused by name
READABLE = frozenset(
    {"Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "Scale"}
    | {"IF", "LIF", "CubaLIF", "LI"}
)


def nir_module() -> ModuleType:
    """The `nir` package, or SnnError saying how to install it."""
    try:
        import nir
    except ImportError:
        raise SnnError("needs the nir package", hint="pip install 'onnx-snn[nir]'") from None
    return nir


def read_graph(path: str | os.PathLike) -> Any:
    """The NIRGraph stored at `path`, read without nir's type inference (import-nir checks shapes
    itself, naming the node). SnnError for a missing or unreadable file (truncated HDF5, another
    format), a node type that import-nir does not read (named, with its node), or a graph nir
    cannot build."""
    nir = nir_module()
    path = Path(path)
    if not path.is_file():
        raise SnnError("file not found; check the path" if not path.exists() else "is not a file", path=str(path))
    _refuse_unknown_types(path)
    try:
        graph = nir.read(str(path), type_check=False)
    except Exception as exc:  # noqa: BLE001 - h5py and nir raise many types for a bad file
        raise SnnError(f"is not a NIR graph nir can read ({_first_line(exc)}); re-export it", path=str(path)) from None
    if type(graph).__name__ != "NIRGraph":
        raise SnnError(f"holds a single {type(graph).__name__} node, not a NIR graph", path=str(path))
    return graph


def _refuse_unknown_types(path: Path) -> None:
    """SnnError naming the first node whose type import-nir does not read (nir.read would fail on an
    unknown type without saying which, and would read a subgraph we cannot run)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            nodes = f["node"]["nodes"]
            types = {str(name): _text(nodes[name]["type"][()]) for name in nodes}
    except Exception as exc:  # noqa: BLE001 - not HDF5, truncated, or not laid out as nir.write does
        raise SnnError(
            f"is not a readable NIR file (truncated, or not NIR's HDF5 layout: {_first_line(exc)}); re-export it",
            path=str(path),
        ) from None
    for name, kind in types.items():
        if kind not in READABLE:
            what = "a subgraph (recurrent or nested)" if kind == "NIRGraph" else "a node type import-nir does not read"
            raise SnnError(
                f"{what}; import-nir reads {', '.join(sorted(READABLE))}", path=str(path), node=name, op=kind
            )


def write_graph(graph: Any, path: str | os.PathLike) -> None:
    """Write `graph` to `path` atomically (outputs.atomic_write), read back before it is moved into
    place so that a file nir cannot read is never left at `path`."""
    nir = nir_module()
    atomic_write(path, lambda tmp: nir.write(str(tmp), graph), lambda tmp: nir.read(str(tmp)))


def _text(value: object) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
