"""The `onnx-snn` command line: compile, eval, inspect, quantize-weights, demo, info, export-nir and
import-nir subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from typing import Any, Callable, NoReturn, cast

from tqdm import tqdm

from onnx_snn import __version__
from onnx_snn.commands import compile as compile_command
from onnx_snn.commands import demo as demo_command
from onnx_snn.commands import eval as eval_command
from onnx_snn.commands import export_nir as export_nir_command
from onnx_snn.commands import import_nir as import_nir_command
from onnx_snn.commands import info as info_command
from onnx_snn.commands import inspect as inspect_command
from onnx_snn.commands import quantize_weights as quantize_weights_command
from onnx_snn.commands.compile import option_fields
from onnx_snn.errors import SnnError
from onnx_snn.logs import configure_logging
from onnx_snn.nir_io.dialects import DIALECTS as NIR_DIALECTS
from onnx_snn.options import MAX_TIMESTEPS, checked_count
from onnx_snn.pipeline import PASS_NAMES
from onnx_snn.runtime.ray_eval import LOCAL as RAY_LOCAL

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to find the usage, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one subcommand; user errors print one line on stderr and return 2."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        return int(exc.code or 0)
    configure_logging(verbose=args.verbose)
    try:
        return args.handler(args)
    except SnnError as exc:
        _end_progress_bars()
        print(f"onnx-snn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _end_progress_bars()
        print(f"onnx-snn {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        _end_progress_bars()
        print(
            f"onnx-snn {args.command}: error: out of memory; lower --max-memory, --batch-size or --timesteps",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - never show a user a traceback unless asked
        if os.environ.get("ONNX_SNN_DEBUG"):
            raise
        _end_progress_bars()
        text = str(exc).strip().splitlines()
        print(
            f"onnx-snn {args.command}: internal error: {type(exc).__name__}: {text[0][:300] if text else ''} "
            "(a bug in onnx-snn: set ONNX_SNN_DEBUG=1 for a traceback and report it with the command)",
            file=sys.stderr,
        )
        return 1


def _end_progress_bars() -> None:
    """Close any progress bar still drawn, so that an error line starts on a line of its own."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _positive_int(text: str) -> int:
    """argparse type: an integer in [1, MAX_TIMESTEPS] (options.checked_count), for sizes and counts."""
    try:
        return checked_count("the value", int(text))
    except (ValueError, SnnError):
        raise argparse.ArgumentTypeError(f"expected an integer in [1, {MAX_TIMESTEPS}], got {text!r}") from None


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnx-snn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"onnx-snn {__version__}")
    common = _Parser(add_help=False)  # a parent only lends its arguments; typed as the subparsers' class
    common.add_argument(
        "--verbose", action="store_true", help="also show onnxruntime's and onnx-graphsurgeon's warnings"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile an ANN (.onnx) into an SNN (.onnx)", parents=[common])
    c.add_argument("model", help="the ANN exported to ONNX")
    c.add_argument("-o", "--output", required=True, help="where to write the SNN")
    c.add_argument("--calib", help="calibration inputs, .npy or .npz (key = input name, or x)")
    _add_option_flags(c, PASS_NAMES)
    c.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars, nor the --target-gap line (its warning stays)"
    )
    c.set_defaults(handler=compile_command.run)

    e = sub.add_parser("eval", help="accuracy of a compiled SNN at every timestep", parents=[common])
    e.add_argument("model", help="the compiled SNN")
    e.add_argument("--data", required=True, help=".npz with inputs (input name or x) and labels (y)")
    e.add_argument("--ann", help="the source ANN, to report argmax agreement and logit error")
    e.add_argument("--timesteps", type=_positive_int, default=None, help="T (default: the compiled T)")
    e.add_argument("--batch-size", type=_positive_int, default=256, help="samples per run (default 256)")
    e.add_argument(
        "--max-memory",
        metavar="SIZE",
        default=None,
        help="memory budget of the run and the data file, e.g. 2GB or 512MiB (default: half of the "
        "available memory): larger runs go in batch and time chunks, with identical results",
    )
    e.add_argument(
        "--ray",
        nargs="?",
        const=RAY_LOCAL,
        metavar="ADDRESS",
        help="evaluate in shards on Ray workers (the `ray` extra), with the same report bit for bit: "
        "without ADDRESS on a Ray started on this machine, with 'auto' or HOST:PORT on a running "
        "cluster; --max-memory then applies to each worker (put --ray last, or write --ray=ADDRESS)",
    )
    e.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --ray: shards and Ray workers, one CPU each (default: one per GPU of the cluster, else one per CPU)",
    )
    e.add_argument(
        "--find-t",
        metavar="PCT",
        type=float,
        default=None,
        help="with --ann: also print the smallest T at which the SNN's argmax differs from the ANN's on at "
        "most PCT percent of the samples (compile --target-gap stores it as the default T)",
    )
    e.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    e.add_argument(
        "--plot",
        metavar="DIR",
        help="also write accuracy.png, and with --stats firing_rate.png, into "
        "DIR (created if needed; needs matplotlib)",
    )
    e.add_argument(
        "--stats",
        action="store_true",
        help="print firing rates, synaptic operations and energy per layer (model compiled with --stats)",
    )
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    e.set_defaults(handler=eval_command.run)

    i = sub.add_parser("inspect", help="ops, neuron layers and their scales of a model", parents=[common])
    i.add_argument("model")
    i.set_defaults(handler=inspect_command.run)

    w = sub.add_parser(
        "quantize-weights", help="constrain an ANN's weights to a memristive crossbar's levels", parents=[common]
    )
    w.add_argument("model", help="the ANN exported to ONNX")
    w.add_argument("-o", "--output", required=True, help="where to write the constrained ANN")
    w.add_argument("--levels", type=int, default=16, metavar="N", help="levels per sign (default 16)")
    w.add_argument(
        "--on-off-ratio",
        type=float,
        default=10.0,
        metavar="R",
        help="ON/OFF ratio: non-zero magnitudes in [max/R, max] (default 10)",
    )
    w.add_argument("--per-channel", action="store_true", help="max magnitude per output channel instead of per layer")
    w.add_argument(
        "--data", help=".npz with inputs (input name or x) and labels (y): print the accuracy before and after"
    )
    w.set_defaults(handler=quantize_weights_command.run)

    d = sub.add_parser("demo", help="compile and evaluate the shipped digits MLP", parents=[common])
    d.add_argument("--timesteps", type=_positive_int, default=64)
    d.add_argument("-o", "--output", default=None, help="where to write the SNN (default: a temp dir)")
    d.set_defaults(handler=demo_command.run)

    n = sub.add_parser(
        "info", help="the onnxruntime build in use, its providers, whether a CUDA session starts", parents=[common]
    )
    n.add_argument("--json", action="store_true", help="print the report as JSON")
    n.set_defaults(handler=info_command.run)

    x = sub.add_parser(
        "export-nir", help="write a compiled SNN (binary or multi-spike IF neurons) as a NIR graph", parents=[common]
    )
    x.add_argument("model", help="the compiled SNN (compile --spikes binary, or multi for sinabs)")
    x.add_argument("-o", "--output", required=True, help="where to write the NIR graph (.nir)")
    _add_dialect_flag(
        x,
        "--for",
        "the reader to write for: nir (the spec, IF neurons with hard reset), snntorch (IF as the "
        "LIF limit; needs --reset hard --v-init 0), sinabs (exact with --spikes multi --v-min -1 "
        "--v-init 0 --tie-residual-scales) or norse (needs --reset hard --v-init 0) (default nir)",
    )
    x.set_defaults(handler=export_nir_command.run)

    m = sub.add_parser("import-nir", help="read a NIR graph as an onnx-snn SNN", parents=[common])
    m.add_argument("graph", help="the NIR graph (.nir)")
    m.add_argument("-o", "--output", required=True, help="where to write the SNN (.onnx)")
    _add_dialect_flag(
        m,
        "--from",
        "whose discretization to follow: nir (forward Euler at --dt), snntorch, sinabs or norse (as "
        "their importers simulate the graph; norse: IF only) (default nir)",
    )
    m.add_argument("--timesteps", type=_positive_int, default=32, help="default T of the SNN (default 32)")
    m.add_argument(
        "--dt", type=_positive_float, default=None, help="the step in NIR's time unit (default: the dialect's)"
    )
    m.set_defaults(handler=import_nir_command.run)
    return parser


