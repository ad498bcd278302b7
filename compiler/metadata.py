"""The metadata a compiled model carries: a versioned schema of JSON values in the model's
metadata_props, each under `onnx_snn.<key>`.

One writer (`write`, called by the pipeline's emit step and by quantize-weights) and one reader
(`read`, used by `Session` and `inspect`). SCHEMA_VERSION grows when a key changes meaning; a
model without `onnx_snn.schema` was written before the schema had a number and reads as 0 (its
keys are those of version 1). A model from a newer schema is refused with a hint to upgrade.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import onnx

from onnx_snn.errors import SnnError

PREFIX = "onnx_snn."
SCHEMA_VERSION = 1
#: key -> what it holds (version 1); `write` refuses any other key
KEYS: dict[str, str] = {
    "schema": "this schema's version",
    "version": "the onnx-snn version that wrote the model",
    "options": "the compile options (CompileOptions.as_metadata)",
    "notes": "the compiler's remarks, as compile printed them",
    "neuron": "the neuron family compiled with: if, signgd or ttfs",
    "passes": "the passes that ran, in order (compiler/pipeline.py)",
    "neuron_layers": "the names of the neuron layers, in graph order",
    "lambda": "per scaled layer, its scale λ (per channel or one value)",
    "calibration_samples": "how many calibration samples the statistics saw",
    "activity": "per neuron layer, its fan-out for the synaptic-operation count",
    "spikenorm": "IF: the layers spikenorm balanced and the T it balanced them for",
    "weight_quantization": "crossbar levels, ON/OFF ratio and per-layer statistics",
    "int8_synapses": "--int8-synapses: each dense layer run on the integer kernel and the grain k of its input "
    "(spikes n/k)",
    "ttfs": "TTFS: model, ζ, t_read, per-layer windows and the audit",
    "timestep_search": "--target-gap: the target, the chosen default T, its gap, whether it met the "
    "target, the samples and largest T evaluated, and the --timesteps the passes tuned for",
}


def write(model: onnx.ModelProto, entries: Mapping[str, Any], keep_others: bool = False) -> None:
    """Set the model's metadata to `entries` (each JSON-encoded under PREFIX + key) plus the
    schema version; None values are left out. `keep_others` keeps props of other keys (and of
    other tools); else the metadata holds exactly these."""
    unknown = set(entries) - set(KEYS)
    if unknown:
        raise ValueError(f"metadata keys outside the schema: {sorted(unknown)}")
    props = {p.key: p.value for p in model.metadata_props} if keep_others else {}
    props.update(
        {
            PREFIX + key: json.dumps(value, sort_keys=True)
            for key, value in {**entries, "schema": SCHEMA_VERSION}.items()
            if value is not None
        }
    )
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)


def read(props: Mapping[str, str], source: str) -> dict[str, Any]:
    """The decoded onnx-snn entries of a model's metadata `props` (key -> JSON text), keyed
    without PREFIX; SnnError if one is not valid JSON or the schema is newer than this reader."""
    entries = {}
    for name, text in props.items():
        if not name.startswith(PREFIX) or name[len(PREFIX) :] not in KEYS:
            continue
        try:
            entries[name[len(PREFIX) :]] = json.loads(text)
        except json.JSONDecodeError:
            raise SnnError(f"its metadata {name} is not valid JSON; recompile the model", path=source) from None
    schema = entries.get("schema", 0)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise SnnError(
            f"its onnx-snn metadata has schema {schema!r}, newer than this onnx-snn reads ({SCHEMA_VERSION})",
            path=source,
            hint="upgrade onnx-snn",
        )
    return entries


def props_of(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata_props as a dict (key -> value)."""
    return {p.key: p.value for p in model.metadata_props}
