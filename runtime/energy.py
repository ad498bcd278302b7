"""The activity and energy report of a rate-coded SNN (`onnx-snn eval --stats`).

Per layer: firing rate (spikes per neuron per step) and synaptic operations (accumulates: spikes
× non-zero fan-out, summed over the steps; see passes/common/activity_stats.py). In total: those, the
multiply-accumulates of layers that read analog values (the encoded input: once per sample when
the input is static and the first layer's current is computed once, every step otherwise), and
the dense ANN's multiply-accumulates for comparison.

Energy, two estimates, both named in the report:
- `45nm compute-only`: 0.9 pJ per accumulate and 4.6 pJ per multiply-accumulate, the 32-bit
  float add (0.9 pJ) and multiply (3.7 pJ) of Horowitz, "Computing's energy problem", ISSCC 2014,
  45 nm, as used across the SNN literature (e.g. Rathi & Roy 2020). Memory is not charged.
- `45nm with SRAM traffic`: the same plus 5 pJ per 32-bit access to an 8 KB SRAM (Horowitz:
  10 pJ per 64-bit access): every operation reads its weight; every SNN neuron reads and writes
  its membrane at every step; every ANN neuron writes its activation once.
These are conventions for comparing an SNN with its ANN, not measurements of any chip.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx_snn.ir.contract import SPIKES_PREFIX, SYNOPS_PREFIX

ACCUMULATE_PJ = 0.9
MULTIPLY_ACCUMULATE_PJ = 4.6
SRAM_ACCESS_PJ = 5.0
COMPUTE_ONLY = "45nm compute-only"
WITH_MEMORY = "45nm with SRAM traffic"


@dataclass(frozen=True)
class LayerActivity:
    """One neuron layer per sample over all steps."""

    name: str
    neurons: int
    spikes: float
    synops: float
    firing_rate: float  # spikes per neuron per step


@dataclass(frozen=True)
class EnergyReport:
    """Activity per layer and the SNN's and ANN's operations and energy per sample, at T steps."""

    timesteps: int
    layers: list[LayerActivity]
    accumulates: float
    analog_macs: float
    ann_macs: float
    energy_pj: dict[str, dict[str, float]]

    @property
    def firing_rate(self) -> float:
        """Spikes per neuron per step over all layers."""
        neurons = sum(layer.neurons for layer in self.layers)
        return sum(layer.spikes for layer in self.layers) / (neurons * self.timesteps) if neurons else 0.0

    def table(self) -> str:
        """Plain-text tables: layers, then totals and energy."""
        width = max([len("layer")] + [len(layer.name) for layer in self.layers])
        lines = [f"{'layer':<{width}}  {'neurons':>9}  {'firing rate':>11}  {'spikes':>12}  {'synaptic ops':>13}"]
        for layer in self.layers:
            lines.append(
                f"{layer.name:<{width}}  {layer.neurons:>9}  {layer.firing_rate:>11.4f}  "
                f"{layer.spikes:>12.1f}  {layer.synops:>13.1f}"
            )
        lines.append(
            f"{'total':<{width}}  {sum(layer.neurons for layer in self.layers):>9}  {self.firing_rate:>11.4f}  "
            f"{sum(layer.spikes for layer in self.layers):>12.1f}  {self.accumulates:>13.1f}"
        )
        lines += [
            "",
            f"per sample at T = {self.timesteps}: {self.accumulates:.4g} accumulates + "
            f"{self.analog_macs:.4g} multiply-accumulates (analog input); ANN {self.ann_macs:.4g} "
            "multiply-accumulates",
        ]
        for name, energy in self.energy_pj.items():
            lines.append(
                f"energy ({name}): SNN {energy['snn'] / 1e6:.4g} µJ, ANN {energy['ann'] / 1e6:.4g} µJ, "
                f"SNN / ANN {energy['snn'] / energy['ann']:.3g}"
                if energy["ann"]
                else f"energy ({name}): SNN {energy['snn'] / 1e6:.4g} µJ"
            )
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The report as plain JSON types."""
        return {
            "timesteps": self.timesteps,
            "firing_rate": self.firing_rate,
            "layers": [layer.__dict__ for layer in self.layers],
            "accumulates": self.accumulates,
            "analog_macs": self.analog_macs,
            "ann_macs": self.ann_macs,
            "energy_pj": self.energy_pj,
            "constants_pj": {
                "accumulate": ACCUMULATE_PJ,
                "multiply_accumulate": MULTIPLY_ACCUMULATE_PJ,
                "sram_access": SRAM_ACCESS_PJ,
            },
        }


def energy_report(
    timesteps: int, spikes_per_sample: dict[str, float], synops_per_sample: dict[str, float], activity: dict
) -> EnergyReport:
    """The report from per-sample `spikes/<layer>` and `synops/<layer>` means over T steps and the
    compile-time `activity` metadata (passes/common/activity_stats.py)."""
    layers = []
    for name, neurons in activity["neurons"]:
        spikes = spikes_per_sample.get(SPIKES_PREFIX + name, 0.0)
        layers.append(
            LayerActivity(
                name,
                neurons,
                spikes,
                synops_per_sample.get(SYNOPS_PREFIX + name, 0.0),
                spikes / (neurons * timesteps) if neurons else 0.0,
            )
        )
    accumulates = sum(layer.synops for layer in layers)
    per_step = set(activity["analog_per_step"])
    analog = float(sum(m * (timesteps if op in per_step else 1) for op, m in activity["analog_macs"].items()))
    ann = float(sum(activity["ann_macs"].values()))
    neurons = sum(layer.neurons for layer in layers)
    snn_compute = ACCUMULATE_PJ * accumulates + MULTIPLY_ACCUMULATE_PJ * analog
    ann_compute = MULTIPLY_ACCUMULATE_PJ * ann
    energy = {
        COMPUTE_ONLY: {"snn": snn_compute, "ann": ann_compute},
        WITH_MEMORY: {
            "snn": snn_compute + SRAM_ACCESS_PJ * (accumulates + analog + 2 * neurons * timesteps),
            "ann": ann_compute + SRAM_ACCESS_PJ * (ann + neurons),
        },
    }
    return EnergyReport(timesteps, layers, accumulates, analog, ann, energy)
