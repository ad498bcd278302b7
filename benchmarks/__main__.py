"""One entry point for the benchmark harness: `python -m benchmarks NAME [ARGS...]`.

Each NAME is a module of this package with `main(argv) -> int`; its results go to
benchmarks/*.json and its section of BENCHMARKS.md. Run from the repository root with onnx-snn
installed (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import importlib
import sys

#: benchmark name -> (module, what it measures)
BENCHMARKS = {
    "zoo": ("benchmarks.zoo", "a reference net: accuracy vs T, and time vs T x ANN (optionally vs spikingjelly)"),
    "memory": ("benchmarks.memory", "peak memory of chunked runs, eval under the default budget, calibration"),
    "course": ("benchmarks.course", "the course MLP: analog/Poisson x max/spikenorm, rate sweep, crossbar weights"),
    "floor": ("benchmarks.floor", "the neuron-free floor: the SNN with every neuron swapped for its ANN op"),
    "blocked": ("benchmarks.blocked", "one IF conv layer kept in onnxruntime's blocked layout, against the Scan forms"),
    "gpu": ("benchmarks.gpu_bench", "the GPU benchmark (prepare here, run where onnxruntime-gpu has a CUDA device)"),
    "schedule": ("benchmarks.schedule", "signGD step-size schedules: the trained zoo's accuracy, deep nets' error"),
    "int8": ("benchmarks.int8", "--int8-synapses on the CPU: its dense layers, whole SNNs, and why Convs stay float"),
    "conversion": ("benchmarks.conversion", "IF conversion on nets we did not tune for, per option, vs spikingjelly"),
    "paired": ("benchmarks.paired", "the default compile against spikingjelly image by image: McNemar, clipped ANN"),
    "coverage": ("benchmarks.coverage", "vision families and onnx's light zoo: compile, batch 1/2/16, fidelity"),
    "nir": (
        "benchmarks.nir_interop",
        "NIR: exports run by snnTorch and sinabs, their nets read by import-nir, round trip",
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch `argv[0]` to its benchmark's main with the remaining arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BENCHMARKS:
        width = max(map(len, BENCHMARKS))
        listing = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in BENCHMARKS.items())
        print(f"usage: python -m benchmarks NAME [ARGS...]\n\n{listing}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(BENCHMARKS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
