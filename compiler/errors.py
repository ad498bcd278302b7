"""User-facing errors: one line, naming the file, node and op, and saying what to do."""

from __future__ import annotations


class SnnError(Exception):
    """An error caused by the user's input; the CLI prints it on one line and exits with code 2."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        node: str | None = None,
        op: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path, self.node, self.op, self.hint = path, node, op, hint
        parts = []
        if path:
            parts.append(str(path))
        if node is not None or op is not None:
            parts.append(f"node '{node}' ({op})" if node is not None else f"op {op}")
        text = ": ".join(parts + [message]) if parts else message
        if hint:
            text = f"{text}; {hint}"
        super().__init__(" ".join(text.split()))


class CompilerBug(RuntimeError):
    """The compiled model fails a check that a correct compiler always passes."""
