"""`onnx-snn eval`: accuracy of a compiled SNN at every timestep, with optional stats, JSON and plots."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from onnx_snn.arrays import labels_of, load_arrays, model_inputs
from onnx_snn.budget import parse_size
from onnx_snn.commands.compile import show_progress
from onnx_snn.errors import SnnError
from onnx_snn.options import check_target_gap
from onnx_snn.outputs import check_io, model_roles, same_file, write_text_atomic
from onnx_snn.plots import ACCURACY_PNG, FIRING_RATE_PNG, require_matplotlib, write_eval_plots
from onnx_snn.runtime import EvalReport, Session
from onnx_snn.runtime.ray_eval import evaluate_on_ray, require_ray
from onnx_snn.target_gap import choose_timesteps


def run(args: argparse.Namespace) -> int:
    if args.ann is not None and same_file(args.ann, args.model):
        raise SnnError("--ann names the SNN itself; pass the source ANN", path=args.ann)
    check_target_gap("--find-t", args.find_t)
    if args.workers is not None and args.ray is None:
        raise SnnError("--workers sets the number of Ray workers; pass --ray too")
    if args.ray is not None:
        require_ray()
    if args.find_t is not None and args.ann is None:
        raise SnnError("--find-t measures the gap to the ANN; pass --ann with the source ANN")
    plot_dir = Path(args.plot) if args.plot is not None else None
    if plot_dir is not None and plot_dir.exists() and not plot_dir.is_dir():
        raise SnnError("--plot must name a folder, and this is a file", path=args.plot)
    check_io(
        reads={**model_roles("the model", args.model), "--data": args.data, **model_roles("--ann", args.ann)},
        writes={
            "--json": args.json_path,
            "--plot": [plot_dir / ACCURACY_PNG, plot_dir / FIRING_RATE_PNG]
            if plot_dir is not None and plot_dir.is_dir()
            else None,
        },
    )
    budget = parse_size(args.max_memory) if args.max_memory is not None else None
    session = Session(args.model, max_memory=budget)
    if args.stats and not (session.spike_names and session.activity is not None):
        raise SnnError(
            "has no spike statistics; compile it with --stats to get the activity and energy report", path=args.model
        )
    if args.plot is not None:
        require_matplotlib()
        if session.ttfs is not None:
            raise SnnError(
                "is a TTFS model with one read-out; --plot draws accuracy over the timesteps of rate-coded models",
                path=args.model,
            )
    if args.find_t is not None and session.ttfs is not None:
        raise SnnError("is a TTFS model with one read-out; --find-t chooses T for rate-coded models", path=args.model)
    arrays = load_arrays(args.data, session.max_memory)
    inputs = model_inputs(arrays, session.input_names, args.data)
    labels = labels_of(arrays, args.data)
    if args.ann is not None and not Path(args.ann).is_file():
        raise SnnError("ANN file not found; check the --ann path", path=args.ann)
    report, where = _evaluated(session, inputs, labels, args, budget)
    if session.ttfs is not None:
        print(f"{args.model}: {report.samples} samples, TTFS model {session.ttfs['model']}, {where}")
        print(report.ttfs_summary())
    else:
        print(f"{args.model}: {report.samples} samples, T = {report.timesteps}, {where}")
        print(report.table())
        if args.find_t is not None:
            assert report.agreement is not None  # --find-t needs --ann (checked above)
            print(f"--find-t: {choose_timesteps(report.agreement, report.samples, args.find_t).describe()}")
        if args.stats:
            print()
            assert report.energy is not None  # --stats needs the spike statistics (checked above)
            print(report.energy.table())
    if args.json_path:
        write_text_atomic(args.json_path, json.dumps(report.to_json(), indent=2))
    if args.plot is not None:
        for path in write_eval_plots(report, args.plot, firing_rates=args.stats):
            print(f"wrote {path}")
    return 0


def _evaluated(
    session: Session, inputs: dict[str, np.ndarray], labels: np.ndarray, args: argparse.Namespace, budget: int | None
) -> tuple[EvalReport, str]:
    """The report of `session.evaluate`, or with --ray of its shards on Ray workers (the same bit for
    bit), and where it ran: "providers P", or "N Ray workers, providers P"."""
    options = dict(timesteps=args.timesteps, ann=args.ann, batch_size=args.batch_size, progress=show_progress(args))
    if args.ray is None:
        return session.evaluate(inputs, labels, **options), f"providers {session.providers[0]}"
    report, providers = evaluate_on_ray(
        session, inputs, labels, **options, max_memory=budget, address=args.ray, workers=args.workers
    )
    workers = f"{len(providers)} Ray worker{'s' if len(providers) > 1 else ''}"
    return report, f"{workers}, providers {', '.join(sorted(set(providers)))}"
