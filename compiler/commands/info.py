"""`onnx-snn info`: which onnxruntime build is active, its providers, and whether CUDA works."""

from __future__ import annotations

import argparse
import json

from onnx_snn.providers import active_build, report


def run(args: argparse.Namespace) -> int:
    """Print the report (`--json`: as JSON); exit 1 when it has warnings (e.g. both onnxruntime
    and onnxruntime-gpu installed, or onnxruntime-gpu that cannot start CUDA)."""
    build = active_build()
    print(json.dumps(build, indent=2) if args.json else report(build))
    return 1 if build["warnings"] else 0
