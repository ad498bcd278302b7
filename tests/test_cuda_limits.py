"""On CUDA a run keeps its folded batch T·B within cuDNN's limits (runtime/PERFORMANCE.md "GPU")."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from onnx_snn.ir.contract import FOLDED_BATCH
from onnx_snn.runtime.memory import CUDNN_MAX_BATCH, cuda_sample_step_limit, plan_chunks


def folded_model(*per_sample: tuple[int, ...]) -> onnx.ModelProto:
    """A graph whose value_info declares time-folded tensors [T*batch, *dims] for each of `per_sample`."""
    infos = [
        helper.make_tensor_value_info(f"v{i}", TensorProto.FLOAT, [FOLDED_BATCH, *dims])
        for i, dims in enumerate(per_sample)
    ]
    graph = helper.make_graph([], "g", [], [], value_info=infos)
    return helper.make_model(graph)


def test_limit_is_cudnns_batch_for_small_samples():
    assert cuda_sample_step_limit(folded_model((16, 28, 28), (6, 14, 14))) == CUDNN_MAX_BATCH


def test_limit_keeps_every_folded_tensor_under_2_to_the_31_elements():
    limit = cuda_sample_step_limit(folded_model((64, 224, 224), (16, 28, 28)))
    assert limit * 64 * 224 * 224 < 2**31 <= (limit + 1) * 64 * 224 * 224


def test_plan_chunks_respects_the_sample_step_limit():
    """T = 128, batch 1024 (131072 sample-steps, which cuDNN's pooling refuses) with a large budget."""
    batch_chunk, time_chunk = plan_chunks(1024, 128, 10**12, 1000, CUDNN_MAX_BATCH)
    assert batch_chunk * time_chunk <= CUDNN_MAX_BATCH and time_chunk == 128
    assert plan_chunks(1024, 128, 10**12, 1000) == (1024, 128)
