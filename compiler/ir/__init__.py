"""The snn dialect: neuron op registry, their ONNX function bodies per family, and the compiled-model contract.

Depends on nothing else of onnx_snn; everything else may depend on it."""
