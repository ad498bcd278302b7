"""`onnx-snn import-nir`: a NIR graph (.nir) of IF, LIF, CubaLIF and LI neurons as an onnx-snn SNN."""

from __future__ import annotations

import argparse

from onnx_snn.nir_io.importer import import_nir
from onnx_snn.outputs import check_io, external_data_path


def run(args: argparse.Namespace) -> int:
    check_io(
        reads={"the NIR graph": args.graph},
        writes={"-o": args.output, "the external data of -o": external_data_path(args.output)},
    )
    result = import_nir(args.graph, args.output, args.dialect, args.timesteps, args.dt)
    nodes = ", ".join(f"{kind} x{count}" for kind, count in sorted(result.nodes.items()))
    print(f"read {args.graph} as {result.dialect} (dt = {result.dt:g}): {nodes}")
    print(f"wrote {args.output}: {len(result.neuron_layers)} spiking layers, T = {args.timesteps}")
    return 0
