"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest

#: every compile in the tests checks the model and the pass's post-condition after every pass
os.environ.setdefault("ONNX_SNN_VERIFY_EACH", "1")

#: env var naming the `shared/` folder when it is not beside the repository
SHARED_ENV = "ONNX_SNN_SHARED"


def _tf_fixtures_dir() -> Path:
    """`shared/fixtures/tf` beside the repository, else under $ONNX_SNN_SHARED."""
    beside = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tf"
    if beside.is_dir() or not os.environ.get(SHARED_ENV):
        return beside
    return Path(os.environ[SHARED_ENV]) / "fixtures" / "tf"


#: the folder of tf2onnx fixture models (it may be missing; the `tf_fixtures` fixture then skips)
FIXTURES = _tf_fixtures_dir()


def _fashion_missing() -> str | None:
    """Why the Fashion-MNIST tests cannot run here, or None when the IDX files are installed."""
    from onnx_snn.models.data import fashion_mnist_dir

    missing = [
        name
        for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
        if not (fashion_mnist_dir() / name).exists()
    ]
    if missing:
        return f"Fashion-MNIST not found in {fashion_mnist_dir()} (apt-get install -y dataset-fashion-mnist)"
    return None


def _reference_cache_missing() -> str | None:
    """Why the zoo tests (which train into the reference cache) cannot run, or None."""
    from onnx_snn.models.zoo import CACHE_ENV, cache_root

    root = cache_root()
    writable_parent = next((p for p in [root, *root.parents] if p.exists()), None)
    if writable_parent is None or not os.access(writable_parent, os.W_OK):
        return f"the reference cache {root} is not writable; set {CACHE_ENV} to a writable folder"
    return _fashion_missing()


#: skips a test that reads the Fashion-MNIST IDX files when they are not installed
needs_fashion = pytest.mark.skipif(_fashion_missing() is not None, reason=_fashion_missing() or "")
#: skips a test that trains or loads zoo references (Fashion-MNIST and a writable reference cache)
needs_reference_cache = pytest.mark.skipif(
    _reference_cache_missing() is not None, reason=_reference_cache_missing() or ""
)


@pytest.fixture(scope="session")
def tf_fixtures() -> Path:
    """FIXTURES; skips the test when the folder is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"tf2onnx fixtures not found at {FIXTURES}; set {SHARED_ENV} to the shared/ folder")
    return FIXTURES


@pytest.fixture(scope="session")
def ort_run() -> Callable[..., list[np.ndarray]]:
    """`ort_run(graph_or_model, x)`: the outputs of an onnxruntime CPU session fed `x` as its first input."""

    def run(model: gs.Graph | onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
        if isinstance(model, gs.Graph):
            model = gs.export_onnx(model)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})

    return run


@pytest.fixture(scope="session")
def make_model() -> Callable[..., onnx.ModelProto]:
    """`make_model(nodes, inputs, outputs, initializers, opset=21)`: a float32 ONNX model.

    `inputs`/`outputs` map names to shapes; `initializers` map names to arrays.
    """

    def build(
        nodes: list[onnx.NodeProto],
        inputs: dict[str, list],
        outputs: dict[str, list],
        initializers: dict[str, np.ndarray] | None = None,
        opset: int = 21,
    ) -> onnx.ModelProto:
        def info(name: str, shape: list) -> onnx.ValueInfoProto:
            return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)

        graph = onnx.helper.make_graph(
            nodes,
            "test",
            [info(n, s) for n, s in inputs.items()],
            [info(n, s) for n, s in outputs.items()],
            [onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in (initializers or {}).items()],
        )
        return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])

    return build
