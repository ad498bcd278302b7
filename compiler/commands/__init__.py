"""The `onnx-snn` subcommands, one module each, each with `run(args) -> int` (parsers: onnx_snn.cli)."""
