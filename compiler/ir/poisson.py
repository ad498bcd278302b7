"""`snn.PoissonEncoder`: an analog input in [0, 1] to Bernoulli spikes, the same in every run.

Each step t and element i of a sample spikes with probability max_rate·x_i:
spike_{t,i} = [u(seed, t0 + t, i) < max_rate·x_i], with u in [0, 1) uniform.

Why not RandomUniformLike: onnxruntime creates its generator with the session (from the `seed`
attribute, or from the clock without one) and advances it with every run, so the second run of a
session spikes differently from the first for the same input; a fresh session starts over; CPU
and CUDA kernels draw from different generators; and nothing can skip the stream to step t0, so
time chunks could not continue one run.

Seeding: u is a pure function of (seed, step, index), a counter-based generator made of integer
ops on uint32, whose Mul and Add wrap modulo 2^32 on every execution provider (unsigned overflow
is defined; onnxruntime's CPU kernels take uint32 for Mul, Add, BitShift and BitwiseXor). A hash
absorbs one 32-bit word at a time, absorb(h, w) = mix(h + w·0x9E3779B9), where mix is Wellons'
lowbias32 (h ^= h >> 16; h *= 0x7FEB352D; h ^= h >> 15; h *= 0x846CA68B; h ^= h >> 16), from
h = 0x243F6A88 through the seed's low and high words (the `seed` attribute is an int64), the step
t0 + t (mod 2^32) and the element's flat index within its sample; then u = (h >> 8)·2^-24, exact
in float32. Each absorb is a bijection of w for a given h and of h for a given w, so the elements
of one step never share a hash, nor do the steps of one element. Nothing else enters: the same
seed gives the same spikes in every run, session and execution provider, and a run split into
time chunks (`t0` the steps already done) equals one run; the op has no state besides `t0`.

The index counts within a sample, not within the batch: a sample's spikes depend on its values,
the seed and the step only, not on the batch it runs in (batch chunks give the same bits), and u
is hashed once per step and element, [T, 1, ...], then compared with every sample's rate, so the
hash costs T·N, not T·B·N (onnxruntime, 2 CPU cores, [T=32, B=256, 784]: the whole op takes
6-8 ms; a single absorb over all T·B·N elements would take 56 ms). The samples of one batch
share their uniform draws (common random numbers): each sample's spike train has exactly the
Bernoulli law above, but two samples are not independent of each other.

x = 0 never spikes (u ≥ 0) and max_rate·x ≥ 1 always does (u ≤ 1 − 2^-24); for p = max_rate·x in
[0, 1], P(spike) = ceil(2^24·p)/2^24, within 2^-24 of p. BitwiseXor needs opset 18 or later.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnx_snn.ir.function_parts import constant, constant_from_attr, snn_function

ENCODER_INPUTS = ("x", "timesteps", "t0")
ENCODER_DEFAULTS: dict[str, float | int] = {"max_rate": 1.0, "seed": 0}
MIN_OPSET = 18  # BitwiseXor

#: the hash's start value (π's first fraction word), word multiplier (2^32/φ) and mix rounds
#: (xorshift, then multiply; the last round only shifts)
HASH_START = 0x243F6A88
WORD_MULTIPLIER = 0x9E3779B9
MIX_ROUNDS: tuple[tuple[int, int | None], ...] = ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None))
UNIFORM_BITS = 24  # float32's exact integer range: u = (h >> 8)·2^-24


def _u32(output: str, value: int) -> onnx.NodeProto:
    """A Constant node holding the uint32 scalar `value`."""
    return helper.make_node("Constant", [], [output], value=onnx.numpy_helper.from_array(np.uint32(value), output))


def _hash_constants() -> list[onnx.NodeProto]:
    """The uint32 constants `_absorb` reads: hash_start, word_multiplier, shift<k>, multiplier<k>."""
    shifts = sorted({shift for shift, _ in MIX_ROUNDS} | {32 - UNIFORM_BITS})
    return [
        _u32("hash_start", HASH_START),
        _u32("word_multiplier", WORD_MULTIPLIER),
        *(_u32(f"shift{s}", s) for s in shifts),
        *(_u32(f"multiplier{k}", m) for k, (_, m) in enumerate(MIX_ROUNDS) if m is not None),
    ]


def _absorb(h: str, word: str, out: str) -> list[onnx.NodeProto]:
    """Nodes setting uint32 `out` = mix(h + word·WORD_MULTIPLIER) (broadcasting h and word)."""
    nodes = [
        helper.make_node("Mul", [word, "word_multiplier"], [f"{out}_word"]),
        helper.make_node("Add", [h, f"{out}_word"], [f"{out}_in"]),
    ]
    current = f"{out}_in"
    for k, (shift, multiplier) in enumerate(MIX_ROUNDS):
        last = k == len(MIX_ROUNDS) - 1
        mixed = out if last else f"{out}_xor{k}"
        nodes += [
            helper.make_node("BitShift", [current, f"shift{shift}"], [f"{out}_shifted{k}"], direction="RIGHT"),
            helper.make_node("BitwiseXor", [current, f"{out}_shifted{k}"], [mixed]),
        ]
        current = mixed
        if multiplier is not None:
            current = f"{out}_mul{k}"
            nodes.append(helper.make_node("Mul", [mixed, f"multiplier{k}"], [current]))
    return nodes


def build_poisson_encoder(opset: int) -> onnx.FunctionProto:
    """`snn.PoissonEncoder(x, timesteps, t0) -> (spikes)`: Bernoulli rate coding of the input.

    Inputs: x [B, ...] float32, the analog input scaled into [0, 1]; timesteps int64 scalar T;
    t0 int64 scalar, the steps already done. Output: spikes [T*B, ...] float32 in {0, 1}, t-major,
    spike_{t,b,i} = [u(seed, t0 + t, i) < max_rate·x_{b,i}] with i the flat index within a sample
    and u the module's counter-based uniform in [0, 1). Attributes: max_rate (float, default 1),
    seed (int, default 0).
    """
    if opset < MIN_OPSET:
        raise ValueError(f"snn.PoissonEncoder needs ONNX opset {MIN_OPSET} or later (BitwiseXor), got {opset}")
    nodes = [
        constant_from_attr("max_rate", "max_rate", "float"),
        constant_from_attr("seed", "seed", "int"),
        *_hash_constants(),
        constant("zero", 0),
        constant("one", 1),
        constant("one_1d", [1]),
        constant("axis1", [1]),
        helper.make_node("Constant", [], ["shift32"], value=onnx.numpy_helper.from_array(np.uint64(32), "shift32")),
        helper.make_node(
            "Constant",
            [],
            ["uniform_unit"],
            value=onnx.numpy_helper.from_array(np.float32(2.0**-UNIFORM_BITS), "uniform_unit"),
        ),
        # the key: the seed's low and high 32-bit words (Cast to unsigned wraps modulo 2^32 / 2^64)
        helper.make_node("Cast", ["seed"], ["seed_low"], to=TensorProto.UINT32),
        helper.make_node("Cast", ["seed"], ["seed_u64"], to=TensorProto.UINT64),
        helper.make_node("BitShift", ["seed_u64", "shift32"], ["seed_high_u64"], direction="RIGHT"),
        helper.make_node("Cast", ["seed_high_u64"], ["seed_high"], to=TensorProto.UINT32),
        *_absorb("hash_start", "seed_low", "h_seed_low"),
        *_absorb("h_seed_low", "seed_high", "h_key"),
        # the steps t0 .. t0 + T - 1 as a column [T, 1]
        helper.make_node("Add", ["t0", "timesteps"], ["t_end"]),
        helper.make_node("Range", ["t0", "t_end", "one"], ["steps"]),
        helper.make_node("Cast", ["steps"], ["steps_u32"], to=TensorProto.UINT32),
        helper.make_node("Unsqueeze", ["steps_u32", "axis1"], ["step_column"]),
        *_absorb("h_key", "step_column", "h_step"),
        # the flat index within a sample as a row [N]: the hash [T, N]
        helper.make_node("Shape", ["x"], ["rest"], start=1),
        helper.make_node("ReduceProd", ["rest"], ["sample_size"], keepdims=0),
        helper.make_node("Range", ["zero", "sample_size", "one"], ["index"]),
        helper.make_node("Cast", ["index"], ["index_u32"], to=TensorProto.UINT32),
        *_absorb("h_step", "index_u32", "h"),
        helper.make_node("BitShift", ["h", f"shift{32 - UNIFORM_BITS}"], ["h_top"], direction="RIGHT"),
        helper.make_node("Cast", ["h_top"], ["h_top_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["h_top_float", "uniform_unit"], ["u_flat"]),
        # u [T, 1, ...] against every sample's rate [B, ...]: spikes [T, B, ...], then [T*B, ...]
        helper.make_node("Reshape", ["timesteps", "one_1d"], ["t1"]),
        helper.make_node("Concat", ["t1", "one_1d", "rest"], ["u_shape"], axis=0),
        helper.make_node("Reshape", ["u_flat", "u_shape"], ["u"]),
        helper.make_node("Mul", ["x", "max_rate"], ["rate"]),
        helper.make_node("Less", ["u", "rate"], ["fire"]),
        helper.make_node("Cast", ["fire"], ["spike_seq"], to=TensorProto.FLOAT),
        helper.make_node("Shape", ["x"], ["batch"], end=1),
        helper.make_node("Mul", ["t1", "batch"], ["tb"]),
        helper.make_node("Concat", ["tb", "rest"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["spike_seq", "flat_shape"], ["spikes"]),
    ]
    return snn_function(
        "PoissonEncoder",
        ENCODER_INPUTS,
        ["spikes"],
        nodes,
        opset,
        build_poisson_encoder.__doc__,
        defaults=ENCODER_DEFAULTS,
    )
