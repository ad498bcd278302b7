"""`onnx-snn inspect`: the ops, neuron layers and scales of a model, and what onnx-snn recorded in it."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import onnx

from onnx_snn import metadata as model_metadata
from onnx_snn.modelio import load_model
from onnx_snn.target_gap import describe_record

#: how inspect and compile print a pipeline
PIPELINE_ARROW = " → "


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    meta = model_metadata.read(model_metadata.props_of(model), str(args.model))
    ops = Counter(f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in model.graph.node)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in model.opset_import)
    print(f"{args.model}: producer {model.producer_name or '?'} {model.producer_version}, opset {opsets}")
    print("inputs:  " + ", ".join(_value_text(v) for v in model.graph.input))
    print("outputs: " + ", ".join(_value_text(v) for v in model.graph.output))
    print("ops:     " + ", ".join(f"{op} x{count}" for op, count in sorted(ops.items())))
    if model.functions:
        print("local functions: " + ", ".join(f"{f.domain}.{f.name}" for f in model.functions))
    lambdas = meta.get("lambda") or {}
    for node in model.graph.node:
        if node.domain == "snn":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            attrs = {
                k: v.decode() if isinstance(v, bytes) else float(f"{v:.6g}") if isinstance(v, float) else v
                for k, v in attrs.items()
            }
            lam = lambdas.get(node.name, [])
            lam_text = (
                (
                    f"λ = {lam[0]:.4g}"
                    if len(lam) == 1
                    else f"λ per channel: {len(lam)} values in [{min(lam):.4g}, {max(lam):.4g}]"
                )
                if lam
                else ""
            )
            print(f"  {node.op_type} {node.name}: {attrs} {lam_text}")
    if "neuron" in meta:
        chosen = meta["neuron"]
        asked = (meta.get("options") or {}).get("neuron", chosen)
        print(f"neuron type: {chosen}" + (f" (chosen by --neuron {asked})" if asked != chosen else ""))
    if meta.get("passes"):
        print("pipeline: " + PIPELINE_ARROW.join(meta["passes"]))
    if meta.get("ttfs"):
        print(_ttfs_text(meta["ttfs"]))
    if meta.get("timestep_search"):
        print(f"default T chosen by --target-gap: {describe_record(meta['timestep_search'])}")
    if "options" in meta:
        print(f"compile options: {json.dumps(meta['options'], sort_keys=True)}")
        for note in meta.get("notes") or []:
            print(f"note: {note}")
    return 0


def _ttfs_text(ttfs: dict) -> str:
    """TTFS windows, latency and audit, one line per layer."""
    lines = [f"TTFS model {ttfs['model']}, zeta {ttfs['zeta']}, t_read {ttfs['t_read']:.6g}"]
    for name, layer in ttfs["layers"].items():
        audit = ttfs.get("audit", {}).get(name, {})
        lines.append(
            f"  {name}: X = {layer['X']:.6g}, window [{layer['t_min']:.6g}, {layer['t_max']:.6g}], "
            f"calibration activations above B_n: {audit.get('above_window', '?')}"
            + (f", early spikes: {audit['early_spikes']}" if ttfs["model"] == "a" else "")
        )
    return "\n".join(lines)


def _value_text(value) -> str:
    dims = [d.dim_param or str(d.dim_value) for d in value.type.tensor_type.shape.dim]
    return f"{value.name} [{', '.join(dims)}]"