def _add_dialect_flag(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """The NIR dialect flag (`--for` of export-nir, `--from` of import-nir), stored as `dialect`."""
    parser.add_argument(flag, dest="dialect", choices=sorted(NIR_DIALECTS), default="nir", help=help)


def _add_option_flags(parser: argparse.ArgumentParser, pass_names: list[str]) -> None:
    """One `--name` flag per CompileOptions option, with its default, help and argparse settings."""
    for f in option_fields():
        settings = dict(f.metadata)
        positive, text = settings.pop("positive", False), settings.pop("help")
        default = cast("Callable[[], Any]", f.default_factory)() if f.default is dataclasses.MISSING else f.default
        flag = "--" + f.name.replace("_", "-")
        if not (default is None or default is False or default == []):
            text += f" (default {default})"
        if "action" in settings:  # a flag with its own argparse action (e.g. --x / --no-x)
            parser.add_argument(flag, default=default, help=text, **settings)
        elif isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=text)
        elif isinstance(default, list):
            parser.add_argument(
                flag,
                action="append",
                choices=pass_names,
                default=[],
                help=f"{text} ({', '.join(pass_names)})",
                **settings,
            )
        else:
            kind = _positive_int if positive else settings.pop("type", type(default))
            parser.add_argument(flag, type=kind, default=default, help=text, **settings)


if __name__ == "__main__":
    sys.exit(main())
