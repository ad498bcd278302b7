"""Passes every neuron family shares: BN folding, calibration, normalization, time batching, activity statistics."""
