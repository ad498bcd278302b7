"""Plain numpy reference of the IF neuron, written from the dynamics in compiler/ir/neurons.py."""

from __future__ import annotations

import numpy as np


def in_threshold_units(
    x: np.ndarray, threshold: float, v0: np.ndarray | float
) -> tuple[np.float32, np.ndarray, np.ndarray]:
    """θ as float32, the starting membrane v0 / θ broadcast to a step [B, ...], and the currents x / θ."""
    theta = np.float32(threshold)
    u = np.broadcast_to(np.asarray(v0, np.float32) / theta, x.shape[1:]).astype(np.float32)
    return theta, u, (x / theta).astype(np.float32)


def if_neuron(x: np.ndarray, threshold: float, reset: str, v0: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """x: [T, B, ...] float32 currents. Returns spikes [T, B, ...] and the final membrane [B, ...].

    In units of the threshold: u += x_t / θ; s = [u >= 1]; u -= s (soft) or u -= s * u (hard).
    """
    theta, u, scaled = in_threshold_units(x, threshold, v0)
    spikes = np.zeros_like(x)
    for t in range(x.shape[0]):
        u = u + scaled[t]
        s = (u >= np.float32(1.0)).astype(np.float32)
        u = u - s if reset == "soft" else u - s * u
        spikes[t] = s
    return spikes, u * theta


def signed_if_neuron(
    x: np.ndarray, threshold: float, v0: np.ndarray | float, n0: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x: [T, B, ...] float32 currents. Returns spikes [T, B, ...] in {−1, 0, 1}, the final membrane
    and the final net spikes sent [B, ...].

    In units of the threshold: u += x_t / θ; s = [u >= 1] − [u < 0 and n > 0]; u -= s; n += s.
    """
    theta, u, scaled = in_threshold_units(x, threshold, v0)
    n = np.broadcast_to(np.asarray(n0, np.float32), x.shape[1:]).astype(np.float32)
    spikes = np.zeros_like(x)
    for t in range(x.shape[0]):
        u = u + scaled[t]
        s = (u >= np.float32(1.0)).astype(np.float32) - ((u < 0) & (n > 0)).astype(np.float32)
        u, n = u - s, n + s
        spikes[t] = s
    return spikes, u * theta, n


def multi_spike_if_neuron(
    x: np.ndarray, threshold: float, v0: np.ndarray | float, v_min: float = -np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """x: [T, B, ...] float32 currents. Returns spikes [T, B, ...] (whole numbers ≥ 0) and the final
    membrane [B, ...].

    In units of the threshold: u += x_t / θ; s = max(0, ⌊u⌋); u -= s; u = relu(u − v_min) + v_min.
    """
    theta, u, scaled = in_threshold_units(x, threshold, v0)
    spikes = np.zeros_like(x)
    for t in range(x.shape[0]):
        u = u + scaled[t]
        s = np.maximum(np.floor(u), np.float32(0.0))
        u = u - s
        if np.isfinite(v_min):  # relu(u − v_min) + v_min, rounded as the op (and sinabs) round it
            u = (np.maximum(u - np.float32(v_min), np.float32(0)) + np.float32(v_min)).astype(np.float32)
        spikes[t] = s
    return spikes, u * theta


def burst_if_neuron(
    x: np.ndarray, threshold: float, v0: np.ndarray | float, n0: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x: [T, B, ...] float32 currents. Returns spikes [T, B, ...] (whole numbers), the final
    membrane and the final net spikes sent [B, ...].

    In units of the threshold: u += x_t / θ; s = max(⌊u⌋, −n); u -= s; n += s.
    """
    theta, u, scaled = in_threshold_units(x, threshold, v0)
    n = np.broadcast_to(np.asarray(n0, np.float32), x.shape[1:]).astype(np.float32)
    spikes = np.zeros_like(x)
    for t in range(x.shape[0]):
        u = u + scaled[t]
        s = np.maximum(np.floor(u), -n)
        u, n = u - s, n + s
        spikes[t] = s
    return spikes, u * theta, n


def capped_burst_if_neuron(
    x: np.ndarray, threshold: float, v0: np.ndarray | float, cap: np.ndarray | float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x: [T, B, ...] float32 currents; cap: spikes a step on average at most (broadcast against a
    step). Returns spikes [T, B, ...], the final membrane, net spikes sent and headroom [B, ...] of
    a fresh neuron.

    In units of the threshold: u += x_t / θ; h += k; s = min(max(⌊u⌋, −n), ⌊h⌋); u -= s; n += s; h -= s.
    """
    theta, u, scaled = in_threshold_units(x, threshold, v0)
    n = np.zeros(x.shape[1:], np.float32)
    h = np.zeros(x.shape[1:], np.float32)
    spikes = np.zeros_like(x)
    for t in range(x.shape[0]):
        u = u + scaled[t]
        h = h + np.asarray(cap, np.float32)
        s = np.minimum(np.maximum(np.floor(u), -n), np.floor(h))
        u, n, h = u - s, n + s, h - s
        spikes[t] = s
    return spikes, u * theta, n, h
