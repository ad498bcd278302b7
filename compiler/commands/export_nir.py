"""`onnx-snn export-nir`: a compiled rate-coded SNN (binary IF neurons) as a NIR graph (.nir, HDF5)."""

from __future__ import annotations

import argparse

from onnx_snn.nir_io.export import export_nir
from onnx_snn.outputs import check_io, model_roles


def run(args: argparse.Namespace) -> int:
    check_io(reads=model_roles("the model", args.model), writes={"-o": args.output})
    result = export_nir(args.model, args.output, args.dialect)
    nodes = ", ".join(f"{kind} x{count}" for kind, count in sorted(result.nodes.items()))
    print(f"wrote {args.output} for {result.dialect}: {nodes}")
    for note in result.notes:
        print(f"note: {note}")
    return 0
