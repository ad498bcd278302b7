"""Choosing onnxruntime execution providers: CUDA when onnxruntime-gpu and a GPU are present.

`python -m onnx_snn.providers` reports which onnxruntime build is installed and whether CUDA
works (`active_build`).
"""

from __future__ import annotations

import functools
import re
from importlib import metadata

import onnxruntime as ort

from onnx_snn.logs import ort_severity

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: onnxruntime's ArenaExtendStrategy kSameAsRequested (0 is kNextPowerOfTwo, the default)
SAME_AS_REQUESTED = 1


def default_providers() -> list[str]:
    """[CUDA, CPU] when this onnxruntime build offers CUDA, else [CPU].

    onnxruntime-gpu lists CUDA even on machines without a GPU; `make_session` then checks what
    the session really got and falls back to the CPU quietly.
    """
    return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]


@functools.cache
def exact_cpu_arena() -> None:
    """Register (once per process) onnxruntime's shared CPU arena for sessions that opt in with
    `session.use_env_allocators`: it extends by the size requested (kSameAsRequested), where the
    default arena doubles, so that it can hold up to twice the peak a run needs."""
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, SAME_AS_REQUESTED, -1, -1))


def make_session(
    model: bytes | str,
    providers: list[str] | None = None,
    intra_op_threads: int | None = None,
    spinning: bool = True,
    budgeted: bool = False,
) -> ort.InferenceSession:
    """An InferenceSession on `providers` (default: default_providers()), CPU if CUDA fails to start.

    `spinning=False` stops its worker threads from busy-waiting after each run, so that sessions
    timed against each other on a few cores do not steal each other's time.
    `budgeted=True` makes a session whose memory follows runtime.memory's bound (Session):
    - no memory pattern, which plans one block for all of a run's intermediate tensors at fixed
      offsets; each is then taken from the arena when made and returned after its last use.
      Measured on fashion-resnet at T = 256, batch 38: peak RSS 2.14 → 1.12 GB at the same speed
      (turning the arena off instead: 1.11 GB, 1.7x slower);
    - the CPU arena shared by budgeted sessions (exact_cpu_arena), which grows by what is asked,
      not by powers of two: a chunk of the digits MLP (32 samples x 17489 steps) run three times
      raised the RSS by 543 B per sample-step with the default arena, 306 with this one, at the
      same speed."""
    options = ort.SessionOptions()
    options.log_severity_level = ort_severity()
    options.enable_mem_pattern = not budgeted
    if budgeted:
        exact_cpu_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    chosen = providers or default_providers()
    if CUDA in chosen:
        try:
            ort.preload_dlls()
        except (AttributeError, OSError):
            pass
    try:
        return ort.InferenceSession(model, options, providers=chosen)
    except Exception:  # noqa: BLE001 - a CUDA EP that cannot start; the CPU always can
        if chosen == [CPU]:
            raise
        return ort.InferenceSession(model, options, providers=[CPU])


#: the CPU and CUDA distributions; both install the `onnxruntime` module, so only one may be installed
ORT_CPU, ORT_GPU = "onnxruntime", "onnxruntime-gpu"
GPU_SWITCH = f"pip uninstall -y {ORT_CPU} && pip install {ORT_GPU}"


def onnxruntime_distributions() -> dict[str, str]:
    """Name -> version of every installed distribution that provides the `onnxruntime` module
    (onnxruntime, onnxruntime-gpu, or another build such as onnxruntime-directml)."""
    found = {}
    for name in metadata.packages_distributions().get("onnxruntime", []):
        canonical = re.sub(r"[-_.]+", "-", name).lower()
        try:
            found[canonical] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return dict(sorted(found.items()))


def _cuda_session_starts() -> tuple[bool, str]:
    """Whether an InferenceSession gets the CUDA EP here (a GPU, its driver, CUDA and cuDNN), and why not."""
    from onnx import TensorProto, helper

    tensor = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "cuda_probe",
        [tensor],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a CUDA EP that cannot start logs an error; the report says it
    try:
        ort.preload_dlls()
    except (AttributeError, OSError):
        pass
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=[CUDA, CPU])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        return False, f"a CUDA session does not start ({str(exc).splitlines()[0][:200]})"
    if CUDA in session.get_providers():
        return True, "a CUDA session starts"
    return False, "the CUDA EP does not start here (no GPU, driver, CUDA or cuDNN libraries found); runs use the CPU"


def active_build() -> dict:
    """Which onnxruntime build is installed, and whether CUDA works:

    - distribution: the distribution that provides the `onnxruntime` module (onnxruntime,
      onnxruntime-gpu; when several are installed, the one whose build is loaded, by its
      providers), None if no installed distribution claims it (a source build);
    - distributions: name -> version of all those that claim it;
    - version: the loaded module's version; available_providers: the build's EPs;
    - cuda_in_build: the build offers CUDAExecutionProvider; cuda_usable: a session really gets
      it (onnxruntime-gpu lists CUDA on machines without a GPU too); cuda: what that means;
    - default_providers: what sessions ask for (default_providers());
    - warnings: what to fix, e.g. onnxruntime and onnxruntime-gpu both installed.
    """
    distributions = onnxruntime_distributions()
    available = list(ort.get_available_providers())
    cuda_in_build = CUDA in available
    if cuda_in_build:
        cuda_usable, cuda = _cuda_session_starts()
    else:
        cuda_usable, cuda = False, f"not in this build (a CPU build; for CUDA: {GPU_SWITCH})"
    warnings = []
    if len(distributions) > 1:
        names = " and ".join(distributions)
        warnings.append(
            f"{names} are installed together and provide the same `onnxruntime` module: whichever was "
            f"installed last wins, and its files may be mixed with the other's. Keep one: pip "
            f"uninstall -y {' '.join(distributions)}, then pip install {ORT_GPU} (CUDA) or {ORT_CPU}"
        )
        distribution: str | None = (
            ORT_GPU
            if cuda_in_build and ORT_GPU in distributions
            else (ORT_CPU if ORT_CPU in distributions else next(iter(distributions)))
        )
    elif distributions:
        distribution = next(iter(distributions))
    else:
        distribution = None
        warnings.append("no installed distribution provides the `onnxruntime` module (a source build?)")
    if distribution == ORT_GPU and not cuda_usable:
        warnings.append(f"{ORT_GPU} is installed but CUDA does not work here: {cuda}")
    return {
        "distribution": distribution,
        "distributions": distributions,
        "version": ort.__version__,
        "available_providers": available,
        "cuda_in_build": cuda_in_build,
        "cuda_usable": cuda_usable,
        "cuda": cuda,
        "default_providers": default_providers(),
        "warnings": warnings,
    }


def report(build: dict) -> str:
    """`active_build()` as a few lines of text."""
    installed = ", ".join(f"{name} {version}" for name, version in build["distributions"].items()) or "none"
    lines = [
        f"onnxruntime {build['version']} from {build['distribution'] or 'an unknown distribution'} "
        f"(installed: {installed})",
        f"providers: {', '.join(build['available_providers'])}",
        f"CUDA: {'usable' if build['cuda_usable'] else 'not usable'}: {build['cuda']}",
        f"sessions ask for: {', '.join(build['default_providers'])}",
    ]
    return "\n".join(lines + [f"warning: {w}" for w in build["warnings"]])
