"""How each NIR reader discretizes NIR's continuous-time neurons: the dialects both directions follow.

NIR defines IF (dv/dt = R·I), LIF (τ·dv/dt = v_leak − v + R·I), LI and CubaLIF as ODEs with a
spike where v > v_threshold and a reset to v_reset; it fixes neither the step dt nor how a step is
taken, and each framework's importer makes its own choice. What we found in their sources
(snntorch 1.0.0, sinabs 2.0.3, nirtorch 2.6):

- `snntorch`: `snntorch/import_nir.py` `_nir_to_snntorch_module`. dt = 1e-4; nir.LIF becomes
  `snn.Leaky(beta = 1 − dt/τ, threshold = v_threshold / (r·dt/τ) unless r·dt/τ ≈ 1,
  reset_mechanism="zero", reset_delay=False)` (asserts v_leak = 0 and one threshold per layer;
  ignores v_reset); nir.CubaLIF becomes `snn.Synaptic(alpha = 1 − dt/τ_syn, beta = 1 − dt/τ_mem,
  threshold / (w_in·dt/τ_syn))` (asserts r = τ_mem/dt); spikes where mem > threshold
  (`snntorch/_neurons/neurons.py` `fire`, `surrogate.py` ATan: `input_ > 0`); the membrane starts
  at 0. nir.IF becomes `snn.Leaky(beta=0.9, init_hidden=False)`, a leaky neuron whose (spikes,
  membrane) tuple nirtorch passes on as one tensor: not usable, so IF neurons are written for it
  as the τ → ∞ limit of a LIF. nir.Flatten becomes `torch.nn.Flatten(start_dim, end_dim)` with
  NIR's batch-free dims, which flattens the batch too: the imported net runs one sample at a time.
- `sinabs`: `sinabs/nir.py` `_import_sinabs_module`. τ counts steps (dt = 1): nir.LIF becomes
  `LIFSqueeze(tau_mem=τ, norm_input=False)`, v ← exp(−1/τ)·v + x (r ignored; asserts v_leak =
  0; `any(v_leak)` fails for parameters of more than one axis, so only on 1-D layers); nir.IF
  becomes `IAFSqueeze(spike_threshold=v_threshold, min_v_mem=−v_threshold)`: v ← max(v + x, −θ)
  after the spikes (r ignored); nir.LI becomes `ExpLeakSqueeze` (asserts r = 1, v_leak = 0).
  Every neuron emits ⌊v/θ⌋ spikes when v > 0 (`activation/spike_generation.py` MultiSpike: v ≥ θ
  fires) and subtracts θ per spike (`activation/reset_mechanism.py` MembraneSubtract), whatever
  v_reset says: onnx-snn's snn.MultiSpikeIFNeuron with v_min = −1. No AvgPool2d, Scale or Linear
  (Affine, Conv2d, SumPool2d, Flatten only). Its graph executor (nirtorch.load's `GraphExecutor`,
  `nirtorch/graph_executor.py`) runs the nodes in the order of `graph_utils.trace_execution`, a
  depth-first preorder from the input that takes each node's consumers in the order of the edges;
  a node whose input has not run yet this step reads that input's value from the step before,
  and the net's output is the last node run.
- `norse`: `norse/torch/utils/import_nir.py` `_import_norse_module` (norse 1.1.0). nir.IF becomes
  `IAFCell(IAFParameters(v_th=v_threshold))`: v ← v + x (r and dt ignored), a spike where
  v − v_th > 0 (`functional/threshold.py` heaviside), then v ← (1 − z)·v + z·v_reset with its own
  v_reset = 0 (NIR's ignored) (`functional/iaf.py` `iaf_feed_forward_step`). No AvgPool2d or Scale:
  SumPool2d becomes `LPPool2d(1, ...)`, an average pool times k² (exact on 0/1 spikes over a 2×2
  window). nir.Flatten becomes `torch.nn.Flatten(start_dim, end_dim)`, which flattens the batch as
  snnTorch's does; its executor is nirtorch's `GraphExecutor`, as sinabs's. Its LIF, LI and
  CubaLIF neurons integrate at dt = 1e-3 by its own box-filter forms, which import-nir does not
  reproduce: only its IF is read.
- `nir`: onnx-snn's reading of the spec, forward Euler at step dt (default 1): IF v ← v + r·dt·x,
  LIF v ← v + (dt/τ)(v_leak − v + r·x), LI the same without spikes, CubaLIF i ← i + (dt/τ_syn)(w_in·x
  − i) then v ← v + (dt/τ_mem)(v_leak − v + r·i); a spike where v > v_threshold, then v ← v_reset.

A dialect's `keeps` lists what its reader honours of v_reset and r; anything it ignores must hold
its default (v_reset = 0, r = 1) or the graph is refused, naming the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from onnx_snn.errors import SnnError

#: snnTorch's hard-coded step (snntorch/import_nir.py and export_nir.py)
SNNTORCH_DT = 1e-4
#: τ of the LIF that export writes as an IF neuron for snnTorch: β = 1 − dt/τ = 1 − 2^-60 rounds to
#: exactly 1.0 in float64, and r = τ/dt = 2^60 makes the input weight r·dt/τ exactly 1
IF_LIMIT_SCALE = 2.0**60


@dataclass(frozen=True)
class Dialect:
    """What one NIR reader does with NIR's nodes (the module docstring has the sources).

    `label`: how messages name the reader; `reads`: the function read (its source file); `dt`: the
    step in NIR's time unit; `leak`: "euler" (β = 1 − dt/τ) or "exp" (β = exp(−dt/τ));
    `inclusive`: a spike where v ≥ θ (else v > θ); `spikes`: "single" (one a step) or "multi"
    (⌊v/θ⌋); `reset`: "hard" (to v_reset, or 0) or "soft" (minus θ per spike); `if_floor`: IF
    membranes clamped at −θ; `keeps`: the parameters it honours ("v_reset", "r"); `neurons`: the
    NIR neuron nodes it maps faithfully; `layers`: its other NIR nodes; `if_node`: the node
    export writes for an onnx-snn IF neuron ("IF", or "LIF" for the τ → ∞ limit); `batched`:
    whether it runs a batch at once (False: one sample at a time); `joins`: whether its executor
    runs a node with several inputs after all of them (False: it runs the nodes in depth-first
    preorder of the edges as written, sinabs's; export orders them, export.depth_first_edges).
    """

    name: str
    label: str
    reads: str
    dt: float
    leak: str
    inclusive: bool
    spikes: str
    reset: str
    if_floor: bool
    keeps: frozenset[str]
    neurons: frozenset[str]
    layers: frozenset[str]
    if_node: str
    batched: bool = True
    #: whether its executor runs a node with several inputs (a residual join) after all of them
    joins: bool = True


DIALECTS: dict[str, Dialect] = {
    "nir": Dialect(
        "nir",
        "NIR (the spec, as onnx-snn reads it)",
        "onnx-snn's reading of the NIR spec: forward Euler at step dt",
        dt=1.0,
        leak="euler",
        inclusive=False,
        spikes="single",
        reset="hard",
        if_floor=False,
        keeps=frozenset({"v_reset", "r"}),
        neurons=frozenset({"IF", "LIF", "CubaLIF", "LI"}),
        layers=frozenset({"Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "Scale"}),
        if_node="IF",
    ),
    "snntorch": Dialect(
        "snntorch",
        "snnTorch's importer",
        "snntorch.import_nir.import_from_nir (snntorch/import_nir.py)",
        dt=SNNTORCH_DT,
        leak="euler",
        inclusive=False,
        spikes="single",
        reset="hard",
        if_floor=False,
        keeps=frozenset({"r"}),
        neurons=frozenset({"LIF", "CubaLIF"}),
        layers=frozenset({"Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten"}),
        if_node="LIF",
        batched=False,
    ),
    "norse": Dialect(
        "norse",
        "Norse's importer",
        "norse.torch.from_nir (norse/torch/utils/import_nir.py)",
        dt=1e-3,
        leak="euler",
        inclusive=False,
        spikes="single",
        reset="hard",
        if_floor=False,
        keeps=frozenset(),
        neurons=frozenset({"IF"}),
        layers=frozenset({"Affine", "Linear", "Conv2d", "SumPool2d", "Flatten"}),
        if_node="IF",
        batched=False,
        joins=False,
    ),
    "sinabs": Dialect(
        "sinabs",
        "sinabs's importer",
        "sinabs.from_nir (sinabs/nir.py)",
        dt=1.0,
        leak="exp",
        inclusive=True,
        spikes="multi",
        reset="soft",
        if_floor=True,
        keeps=frozenset(),
        neurons=frozenset({"IF", "LIF", "LI"}),
        layers=frozenset({"Affine", "Conv2d", "SumPool2d", "Flatten"}),
        if_node="IF",
        joins=False,
    ),
}


@dataclass
class Discrete:
    """One NIR neuron node as discrete per-step parameters (arrays broadcastable to its shape),
    for the snn ops of compiler/ir/leaky.py: `op` ("LIFNeuron", "CubaLIFNeuron", "LINeuron"), the
    parameter tensors by input name, and the op's attributes."""

    op: str
    params: dict[str, np.ndarray]
    attrs: dict[str, str]


def strict_threshold(threshold: np.ndarray | float) -> np.ndarray:
    """The float32 t with [v > t] ≡ [v ≥ threshold] exactly for every float32 v: the float just below."""
    return np.nextafter(np.asarray(threshold, dtype=np.float32), np.float32(-np.inf))


def discretize(
    name: str, kind: str, node: Any, dialect: Dialect, dt: float | None = None, source: str | None = None
) -> Discrete:
    """The discrete form of the NIR neuron `node` (of NIR type `kind`, called `name`, in the file
    `source`) as `dialect`'s reader simulates it, at step `dt` (None: the dialect's). SnnError,
    naming the node, where the reader cannot read it faithfully or ignores a parameter that is not
    at its default."""
    step = dialect.dt if dt is None else dt
    reader = _READERS.get(kind)
    try:
        if reader is None or kind not in dialect.neurons:
            raise SnnError(f"{dialect.label} has no faithful {kind} neuron", hint=_other_dialects(kind, dialect))
        return reader(node, dialect, step)
    except SnnError as exc:
        raise SnnError(exc.message, path=source, node=name, op=kind, hint=exc.hint) from None


def _other_dialects(kind: str, dialect: Dialect) -> str:
    others = [d.name for d in DIALECTS.values() if kind in d.neurons and d is not dialect]
    return f"read it with --from {' or '.join(others)}" if others else "NIR neurons read: IF, LIF, CubaLIF, LI"


def _array(node: Any, field: str) -> np.ndarray:
    return np.asarray(getattr(node, field), dtype=np.float64)


def _require(ok: bool, dialect: Dialect, what: str) -> None:
    """SnnError unless `ok`: `what` is a parameter the reader ignores or refuses (discretize names the node)."""
    if not ok:
        raise SnnError(
            f"{what}, which {dialect.label} ignores or refuses",
            hint="read it with --from nir" if dialect.name != "nir" else None,
        )


def _check_ignored(node: Any, dialect: Dialect) -> None:
    """Parameters the reader ignores must hold their defaults (v_reset = 0, r = 1)."""
    if "v_reset" not in dialect.keeps and hasattr(node, "v_reset"):
        _require(bool(np.all(_array(node, "v_reset") == 0)), dialect, "v_reset is not 0")
    if "r" not in dialect.keeps:
        _require(bool(np.all(_array(node, "r") == 1)), dialect, "r is not 1")


def _decay(tau: np.ndarray, dialect: Dialect, dt: float) -> np.ndarray:
    """β of a time constant τ: 1 − dt/τ (euler, float64) or exp(−dt/τ) (exp, in float32 as sinabs)."""
    if dialect.leak == "exp":  # as torch.exp(-1.0 / tau) in float32: the quotient rounded, then exp rounded
        return np.exp((np.float32(-dt) / tau.astype(np.float32)).astype(np.float64)).astype(np.float32)
    if np.any(dt > tau):  # β < 0: the membrane would flip sign every step
        raise SnnError(
            f"a time constant τ = {float(np.min(tau)):g} is shorter than the step dt = {dt:g}, where forward Euler "
            "is unstable",
            hint="give --dt in the graph's time unit (snnTorch writes seconds with dt = 1e-4: --from snntorch)",
        )
    return 1.0 - dt / tau


def _spiking(
    threshold: np.ndarray, v_reset: np.ndarray, dialect: Dialect, floor: bool
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The spike and reset parameters and attributes of a spiking neuron under `dialect`."""
    params = {
        "threshold": threshold,
        "fire_threshold": strict_threshold(threshold) if dialect.inclusive else threshold.astype(np.float32),
        "v_reset": v_reset if "v_reset" in dialect.keeps else np.zeros_like(threshold),
        "v_min": -threshold if floor else np.full_like(threshold, -np.inf),
    }
    return params, {"reset": dialect.reset, "spikes": dialect.spikes}


def _snntorch_threshold(threshold: np.ndarray, w_scale: np.ndarray, dialect: Dialect) -> np.ndarray:
    """snnTorch's threshold: v_threshold / w_scale unless w_scale ≈ 1 (its `hack_w_scale`), one per layer."""
    scaled = threshold if np.allclose(w_scale, 1.0) else threshold / w_scale
    _require(np.unique(scaled).size == 1, dialect, "its thresholds differ between neurons")
    return scaled


def _read_if(node: Any, dialect: Dialect, dt: float) -> Discrete:
    _check_ignored(node, dialect)
    threshold = _array(node, "v_threshold")
    gain = _array(node, "r") * dt if "r" in dialect.keeps else np.ones_like(threshold)
    params, attrs = _spiking(threshold, _array(node, "v_reset"), dialect, floor=dialect.if_floor)
    return Discrete(
        "LIFNeuron", {"beta": np.ones_like(threshold), "gain": gain, "bias": 0 * threshold, **params}, attrs
    )


def _read_lif(node: Any, dialect: Dialect, dt: float) -> Discrete:
    _check_ignored(node, dialect)
    tau, r, v_leak, threshold = (_array(node, f) for f in ("tau", "r", "v_leak", "v_threshold"))
    beta = _decay(tau, dialect, dt)
    if dialect.name == "nir":
        gain, bias = r * dt / tau, v_leak * dt / tau
    else:
        _require(bool(np.all(v_leak == 0)), dialect, "v_leak is not 0")
        gain, bias = np.ones_like(tau), np.zeros_like(tau)
        if dialect.name == "snntorch":
            threshold = _snntorch_threshold(threshold, r * dt / tau, dialect)
    params, attrs = _spiking(threshold, _array(node, "v_reset"), dialect, floor=False)
    return Discrete("LIFNeuron", {"beta": beta, "gain": gain, "bias": bias, **params}, attrs)


def _read_cuba_lif(node: Any, dialect: Dialect, dt: float) -> Discrete:
    _check_ignored(node, dialect)
    fields = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in")
    tau_syn, tau_mem, r, v_leak, threshold, w_in = (_array(node, f) for f in fields)
    alpha, beta = _decay(tau_syn, dialect, dt), _decay(tau_mem, dialect, dt)
    if dialect.name == "nir":
        gain_syn, gain_mem, bias = w_in * dt / tau_syn, r * dt / tau_mem, v_leak * dt / tau_mem
    else:  # snnTorch: Synaptic, syn ← α·syn + x; mem ← β·mem + syn; thresholds over w_in·dt/τ_syn
        _require(bool(np.all(v_leak == 0)), dialect, "v_leak is not 0")
        _require(bool(np.allclose(r, tau_mem / dt)), dialect, "r is not τ_mem/dt")
        threshold = _snntorch_threshold(threshold, w_in * dt / tau_syn, dialect)
        gain_syn, gain_mem, bias = np.ones_like(tau_syn), np.ones_like(tau_mem), np.zeros_like(tau_mem)
    params, attrs = _spiking(threshold, _array(node, "v_reset"), dialect, floor=False)
    del params["v_min"], attrs["spikes"]  # one spike a step at most, no floor
    return Discrete(
        "CubaLIFNeuron",
        {"alpha": alpha, "gain_syn": gain_syn, "beta": beta, "gain_mem": gain_mem, "bias": bias, **params},
        attrs,
    )


def _read_li(node: Any, dialect: Dialect, dt: float) -> Discrete:
    tau, r, v_leak = (_array(node, f) for f in ("tau", "r", "v_leak"))
    beta = _decay(tau, dialect, dt)
    if dialect.name == "nir":
        gain, bias = r * dt / tau, v_leak * dt / tau
    else:  # sinabs: ExpLeakSqueeze(norm_input=False) asserts r = 1 and v_leak = 0
        _require(bool(np.all(r == 1) and np.all(v_leak == 0)), dialect, "r is not 1 or v_leak is not 0")
        gain, bias = np.ones_like(tau), np.zeros_like(tau)
    return Discrete("LINeuron", {"beta": beta, "gain": gain, "bias": bias}, {})


_READERS: dict[str, Callable[[Any, Dialect, float], Discrete]] = {
    "IF": _read_if,
    "LIF": _read_lif,
    "CubaLIF": _read_cuba_lif,
    "LI": _read_li,
}


def if_limit_tau(dialect: Dialect) -> float:
    """τ of the LIF written for an IF neuron (dialect.if_node == "LIF"): β = 1 − dt/τ is exactly 1."""
    tau = dialect.dt * IF_LIMIT_SCALE
    assert 1.0 - dialect.dt / tau == 1.0 and math.isfinite(tau)
    return tau
