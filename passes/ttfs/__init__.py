"""TTFS exact mapping of ReLU nets (Stanojevic et al. 2024): affine folding, windows and lowering."""
