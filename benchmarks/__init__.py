"""The benchmark harness (outside the wheel): python -m benchmarks NAME ..."""
