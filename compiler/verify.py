"""Verification of a compiled SNN before it is moved into place (Polygraphy-style).

Checks, in order: onnx.checker (full check), an onnxruntime CPU load, and a run at batch 2 for a
few steps on two calibration samples, compared with the ANN on the same samples: the SNN's
outputs must have the ANN's shapes and be finite, and a TTFS SNN's read-out must equal the ANN's
logits (it is exact). A failure caused by the user's model (the ANN itself does not run, or its
outputs are not finite) is a SnnError (exit 2); any other failure is the compiler's and raises
CompilerBug (exit 1, "internal error").
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from onnx_snn.errors import CompilerBug, SnnError
from onnx_snn.ir.contract import TIMESTEPS_INPUT
from onnx_snn.providers import CPU, make_session
from onnx_snn.runtime.ann import AnnRunner

#: samples and steps of the verification run
VERIFY_BATCH, VERIFY_STEPS = 2, 2
#: a TTFS read-out may differ from the ANN's logits by float32 rounding along the layers
TTFS_RTOL = 1e-3


def verify_snn(
    path: Path, ann: onnx.ModelProto, samples: Mapping[str, np.ndarray] | None, source: str, exact: bool = False
) -> str:
    """Check the compiled SNN at `path` against `ann` on `samples` (first two rows used; None: the
    load checks only); the one-line summary of what passed. `exact`: compare values too (TTFS)."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - checker and shape-inference errors alike
        raise CompilerBug(f"the compiled model fails onnx.checker: {_first_line(exc)}") from None
    session = _load(path)
    if samples is None:
        return "passes onnx.checker (full check) and loads in onnxruntime"
    feed = _batch_of_two(samples)
    expected = ann_outputs(ann, feed, source)
    got = _snn_outputs(session, feed, len(expected))
    for index, (snn_out, ann_out) in enumerate(zip(got, expected)):
        name = session.get_outputs()[index].name
        if snn_out.shape != ann_out.shape:
            raise CompilerBug(
                f"output {name} has shape {list(snn_out.shape)} at batch {VERIFY_BATCH}, "
                f"the ANN's has {list(ann_out.shape)}"
            )
        if not np.all(np.isfinite(snn_out)):
            raise CompilerBug(f"output {name} is not finite at batch {VERIFY_BATCH} while the ANN's is")
        if exact:
            scale = max(float(np.max(np.abs(ann_out))), 1e-6)
            error = float(np.max(np.abs(snn_out - ann_out)))
            if error > TTFS_RTOL * scale:
                raise CompilerBug(f"output {name} differs from the ANN's by {error:.3g} (scale {scale:.3g})")
    what = "equals the ANN" if exact else "matches the ANN's shapes, finite"
    return f"passes onnx.checker (full check), loads in onnxruntime and runs at batch {VERIFY_BATCH} ({what})"


def synthetic_samples(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray] | None:
    """Standard-normal inputs of the model's declared shapes with the batch dim set to VERIFY_BATCH,
    for a compile without calibration data; None when a non-batch dim or a dtype is not static."""
    initializers = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    samples = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
        if not dims or min(dims[1:], default=1) <= 0 or value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            return None
        samples[value.name] = rng.standard_normal([VERIFY_BATCH, *dims[1:]]).astype(np.float32)
    return samples


def _load(path: Path) -> ort.InferenceSession:
    try:
        return make_session(str(path), [CPU])
    except Exception as exc:  # noqa: BLE001
        raise CompilerBug(f"onnxruntime cannot load the compiled model: {_first_line(exc)}") from None


def _batch_of_two(samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The first VERIFY_BATCH rows of every input (the first row repeated if there is one)."""
    return {
        name: np.concatenate([value[:VERIFY_BATCH]] * VERIFY_BATCH)[:VERIFY_BATCH] for name, value in samples.items()
    }


def ann_outputs(ann: onnx.ModelProto, feed: dict[str, np.ndarray], source: str) -> list[np.ndarray]:
    """The ANN's first output on `feed` (run at its fixed batch if it has one); SnnError if it
    cannot run or gives non-finite values: then the model, not the compiler, is at fault."""
    try:
        output = AnnRunner(ann).run(feed)
    except SnnError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime refusing the user's model or data
        raise SnnError(
            f"the ANN itself fails in onnxruntime on the calibration samples ({_first_line(exc)}); "
            "check that the model runs there",
            path=source,
        ) from None
    if not np.all(np.isfinite(output)):
        raise SnnError(
            "the ANN's output is not finite on the calibration samples; check the weights and data", path=source
        )
    return [output]


def _snn_outputs(session: ort.InferenceSession, feed: dict[str, np.ndarray], count: int) -> list[np.ndarray]:
    """The SNN's first `count` outputs after VERIFY_STEPS steps (fewer if its default T is smaller)."""
    run_feed = dict(feed)
    overridable = {i.name for i in session.get_overridable_initializers()}
    if TIMESTEPS_INPUT in overridable:
        run_feed[TIMESTEPS_INPUT] = np.asarray(VERIFY_STEPS, np.int64)
    names = [o.name for o in session.get_outputs()[:count]]
    try:
        return session.run(names, run_feed)
    except Exception as exc:  # noqa: BLE001
        raise CompilerBug(f"the compiled model fails at batch {VERIFY_BATCH}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
