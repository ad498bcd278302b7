"""On a CUDA machine: the product's Session runs T = 128 at batch 1024 (folded batch 131072, above
cuDNN's pooling limit) in chunks within that limit and matches the CPU reference.

Run from the repository root after `python benchmarks/gpu_bench.py prepare --out .gpubench`, with
onnx_snn and onnxruntime-gpu importable: `python benchmarks/gpu_session_check.py`.
"""

import time

import numpy as np

from onnx_snn.runtime import Session

root = ".gpubench"
inputs, ref = np.load(f"{root}/inputs.npz"), np.load(f"{root}/reference.npz")
for model in ("fashion-cnn", "fashion-resnet"):
    s = Session(f"{root}/{model}.snn.T128.onnx")
    x = inputs[f"{model}/x"][:1024]
    print(model, s.providers, "plan", s.plan(1024, 128), flush=True)
    start = time.perf_counter()
    r = s.run(x, 128)
    seconds = time.perf_counter() - start
    expected = ref[f"{model}/T128/logits"]
    err = np.abs(r.logits[:64] - expected).max() / np.abs(expected).max()
    agree = (r.logits[:64].argmax(1) == expected.argmax(1)).mean()
    acc = (r.per_step[-1].argmax(1) == inputs[f"{model}/y"][:1024]).mean()
    print(
        f"{model}: T=128 batch 1024 on {s.providers[0]} in {seconds:.2f} s (first call); max rel err vs CPU "
        f"{err:.2e}, agreement {agree:.3f}, accuracy {acc:.4f}",
        flush=True,
    )
