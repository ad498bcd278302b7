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
        self.message, self.path, self.node, self.op, self.hint = message, path, node, op, hint
        parts = []
        if path:
            parts.append(str(path))
        if node is not None or op is not None:
            parts.append(f"node '{node}' ({op})" if node is not None else f"op {op}")
        text = ": ".join(parts + [message]) if parts else message
        if hint:
            text = f"{text}; {hint}"
        super().__init__(" ".join(text.split()))


def shown(name: str, limit: int = 80) -> str:
    """`name` with control characters escaped and cut to `limit` characters, for a message."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unnamed_node_label(op: str, index: int, first_input: str | None, first_output: str | None) -> str:
    """How a message names a node the input left unnamed: its op, its index in the input graph
    and its first input and output tensors, e.g. `Conv#12 (data -> conv1_out)`."""
    ends = [shown(name) if name else "-" for name in (first_input, first_output)]
    return f"{shown(op)}#{index} ({ends[0]} -> {ends[1]})"


class CompilerBug(RuntimeError):
    """The compiled model fails a check that a correct compiler always passes."""
