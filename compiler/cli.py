"""The `onnx-snn` command line: compile, eval, inspect, quantize-weights and demo subcommands."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import NoReturn

from onnx_snn import __version__
from onnx_snn.errors import SnnError
from onnx_snn.logs import configure_logging

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
        print(f"onnx-snn {args.command}: error: out of memory; lower --max-memory, --batch-size or --timesteps",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - never show a user a traceback unless asked
        if os.environ.get("ONNX_SNN_DEBUG"):
            raise
        _end_progress_bars()
        text = str(exc).strip().splitlines()
        print(f"onnx-snn {args.command}: internal error: {type(exc).__name__}: {text[0][:300] if text else ''} "
              "(a bug in onnx-snn: set ONNX_SNN_DEBUG=1 for a traceback and report it with the command)",
              file=sys.stderr)
        return 1


def _end_progress_bars() -> None:
    """Close any progress bar still drawn, so that an error line starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _positive_int(text: str) -> int:
    """argparse type: an integer in [1, MAX_TIMESTEPS] (options.checked_count), for sizes and counts."""
    from onnx_snn.options import MAX_TIMESTEPS, checked_count

    try:
        return checked_count("the value", int(text))
    except (ValueError, SnnError):
        raise argparse.ArgumentTypeError(f"expected an integer in [1, {MAX_TIMESTEPS}], got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    from onnx_snn.pipeline import PASS_NAMES

    parser = _Parser(prog="onnx-snn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"onnx-snn {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="also show onnxruntime's and onnx-graphsurgeon's warnings")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile an ANN (.onnx) into an SNN (.onnx)", parents=[common])
    c.add_argument("model", help="the ANN exported to ONNX")
    c.add_argument("-o", "--output", required=True, help="where to write the SNN")
    c.add_argument("--calib", help="calibration inputs, .npy or .npz (key = input name, or x)")
    _add_option_flags(c, PASS_NAMES)
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    c.set_defaults(handler=_compile)

    e = sub.add_parser("eval", help="accuracy of a compiled SNN at every timestep", parents=[common])
    e.add_argument("model", help="the compiled SNN")
    e.add_argument("--data", required=True, help=".npz with inputs (input name or x) and labels (y)")
    e.add_argument("--ann", help="the source ANN, to report argmax agreement and logit error")
    e.add_argument("--timesteps", type=_positive_int, default=None, help="T (default: the compiled T)")
    e.add_argument("--batch-size", type=_positive_int, default=256, help="samples per run (default 256)")
    e.add_argument("--max-memory", metavar="SIZE", default=None,
                   help="memory budget of the run and the data file, e.g. 2GB or 512MiB (default: half of the "
                        "available memory): larger runs go in batch and time chunks, with identical results")
    e.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    e.add_argument("--plot", metavar="DIR", help="also write accuracy.png, and with --stats firing_rate.png, into "
                                                 "DIR (created if needed; needs matplotlib)")
    e.add_argument("--stats", action="store_true",
                   help="print firing rates, synaptic operations and energy per layer (model compiled with --stats)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    e.set_defaults(handler=_eval)

    i = sub.add_parser("inspect", help="ops, neuron layers and their scales of a model", parents=[common])
    i.add_argument("model")
    i.set_defaults(handler=_inspect)

    w = sub.add_parser("quantize-weights", help="constrain an ANN's weights to a memristive crossbar's levels",
                       parents=[common])
    w.add_argument("model", help="the ANN exported to ONNX")
    w.add_argument("-o", "--output", required=True, help="where to write the constrained ANN")
    w.add_argument("--levels", type=int, default=16, metavar="N", help="levels per sign (default 16)")
    w.add_argument("--on-off-ratio", type=float, default=10.0, metavar="R",
                   help="ON/OFF ratio: non-zero magnitudes in [max/R, max] (default 10)")
    w.add_argument("--per-channel", action="store_true", help="max magnitude per output channel instead of per layer")
    w.add_argument("--data", help=".npz with inputs (input name or x) and labels (y): print the accuracy before "
                                  "and after")
    w.set_defaults(handler=_quantize_weights)

    d = sub.add_parser("demo", help="compile and evaluate the shipped digits MLP", parents=[common])
    d.add_argument("--timesteps", type=_positive_int, default=64)
    d.add_argument("-o", "--output", default=None, help="where to write the SNN (default: a temp dir)")
    d.set_defaults(handler=_demo)
    return parser


def _compile(args: argparse.Namespace) -> int:
    from onnx_snn.api import compile_model
    from onnx_snn.options import CompileOptions

    options = CompileOptions(**{f.name: getattr(args, f.name) for f in option_fields()})
    if options.input_range is not None:
        options.input_range = tuple(options.input_range)
    result = compile_model(args.model, args.output, options, calibration=args.calib,
                           show_progress=_show_progress(args))
    for note in result.notes:
        print(f"note: {note}")
    layers = result.metadata.get("neuron_layers", [])
    neuron = result.metadata.get("neuron", args.neuron)
    timing = (f"t_read = {result.metadata['ttfs']['t_read']:.6g}" if neuron == "ttfs"
              else f"T = {args.timesteps}")
    print(f"compiled {args.model} -> {args.output}: {len(layers)} {neuron} neuron layers, {timing}")
    print(f"PASS: {args.output} {result.verification}")
    return 0


def option_fields() -> list[dataclasses.Field]:
    """The CompileOptions fields that are `compile` flags (made by options.option)."""
    from onnx_snn.options import CompileOptions

    return [f for f in dataclasses.fields(CompileOptions) if "help" in f.metadata]


def _add_option_flags(parser: argparse.ArgumentParser, pass_names: list[str]) -> None:
    """One `--name` flag per CompileOptions option, with its default, help and argparse settings."""
    for f in option_fields():
        settings = dict(f.metadata)
        positive, text = settings.pop("positive", False), settings.pop("help")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        flag = "--" + f.name.replace("_", "-")
        if not (default is None or default is False or default == []):
            text += f" (default {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=text)
        elif isinstance(default, list):
            parser.add_argument(flag, action="append", choices=pass_names, default=[],
                                help=f"{text} ({', '.join(pass_names)})", **settings)
        else:
            kind = _positive_int if positive else settings.pop("type", type(default))
            parser.add_argument(flag, type=kind, default=default, help=text, **settings)


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless --quiet, and only on a terminal (they are for people watching)."""
    return not args.quiet and sys.stderr.isatty()


def _eval(args: argparse.Namespace) -> int:
    from onnx_snn.arrays import labels_of, load_arrays, model_inputs
    from onnx_snn.budget import parse_size
    from onnx_snn.outputs import check_io, model_roles, same_file
    from onnx_snn.plots import ACCURACY_PNG, FIRING_RATE_PNG
    from onnx_snn.runtime import Session

    if args.ann is not None and same_file(args.ann, args.model):
        raise SnnError("--ann names the SNN itself; pass the source ANN", path=args.ann)
    plot_dir = Path(args.plot) if args.plot is not None else None
    if plot_dir is not None and plot_dir.exists() and not plot_dir.is_dir():
        raise SnnError("--plot must name a folder, and this is a file", path=args.plot)
    check_io(reads={**model_roles("the model", args.model), "--data": args.data,
                    **model_roles("--ann", args.ann)},
             writes={"--json": args.json_path,
                     "--plot": [plot_dir / ACCURACY_PNG, plot_dir / FIRING_RATE_PNG]
                     if plot_dir is not None and plot_dir.is_dir() else None})
    budget = parse_size(args.max_memory) if args.max_memory is not None else None
    session = Session(args.model, max_memory=budget)
    if args.stats and not (session.spike_names and session.activity is not None):
        raise SnnError("has no spike statistics; compile it with --stats to get the activity and energy report",
                       path=args.model)
    if args.plot is not None:
        from onnx_snn.plots import require_matplotlib

        require_matplotlib()
        if session.ttfs is not None:
            raise SnnError("is a TTFS model with one read-out; --plot draws accuracy over the timesteps of "
                           "rate-coded models", path=args.model)
    arrays = load_arrays(args.data, session.max_memory)
    inputs = model_inputs(arrays, session.input_names, args.data)
    labels = labels_of(arrays, args.data)
    if args.ann is not None and not Path(args.ann).is_file():
        raise SnnError("ANN file not found; check the --ann path", path=args.ann)
    report = session.evaluate(inputs, labels, timesteps=args.timesteps, ann=args.ann,
                              batch_size=args.batch_size, progress=_show_progress(args))
    if session.ttfs is not None:
        print(f"{args.model}: {report.samples} samples, TTFS model {session.ttfs['model']}, "
              f"providers {session.providers[0]}")
        print(report.ttfs_summary())
    else:
        print(f"{args.model}: {report.samples} samples, T = {report.timesteps}, providers {session.providers[0]}")
        print(report.table())
        if args.stats:
            print()
            print(report.energy.table())
    if args.json_path:
        from onnx_snn.outputs import write_text_atomic

        write_text_atomic(args.json_path, json.dumps(report.to_json(), indent=2))
    if args.plot is not None:
        from onnx_snn.plots import write_eval_plots

        for path in write_eval_plots(report, args.plot, firing_rates=args.stats):
            print(f"wrote {path}")
    return 0


def _quantize_weights(args: argparse.Namespace) -> int:
    from onnx_snn.outputs import check_io, external_data_path, model_roles
    from onnx_snn.quantize import ann_accuracy, quantize_model, summary

    check_io(reads={**model_roles("the model", args.model), "--data": args.data},
             writes={"-o": args.output, "the external data of -o": external_data_path(args.output)})

    baseline = ann_accuracy(args.model, args.data) if args.data is not None else None  # bad data: no output
    result = quantize_model(args.model, args.output, levels=args.levels, on_off_ratio=args.on_off_ratio,
                            per_channel=args.per_channel)
    print("\n".join(summary(result)))
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {args.output}")
    if baseline is not None:
        before, samples = baseline
        after, _ = ann_accuracy(args.output, args.data)
        print(f"accuracy on {samples} samples: before {before:.4f}, after {after:.4f} ({after - before:+.4f})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import onnx

    from onnx_snn.modelio import load_model

    model = load_model(args.model)
    meta = {p.key: p.value for p in model.metadata_props}
    ops = Counter(f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in model.graph.node)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in model.opset_import)
    print(f"{args.model}: producer {model.producer_name or '?'} {model.producer_version}, opset {opsets}")
    print("inputs:  " + ", ".join(_value_text(v) for v in model.graph.input))
    print("outputs: " + ", ".join(_value_text(v) for v in model.graph.output))
    print("ops:     " + ", ".join(f"{op} x{count}" for op, count in sorted(ops.items())))
    if model.functions:
        print("local functions: " + ", ".join(f"{f.domain}.{f.name}" for f in model.functions))
    lambdas = json.loads(meta.get("onnx_snn.lambda", "{}"))
    for node in model.graph.node:
        if node.domain == "snn":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            attrs = {k: v.decode() if isinstance(v, bytes) else float(f"{v:.6g}") if isinstance(v, float) else v
                     for k, v in attrs.items()}
            lam = lambdas.get(node.name, [])
            lam_text = (f"λ = {lam[0]:.4g}" if len(lam) == 1 else
                        f"λ per channel: {len(lam)} values in [{min(lam):.4g}, {max(lam):.4g}]") if lam else ""
            print(f"  {node.op_type} {node.name}: {attrs} {lam_text}")
    if "onnx_snn.neuron" in meta:
        chosen = json.loads(meta["onnx_snn.neuron"])
        asked = json.loads(meta.get("onnx_snn.options", "{}")).get("neuron", chosen)
        print(f"neuron type: {chosen}" + (f" (chosen by --neuron {asked})" if asked != chosen else ""))
    if "onnx_snn.ttfs" in meta:
        print(_ttfs_text(json.loads(meta["onnx_snn.ttfs"])))
    if "onnx_snn.options" in meta:
        print(f"compile options: {meta['onnx_snn.options']}")
        for note in json.loads(meta.get("onnx_snn.notes", "[]")):
            print(f"note: {note}")
    return 0


def _ttfs_text(ttfs: dict) -> str:
    """TTFS windows, latency and audit, one line per layer."""
    lines = [f"TTFS model {ttfs['model']}, zeta {ttfs['zeta']}, t_read {ttfs['t_read']:.6g}"]
    for name, layer in ttfs["layers"].items():
        audit = ttfs.get("audit", {}).get(name, {})
        lines.append(f"  {name}: X = {layer['X']:.6g}, window [{layer['t_min']:.6g}, {layer['t_max']:.6g}], "
                     f"calibration activations above B_n: {audit.get('above_window', '?')}"
                     + (f", early spikes: {audit['early_spikes']}" if ttfs["model"] == "a" else ""))
    return "\n".join(lines)


def _value_text(value) -> str:
    dims = [d.dim_param or str(d.dim_value) for d in value.type.tensor_type.shape.dim]
    return f"{value.name} [{', '.join(dims)}]"


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np

    from onnx_snn.api import compile_model
    from onnx_snn.options import CompileOptions
    from onnx_snn.runtime import Session

    data_dir = Path(__file__).parent / "data"
    ann = data_dir / "digits_mlp.onnx"
    data = np.load(data_dir / "digits_test.npz")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.output or os.path.join(tmp, "digits_mlp.snn.onnx")
        compile_model(ann, out, CompileOptions(timesteps=args.timesteps), calibration=data["x_calib"])
        report = Session(out).evaluate(data["x"], data["y"], ann=ann, progress=False)
        print(f"onnx-snn demo: the shipped digits MLP ({ann.name}) compiled to IF neurons, "
              f"{report.samples} test digits")
        print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
