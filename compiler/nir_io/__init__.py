"""NIR interoperability (`onnx-snn export-nir`, `onnx-snn import-nir`): compiled rate-coded SNNs to
NIR graphs (nir.Input .. nir.Output of Conv2d, Affine, pools, Flatten and IF or LIF neurons) and
NIR graphs of IF, LIF, CubaLIF and LI neurons back to our ONNX SNN format.

NIR nodes are continuous-time; each framework that reads them discretizes them its own way. The
dialects (`dialects.py`) hold what each reader does, as read in its source, and both directions
follow them. The `nir` package is optional (the `nir` extra) and imported only where a graph is
read or written (`nirfile.py`).
"""
