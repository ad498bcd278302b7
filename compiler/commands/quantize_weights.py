"""`onnx-snn quantize-weights`: constrain an ANN's weights to a memristive crossbar's levels."""

from __future__ import annotations

import argparse

from onnx_snn.outputs import check_io, external_data_path, model_roles
from onnx_snn.quantize import ann_accuracy, quantize_model, summary


def run(args: argparse.Namespace) -> int:
    check_io(
        reads={**model_roles("the model", args.model), "--data": args.data},
        writes={"-o": args.output, "the external data of -o": external_data_path(args.output)},
    )

    baseline = ann_accuracy(args.model, args.data) if args.data is not None else None  # bad data: no output
    result = quantize_model(
        args.model, args.output, levels=args.levels, on_off_ratio=args.on_off_ratio, per_channel=args.per_channel
    )
    print("\n".join(summary(result)))
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {args.output}")
    if baseline is not None:
        before, samples = baseline
        after, _ = ann_accuracy(args.output, args.data)
        print(f"accuracy on {samples} samples: before {before:.4f}, after {after:.4f} ({after - before:+.4f})")
    return 0
