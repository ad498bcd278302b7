"""Plain numpy reference of the signGD dynamics, written from spec/signgd-dynamics.md §§1-3, 5.

Everything runs step by step, exactly in the order of spec §2, in the floating type of the
inputs (float32 or float64): per step t the neuron charges x_t = x_{t-1} - η_t·(2z_t - o), fires
s_t = rule(v_{t-1}, x_t) and resets v_t = v_{t-1} - η_t·(2s_t - 1). Time is the first axis of
every sequence ([T, B, ...]); states are one step's shape [B, ...].
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Rule = Callable[[np.ndarray, list[np.ndarray]], np.ndarray]


def eta_schedule(t0: int, timesteps: int, eta0: float = 0.15, gamma: float = 0.95,
                 schedule: str = "exponential", dtype=np.float64, tail: float = 0.25) -> np.ndarray:
    """η_t for t = t0+1 .. t0+T (spec §1), computed in float64 and rounded once to `dtype`.

    "exp_inverse": η0·γ^(t−1), floored at tail/t once t > 1/ln(1/γ) (tail used only there)."""
    t = np.arange(t0 + 1, t0 + timesteps + 1, dtype=np.float64)
    eta = {"exponential": lambda: eta0 * gamma ** (t - 1),
           "constant": lambda: np.full_like(t, eta0),
           "inverse": lambda: eta0 / t,
           "exp_inverse": lambda: np.where(t * np.log(gamma) < -1, np.maximum(eta0 * gamma ** (t - 1), tail / t),
                                           eta0 * gamma ** (t - 1))}[schedule]()
    return eta.astype(dtype)


def _sigmoid_gelu(x: np.ndarray) -> np.ndarray:
    return x * (1 / (1 + np.exp(-x.dtype.type(1.702) * x)))


def _above(target: Callable[..., np.ndarray], ties: bool) -> Rule:
    """Fires iff v ≥ target (ties) or v > target (no ties)."""
    def rule(v: np.ndarray, operands: list[np.ndarray]) -> np.ndarray:
        goal = target(*operands)
        return v >= goal if ties else v > goal
    return rule


def _p_rsqrt_q(v: np.ndarray, operands: list[np.ndarray]) -> np.ndarray:
    """Fires iff √q·v > p; √ of a negative q is NaN, which never fires (spec §10.4)."""
    p, q = operands
    with np.errstate(invalid="ignore"):
        return np.sqrt(q) * v > p


#: spec §5: unary rules by `function`
UNARY_RULES: dict[str, Rule] = {
    "relu": _above(lambda x: np.maximum(x, 0), ties=True),
    "leaky_relu": _above(lambda x: np.where(x >= 0, x, x.dtype.type(0.1) * x), ties=False),
    "gelu": _above(_sigmoid_gelu, ties=False),
    "abs": _above(np.abs, ties=False),
    "square": _above(lambda x: x * x, ties=True),
    "exp": _above(np.exp, ties=True),
}

#: spec §5: two-operand rules by `function`
BINARY_RULES: dict[str, Rule] = {
    "maximum": _above(np.maximum, ties=False),
    "div": _above(np.divide, ties=False),
    "product": _above(np.multiply, ties=True),
    "p_rsqrt_q": _p_rsqrt_q,
}


def _initial(state, fresh, shape: tuple[int, ...], dtype) -> np.ndarray:
    """`state` where given and not NaN, else `fresh`, as a [B, ...] array."""
    fresh = np.broadcast_to(np.asarray(fresh, dtype), shape)
    if state is None:
        return fresh.copy()
    state = np.broadcast_to(np.asarray(state, dtype), shape)
    return np.where(np.isnan(state), fresh, state)


def signgd_neuron(currents: list[np.ndarray], offsets: list, biases: list, rule: Rule,
                  x0: list | None = None, v0=None, t0: int = 0, **schedule) -> tuple[np.ndarray, list, np.ndarray]:
    """A unary (one current) or two-operand neuron. currents: [T, B, ...] each.

    Returns the spikes [T, B, ...] (broadcast shape), the input estimates x_T (one per operand)
    and the output estimate v_T. A None or NaN state is fresh: x0 = bias, v0 = 0.
    """
    dtype = currents[0].dtype
    timesteps = currents[0].shape[0]
    eta = eta_schedule(t0, timesteps, dtype=dtype, **schedule)
    x0 = x0 if x0 is not None else [None] * len(currents)
    x = [_initial(x0_i, b, z.shape[1:], dtype) for x0_i, z, b in zip(x0, currents, biases)]
    shape = np.broadcast_shapes(*(z.shape[1:] for z in currents))
    v = _initial(v0, 0, shape, dtype)
    spikes = np.zeros((timesteps,) + shape, dtype)
    for t in range(timesteps):
        x = [xi - eta[t] * (2 * z[t] - np.asarray(o, dtype)) for xi, z, o in zip(x, currents, offsets)]
        s = rule(v, x).astype(dtype)
        v = v - eta[t] * (2 * s - 1)
        spikes[t] = s
    return spikes, x, v


def encoder(x: np.ndarray, timesteps: int, codec: str = "float", f0=None, t0: int = 0,
            **schedule) -> tuple[np.ndarray, np.ndarray]:
    """Spec §3 encoder of the analog x [B, ...]: returns e [T, B, ...] and f_T (f0 None/NaN: 0)."""
    eta = eta_schedule(t0, timesteps, dtype=x.dtype, **schedule)
    f = _initial(f0, 0, x.shape, x.dtype)
    emitted = np.zeros((timesteps,) + x.shape, x.dtype)
    for t in range(timesteps):
        if codec == "float":
            g = f - x
            emitted[t] = (1 + g) / 2
        else:
            emitted[t] = (f > x).astype(x.dtype)
            g = 2 * emitted[t] - 1
        f = f - eta[t] * g
    return emitted, f


def decoder(z: np.ndarray, offset, bias, y0=None, t0: int = 0, **schedule) -> tuple[np.ndarray, np.ndarray]:
    """Spec §3 decoder of z [T, B, ...]: returns y after every step [T, B, ...] and y_T (y0 None/NaN: bias)."""
    eta = eta_schedule(t0, z.shape[0], dtype=z.dtype, **schedule)
    y = _initial(y0, bias, z.shape[1:], z.dtype)
    per_step = np.zeros_like(z)
    for t in range(z.shape[0]):
        y = y - eta[t] * (2 * z[t] - np.asarray(offset, z.dtype))
        per_step[t] = y
    return per_step, y
