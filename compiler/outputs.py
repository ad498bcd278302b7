"""Every file a command writes: checked against every file it reads, and written atomically.

The rule (one helper for every command): no path that a run writes (`-o`, its external data,
`--json`, `--plot` files, `--dump-after` files) may be a file that the run reads (the model and
every external-data file it references, `--calib`, `--data`, `--ann` and its data), compared after
resolving symlinks and, for existing files, by device and inode (hard links). A clash, two
outputs on one path, or an output that cannot be written (a directory, a missing or read-only
folder) is a SnnError naming both paths, raised before any work starts. Writes go to a temporary
file beside the destination and are renamed into place only once complete (and verified, where a
check is given), so a failed run leaves nothing at the destination.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping

import onnx

from onnx_snn.errors import SnnError

PathLike = str | os.PathLike
#: one role ("model", "--calib", ...) to the paths it names; None entries are ignored
Roles = Mapping[str, PathLike | Iterable[PathLike] | None]


def model_files(path: PathLike) -> list[Path]:
    """The model file and every external-data file its tensors reference (read without loading the
    data). An unreadable model yields just its own path: loading it reports the error later."""
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any unreadable file; load_model names the problem
        return [path]
    locations = {
        entry.value
        for tensor in _tensors(model.graph)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [path, *(path.parent / location for location in sorted(locations))]


def model_roles(role: str, path: PathLike | None) -> dict[str, list[Path]]:
    """`role` for the model file and "`role`'s external data" for the data files it references
    (check_io's reads); empty for None."""
    if path is None:
        return {}
    files = model_files(path)
    return {role: files[:1], f"{role}'s external data": files[1:]}


def external_data_path(model_path: PathLike) -> Path:
    """Where save_model puts the weights of a model too large for one protobuf: `<name>.data`."""
    return Path(os.fspath(model_path) + ".data")


def check_io(reads: Roles, writes: Roles) -> None:
    """Refuse (SnnError) any write path that is a read path, two writes on one path, and write
    paths that cannot be written: an existing directory, a path ending in a separator, a missing
    or read-only folder."""
    read_paths = [(role, Path(path)) for role, path in _named(reads)]
    seen: dict[tuple, tuple[str, Path]] = {}
    for role, text in _named(writes):
        _check_writable(role, text)
        path = Path(text)
        for read_role, read_path in read_paths:
            if same_file(path, read_path):
                raise SnnError(
                    f"{role} {path} would overwrite {read_role} {read_path}; write it elsewhere", path=str(path)
                )
        key = _identity(path)
        if key in seen:
            other_role, other = seen[key]
            raise SnnError(
                f"{role} {path} and {other_role} {other} are the same file; choose different paths", path=str(path)
            )
        seen[key] = (role, path)


def atomic_write(path: PathLike, write: Callable[[Path], object], check: Callable[[Path], None] | None = None) -> None:
    """Call `write(tmp)` on a temporary path in `path`'s folder, then `check(tmp)` if given, then
    rename it to `path`. Any exception leaves `path` as it was and no temporary file behind;
    OS errors (permissions, a full disk) become SnnError naming `path`."""
    path = Path(path)
    try:
        tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    except OSError as exc:
        raise SnnError(f"cannot write here ({exc.strerror or exc}); choose a writable path", path=str(path)) from None
    try:
        tmp = tmp_dir / path.name
        try:
            write(tmp)
        except OSError as exc:
            raise SnnError(
                f"cannot write ({exc.strerror or exc}); choose a writable path with free space", path=str(path)
            ) from None
        if check is not None:
            check(tmp)
        for produced in sorted(tmp_dir.iterdir(), key=lambda p: p == tmp):  # side files first, the main one last
            os.replace(produced, path.parent / produced.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write a text file atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _tensors(graph: onnx.GraphProto) -> Iterable[onnx.TensorProto]:
    """Every tensor stored in `graph`: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def _named(roles: Roles) -> Iterable[tuple[str, str]]:
    """(role, path as given) for every path of every role (Path() would drop a trailing separator)."""
    for role, value in roles.items():
        if value is None:
            continue
        values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        for item in values:
            yield role, os.fspath(item)


def _identity(path: Path) -> tuple:
    """(device, inode) of an existing file, else its resolved path."""
    resolved = path.resolve()
    try:
        stat = resolved.stat()
        return (stat.st_dev, stat.st_ino)
    except OSError:
        return (str(resolved),)


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when `a` and `b` name one file (symlinks resolved; hard links by inode)."""
    return _identity(Path(a)) == _identity(Path(b))


def _check_writable(role: str, text: str) -> None:
    path = Path(text)
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)) or path.is_dir():
        raise SnnError(f"{role} is a directory; give a file path", path=text)
    folder = path.resolve().parent
    if not folder.is_dir():
        raise SnnError(f"{role}: the folder {folder} does not exist; create it first", path=text)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SnnError(f"{role}: the folder {folder} is not writable; choose another path", path=text)
